"""wq's search in the legacy ggml layouts (docs/ggml-types.md §4.1) against an independent
spelling of its definition, byte for byte.

usage: ggml_search_check.py GGML_BLOCKS_TOOL [--quick]

Here the reference block of each candidate list comes from ggml's own library
(`quantize_row_*_ref`, through ggml_oracle), the affine search from wq_reference.py's scalar
§4.1 search, and the symmetric search, the errors and the block packing are written again
below in numpy. The CPU backend's blocks (ggml_blocks_tool search, 1 and 2 threads) must equal
them, and ggml's `dequantize_row_*` of them must be no further from the input than its own
reference blocks, block by block. Exit 77 (skipped) without libggml-base.so.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ggml_oracle  # noqa: E402
import wq_reference  # noqa: E402
from ggml_live_check import input_cases  # noqa: E402

F32 = np.float32
# type: (symmetric: (low, high) code range; affine: bits)
SYMMETRIC = {"Q4_0": (8, 7), "Q5_0": (16, 15), "Q8_0": (127, 127)}
AFFINE = {"Q4_1": 4, "Q5_1": 5}


def block_errors(x, decoded):
    """Per block (rows): e = x - decoded in binary32, e^2 into lane i % 8 in index order
    (binary64), lanes combined pairwise."""
    with np.errstate(all="ignore"):
        e = (x - decoded).astype(np.float64)
    lanes = [np.zeros(len(x)) for _ in range(8)]
    for i in range(x.shape[1]):
        lanes[i % 8] = lanes[i % 8] + e[:, i] * e[:, i]
    return ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]))


def stored(d):
    """binary16 rounding of binary32 steps; NaN where there is none (not finite, overflow, 0)."""
    with np.errstate(all="ignore"):
        h = d.astype(np.float16).astype(F32)
    return np.where(np.isfinite(h) & (h != 0), h, np.nan).astype(F32)


def symmetric_codes(x, d, low, high):
    with np.errstate(all="ignore"):
        t = np.clip(x / d[:, None], F32(-low), F32(high))
        q = np.rint(t).astype(F32)
        return q, (q * d[:, None]).astype(F32)


def symmetric_search(x, low, high, ref_err):
    """(found mask, steps, codes) of §4.1's symmetric search."""
    n = len(x)
    a = np.abs(x)
    m = x[np.arange(n), np.argmax(a, axis=1)]  # the first of largest magnitude, as ggml
    best_err = ref_err.copy()
    found = np.zeros(n, bool)
    best_d = np.zeros(n, F32)
    best_q = np.zeros(x.shape, F32)
    for k in range(21):
        f = F32(1) - F32(k * k) / F32(800)
        with np.errstate(all="ignore"):
            d = stored((m * f).astype(F32) / F32(-low))
        q, dec = symmetric_codes(x, np.nan_to_num(d, nan=1.0), low, high)
        err = block_errors(x, dec)
        take = ~np.isnan(d) & (err < best_err)
        best_err = np.where(take, err, best_err)
        best_d = np.where(take, d, best_d)
        best_q = np.where(take[:, None], q, best_q)
        found |= take
    live = found.copy()
    for _ in range(2):
        qx = np.zeros(n)
        qq = np.zeros(n)
        for i in range(x.shape[1]):
            q = best_q[:, i].astype(np.float64)
            qx = qx + q * x[:, i].astype(np.float64)
            qq = qq + q * q
        with np.errstate(all="ignore"):
            d = stored(np.where(qq > 0, qx / np.where(qq > 0, qq, 1), np.nan).astype(F32))
        live &= ~np.isnan(d) & (d.view(np.uint32) != best_d.view(np.uint32))
        q, dec = symmetric_codes(x, np.nan_to_num(d, nan=1.0), low, high)
        err = block_errors(x, dec)
        live &= err < best_err
        best_err = np.where(live, err, best_err)
        best_d = np.where(live, d, best_d)
        best_q = np.where(live[:, None], q, best_q)
    return found, best_d, best_q


def f16_bytes(v):
    return np.asarray(v, F32).astype(np.float16).view(np.uint8).reshape(-1, 2)


def nibbles(u):
    return (u[:, :16] | (u[:, 16:] << 4)).astype(np.uint8)


def fifth_bits(u):
    qh = np.zeros(len(u), np.uint64)
    for j in range(32):
        qh |= ((u[:, j].astype(np.uint64) >> 4) & 1) << np.uint64(j)
    return qh.astype("<u4").view(np.uint8).reshape(-1, 4)


def symmetric_blocks(name, d, q):
    low = SYMMETRIC[name][0]
    if name == "Q8_0":
        return np.concatenate([f16_bytes(d), q.astype(np.int8).view(np.uint8)], axis=1)
    u = (q + low).astype(np.uint32)
    if name == "Q4_0":
        return np.concatenate([f16_bytes(d), nibbles(u & 15)], axis=1)
    return np.concatenate([f16_bytes(d), fifth_bits(u), nibbles(u & 15)], axis=1)


def affine_blocks(name, s, m, q):
    u = q.astype(np.uint32)
    head = np.concatenate([f16_bytes(s), f16_bytes(m)], axis=1)
    if name == "Q4_1":
        return np.concatenate([head, nibbles(u)], axis=1)
    return np.concatenate([head, fifth_bits(u), nibbles(u & 15)], axis=1)


def expected(oracle, name, x):
    """The blocks of the definition for x (rows of 32), as a bytes object."""
    size = ggml_oracle.TYPES[name][2]
    ref = np.frombuffer(oracle.quantize(name, x.reshape(-1)), np.uint8).reshape(-1, size).copy()
    ref_err = block_errors(x, oracle.dequantize(name, ref.tobytes()).reshape(-1, 32))
    out = ref.copy()
    if name in SYMMETRIC:
        found, d, q = symmetric_search(x, *SYMMETRIC[name], ref_err)
        out[found] = symmetric_blocks(name, d[found], q[found])
        return out.tobytes()
    bits = AFFINE[name]
    levels = F32((1 << bits) - 1)
    for b in range(len(x)):
        try:
            s, m, _ = wq_reference.mse_group_scalar(x[b], bits, "f16")
        except wq_reference.CannotQuantize:
            continue
        if not s > 0:
            continue
        s, m = F32(s), F32(m)
        with np.errstate(all="ignore"):
            q = np.rint(np.clip((x[b] - m) / s, F32(0), levels)).astype(F32)
            dec = ((q * s).astype(F32) + m).astype(F32)
        if block_errors(x[b:b + 1], dec[None, :])[0] < ref_err[b]:
            out[b] = affine_blocks(name, np.array([s]), np.array([m]), q[None, :])[0]
    return out.tobytes()


def run_tool(tool, name, x, threads, workdir):
    src, dst = os.path.join(workdir, "in.f32"), os.path.join(workdir, "out.blocks")
    x.astype("<f4").tofile(src)
    subprocess.run([tool, "search", name, src, dst, str(threads)], check=True)
    with open(dst, "rb") as f:
        return f.read()


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    tool, quick = sys.argv[1], "--quick" in sys.argv
    try:
        oracle = ggml_oracle.GgmlOracle()
    except FileNotFoundError as e:
        print("SKIP:", e)
        return 77
    failures = 0
    with tempfile.TemporaryDirectory() as workdir:
        for name in list(SYMMETRIC) + list(AFFINE):
            cases = [c for c in input_cases(32, quick) if np.all(np.isfinite(c[1]))]
            # Weight-like blocks at scales from 1e-7 to 10: steps below binary16's normal range
            # too, where coding with the stored step matters most.
            rng = np.random.default_rng(20261206)
            blocks = 300 if quick else 2000
            weights = rng.standard_t(4, (blocks, 32)) * 10.0 ** rng.uniform(-7, 1, (blocks, 1))
            cases.append(("weights", weights.reshape(-1)))
            x = np.concatenate([np.asarray(c[1], F32) for c in cases]).reshape(-1, 32)
            want = expected(oracle, name, x)
            for threads in (1, 2):
                got = run_tool(tool, name, x, threads, workdir)
                if got != want:
                    size = ggml_oracle.TYPES[name][2]
                    bad = [b for b in range(len(x)) if got[b * size:(b + 1) * size] != want[b * size:(b + 1) * size]]
                    print("FAIL %s, %d threads: %d of %d blocks differ, first %d: wq %s, reference %s" % (
                        name, threads, len(bad), len(x), bad[0], got[bad[0] * size:(bad[0] + 1) * size].hex(),
                        want[bad[0] * size:(bad[0] + 1) * size].hex()))
                    failures += 1
            ref = oracle.dequantize(name, oracle.quantize(name, x.reshape(-1))).reshape(-1, 32)
            dec = oracle.dequantize(name, want).reshape(-1, 32)
            e_ref, e_wq = block_errors(x, ref), block_errors(x, dec)
            finite = np.isfinite(e_ref)
            worse = int(np.sum(e_wq[finite] > e_ref[finite]))
            closer = int(np.sum(e_wq[finite] < e_ref[finite]))
            if worse:
                print("FAIL %s: ggml decodes %d blocks further from the input than its own" % (name, worse))
                failures += 1
            print("%s: %d blocks, %d closer than ggml's reference, none further" % (name, len(x), closer)
                  if not worse else "")
    print("ok" if failures == 0 else "%d failures" % failures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
