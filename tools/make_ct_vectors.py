#!/usr/bin/env python3
"""Writes tests/data/compressed_tensors_vectors.json: known-answer cases for the
round-to-nearest int weight quantizer of compressed-tensors ("pack-quantized", the format
vLLM loads), strategies "group" and "channel", 4 and 8 bits, symmetric and asymmetric.

The quantizer is emulated with torch on the CPU, in the model dtype, op for op as
compressed-tensors 0.18.0 does it (quantization/utils/helpers.py calculate_qparams and
calculate_range, quantization/lifecycle/forward_helpers.py _quantize and _dequantize,
quantization/quant_args.py round_to_quantized_type_*). It is written here from a reading
of that code, not copied. The packing (compressors/pack_quantized/helpers.py pack_to_int32)
is re-done with plain Python integers.

Per group (the last dim cut into groups of G, or one group per row for "channel"):
    lo = min(min(x), 0), hi = max(max(x), 0)                       exact
    symmetric:  scale = max(|lo|, |hi|) / ((2^b - 1) / 2)          one rounding to the dtype
                zp = 0
    asymmetric: scale = (hi - lo) / (2^b - 1)                      two roundings (sub, div)
                zp = round_half_even(clamp(q_min - lo / scale, q_min, q_max))
                     (lo / scale and the subtraction each rounded to the dtype; it uses
                     the scale before the next step; NaN, i.e. 0/0, gives zp = 0: see below)
    scale == 0 -> torch.finfo(dtype).eps
    q = int8(round_half_even(clamp(rnd(rnd(x / scale) + zp), q_min, q_max)))
    decoded = rnd((q - zp) * scale)
where rnd() rounds to the dtype (torch computes bf16/f16 ops in float32 and rounds once).

zp NaN: compressed-tensors gets NaN for a group whose lo is 0 and whose scale is 0 (an
all-zero group, or one whose values are so small that the scale underflows to 0), then
casts it with .to(torch.int8), which C++ leaves undefined. wq defines zp = 0 there; torch
1.13 on x86-64 also gives 0 (checked for bf16, f16, f32, scalar and vector paths).

torch 1.13's CPU build has no float16 kernels for clamp and round; for float16 those two
are done through float32 and cast back, which is bit-identical (both are exact).

"decoded" is what decompress() gives (int8 q unpacked, then _dequantize). fake_quantize()
(_quantize_dequantize, q kept as a float) gives the same values but -0.0 where q - zp is a
rounded -0.0 (e.g. round(-0.3)); the int8 path always gives +0.0.

Packing: u = q + 2^(b-1); a row of C elements becomes ceil(C*b/32) int32 words, element e
at bit e*b of the row's little-endian bit string. Zero points (asymmetric only) get the
same offset and are packed along dim 0: weight_zero_point is int32 [ceil(R*b/32), groups].

Usage: /usr/bin/python3 tools/make_ct_vectors.py [--check]
  --check   write nothing; exit 1 if the file differs from what this script would write
"""

import argparse
import json
import math
import os
import sys
import zlib

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
VECTORS = os.path.join(ROOT, "tests", "data", "compressed_tensors_vectors.json")

DTYPES = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}
# the smallest positive subnormal of each dtype
TINY = {"bf16": 2.0 ** -133, "f16": 2.0 ** -24, "f32": 2.0 ** -149}
MODES = [(4, True), (4, False), (8, True), (8, False)]

SOURCE = (
    "compressed-tensors 0.18.0 pack-quantized int weights (round to nearest, strategy group or "
    "channel; group_size 0 = channel), emulated op for op in the model dtype with torch "
    + torch.__version__ + " on the CPU by tools/make_ct_vectors.py (calculate_qparams, _quantize, "
    "_dequantize, pack_to_int32); a zero point that is NaN (0/0: all-zero or underflowing "
    "group) is stored as 0. Hex fields are little-endian bytes, row-major: input, weight_scale "
    "and decoded in the dtype, packed (weight_packed) and zero_point (weight_zero_point, "
    "asymmetric only, packed along dim 0) int32."
)


# ---------------------------------------------------------------------------- quantizer

def _exact_op(fn, t, *args):
    """clamp/round: torch 1.13 has no CPU float16 kernel for them; both are exact, so a
    float32 round trip gives the same bits."""
    if t.dtype == torch.float16:
        return fn(t.float(), *args).to(torch.float16)
    return fn(t, *args)


def int_range(bits):
    """calculate_range for INT: 0-d float32 tensors, as compressed-tensors makes them."""
    half = 2.0 ** bits / 2
    return torch.tensor(-half), torch.tensor(half - 1)


def grouped(w, group_size):
    """[R, C] -> [R, groups, G]; channel (0) -> [R, 1, C]."""
    if group_size == 0:
        return w.unsqueeze(1)
    return w.unflatten(-1, (w.shape[-1] // group_size, group_size))


def qparams(w, bits, symmetric, group_size):
    """Scale [R, groups] in w's dtype and int8 zero point [R, groups]."""
    g = grouped(w, group_size)
    lo = torch.amin(g, dim=-1)
    hi = torch.amax(g, dim=-1)
    lo = torch.min(lo, torch.zeros_like(lo))
    hi = torch.max(hi, torch.zeros_like(hi))
    q_min, q_max = int_range(bits)
    span = q_max - q_min                      # 0-d float32: 15 or 255
    if symmetric:
        scale = torch.max(torch.abs(lo), torch.abs(hi)) / (float(span) / 2)
        zp = torch.zeros(scale.shape, dtype=lo.dtype)
    else:
        scale = (hi - lo) / float(span)
        zp = q_min - (lo / scale)             # stays in the dtype (0-d operand)
        zp = _exact_op(torch.clamp, zp, q_min, q_max)
    eps = torch.finfo(scale.dtype).eps
    scale = torch.where(scale == 0, torch.tensor(eps, dtype=scale.dtype), scale)
    # round_to_quantized_type_dtype(zp, int8): clamp to int8's range, round, cast
    zp = _exact_op(torch.round, _exact_op(torch.clamp, zp, -128, 127))
    nan = torch.isnan(zp)
    zp = torch.where(nan, torch.zeros_like(zp), zp).to(torch.int8)   # wq: NaN -> 0
    return scale, zp


def scaled_values(w, scale, zp, group_size):
    """_quantize up to the clamp: rnd(rnd(x / scale) + zp), grouped [R, groups, G]."""
    g = grouped(w, group_size)
    scaled = g / scale.unsqueeze(-1)
    scaled += zp.unsqueeze(-1).to(w.dtype)   # symmetric: a zero zp, as compress() has it
    return scaled


def quantize(w, scale, zp, bits, group_size):
    """int8 q [R, C]."""
    q_min, q_max = int_range(bits)
    scaled = scaled_values(w, scale, zp, group_size)
    r = _exact_op(torch.round, _exact_op(torch.clamp, scaled, q_min, q_max))
    return r.to(torch.int8).flatten(start_dim=-2)


def dequantize(q, scale, zp, group_size):
    """_dequantize: (q - zp) in the scale's dtype, times the scale; zp None = symmetric."""
    v = grouped(q, group_size).to(scale.dtype)
    if zp is not None:
        v = v - zp.unsqueeze(-1).to(scale.dtype)
    return (v * scale.unsqueeze(-1)).flatten(start_dim=-2)


# ---------------------------------------------------------------------------- packing

def pack_rows(u, bits):
    """u: unsigned ints [R, n] < 2^bits -> int32 [R, ceil(n*bits/32)]."""
    rows, n = u.shape
    words = math.ceil(n * bits / 32)
    out = np.zeros((rows, words), dtype=np.uint32)
    for r in range(rows):
        acc = 0
        for e in range(n):
            v = int(u[r, e])
            assert 0 <= v < (1 << bits)
            acc |= v << (e * bits)
        for k in range(words):
            out[r, k] = (acc >> (32 * k)) & 0xFFFFFFFF
    return out.view(np.int32)


def pack_weight(q, bits):
    return pack_rows(q.numpy().astype(np.int64) + (1 << (bits - 1)), bits)


def pack_zero_point(zp, bits):
    u = zp.numpy().astype(np.int64) + (1 << (bits - 1))
    return np.ascontiguousarray(pack_rows(u.T, bits).T)


# ---------------------------------------------------------------------------- inputs

def to_dtype(a, dt):
    """float64 numbers -> torch tensor in dt (round to nearest even)."""
    return torch.tensor(np.asarray(a, dtype=np.float64)).to(DTYPES[dt])


def representable(v, dt):
    return float(to_dtype([v], dt)[0]) == v


def exact_ties(n, dt, bits, symmetric, rng):
    """A group of n whose scale is exactly 2^-6 and whose other values sit exactly on
    k + 0.5 after x / scale (+ zp)."""
    s = 2.0 ** -6
    top = 2 ** bits - 1
    if symmetric:
        lo_q, hi_q = -top / 2, top / 2        # ends: -m and m, m = scale * (2^b - 1) / 2
    else:
        a = 3 if bits == 4 else 100
        lo_q, hi_q = -a, top - a              # scale (hi - lo) / (2^b - 1) = s, zp = q_min + a
    ties = [k + 0.5 for k in range(int(math.floor(lo_q)), int(math.ceil(hi_q)))
            if lo_q <= k + 0.5 <= hi_q and representable((k + 0.5) * s, dt)]
    vals = [hi_q * s, lo_q * s] + [ties[i] * s for i in rng.randint(0, len(ties), n - 2)]
    order = rng.permutation(n)
    return [vals[i] for i in order]


def searched_ties(base, dt, bits, symmetric):
    """base: float64 values of one group. Keep its min and max (so its scale and zp), and
    move the other values to dtype numbers whose rnd(rnd(x / scale) + zp) is exactly a
    half-integer, preferring ones where the exact quotient is not (a tie made by the
    dtype's rounding). Returns (values, count of rounding-made ties)."""
    w = to_dtype(base, dt).reshape(1, -1)
    scale, zp = qparams(w, bits, symmetric, 0)
    q_min, q_max = int_range(bits)
    sc, z = float(scale[0, 0]), int(zp[0, 0])
    vals = w[0].double().numpy().copy()
    keep = {int(np.argmin(vals)), int(np.argmax(vals))}
    lo_v, hi_v = vals.min(), vals.max()
    made = 0
    k_lo, k_hi = int(q_min), int(q_max)
    for i in range(len(vals)):
        if i in keep:
            continue
        t = (k_lo + (i * 7) % (k_hi - k_lo)) + 0.5
        x0 = to_dtype([(t - z) * sc], dt)
        bits_ = x0.view(torch.int16) if dt != "f32" else x0.view(torch.int32)
        cands = torch.cat([(bits_ + d).view(DTYPES[dt]) for d in range(-12, 13)])
        cands = cands[(cands.double() > lo_v) & (cands.double() < hi_v)]
        if len(cands) == 0:
            continue
        got = scaled_values(cands.reshape(-1, 1), scale.expand(len(cands), 1),
                            zp.expand(len(cands), 1), 0).reshape(-1).double().numpy()
        exact = cands.double().numpy() / sc + z
        hit = np.nonzero(got == t)[0]
        if len(hit) == 0:
            continue
        off = hit[exact[hit] != t]
        j = int(off[0]) if len(off) else int(hit[0])
        made += int(len(off) > 0)
        vals[i] = float(cands[j])
    return vals, made


def make_input(dt, bits, symmetric, group_size, rows, cols, special, rng):
    """special: list of (row, group, kind) to overwrite; kinds below."""
    x = rng.normal(0.0, 0.02, size=(rows, cols))
    if rows >= 3:
        x[1] *= 50.0
    if rows >= 30:
        x[30] *= 50.0
    for _ in range(max(1, rows * cols // 400)):     # a few outliers
        x[rng.randint(rows), rng.randint(cols)] = rng.choice([-1.0, 1.0]) * rng.uniform(0.3, 1.0)
    g = group_size or cols
    tiny = TINY[dt]
    made = 0
    for r, gi, kind in special:
        sl = slice(gi * g, (gi + 1) * g)
        if kind == "const_pos":
            x[r, sl] = rng.uniform(0.01, 0.05)
        elif kind == "const_neg":
            x[r, sl] = -rng.uniform(0.01, 0.05)
        elif kind == "zero":
            x[r, sl] = 0.0
            x[r, gi * g] = -0.0
        elif kind == "all_pos":
            x[r, sl] = np.abs(rng.normal(0.0, 0.02, g)) + 0.001
        elif kind == "subnormal":
            if dt == "f16":                             # |x| < 2^-14: all subnormal
                x[r, sl] = rng.randint(-1023, 1024, g) * tiny
            else:                                       # near 1e-39 (below 2^-126)
                x[r, sl] = rng.normal(0.0, 1.0, g) * 1e-39
        elif kind == "tiny_nonneg":                     # scale underflows to 0, zp 0/0
            x[r, sl] = rng.randint(0, 4, g) * tiny
            x[r, gi * g + 1] = 3 * tiny
        elif kind == "tiny_mixed":                      # scale underflows, zp -> +inf
            x[r, sl] = rng.randint(-3, 4, g) * tiny
            x[r, gi * g] = -3 * tiny
            x[r, gi * g + 1] = 3 * tiny
        elif kind == "exact_ties":
            x[r, sl] = exact_ties(g, dt, bits, symmetric, rng)
        elif kind == "searched_ties":
            x[r, sl], m = searched_ties(x[r, sl], dt, bits, symmetric)
            made += m
        elif kind == "f16_big":                         # wide but hi - lo < 65504
            x[r, sl] = rng.normal(0.0, 1000.0, g)
            x[r, gi * g + 2] = 60000.0
            x[r, gi * g + 5] = -5000.0
        elif kind == "f16_max":                         # -65504: q_min * scale overflows
            x[r, sl] = rng.normal(0.0, 1000.0, g)
            x[r, gi * g + 3] = 65504.0
            x[r, gi * g + 4] = -65504.0
        elif kind == "f16_pm60000":                     # hi - lo = 120000 > 65504
            x[r, sl] = rng.normal(0.0, 1000.0, g)
            x[r, gi * g] = 60000.0
            x[r, gi * g + 1] = -60000.0
        elif kind == "f16_neg65280":                    # symmetric: x / scale rounds to
            x[r, sl] = rng.normal(0.0, 10.0, g)         # q_min, q_min * scale -> -inf
            x[r, gi * g + 6] = -65280.0                 # (4 and 8 bits)
        else:
            raise ValueError(kind)
    return to_dtype(x, dt), made


def shapes(dt):
    """(group_size, rows, cols, special groups, name suffix)."""
    g32 = [(0, 0, "const_pos"), (0, 1, "const_neg"), (0, 2, "zero"),
           (1, 0, "all_pos"), (1, 1, "subnormal"), (1, 2, "exact_ties"),
           (2, 0, "tiny_nonneg"), (2, 1, "tiny_mixed")]
    if dt == "f16":
        g32.append((2, 2, "f16_big"))
    out = [
        (128, 4, 256, [(0, 1, "searched_ties"), (2, 0, "exact_ties"), (3, 1, "const_neg")],
         ""),
        (32, 3, 96, g32, ""),
        (0, 1, 7, [], ""),
        (0, 3, 9, [(0, 0, "exact_ties"), (2, 0, "zero")], ""),
        (0, 37, 33, [(10, 0, "const_pos"), (17, 0, "subnormal"), (25, 0, "searched_ties"),
                     (31, 0, "zero"), (32, 0, "tiny_nonneg"), (33, 0, "const_neg"),
                     (36, 0, "tiny_mixed")], ""),
    ]
    if dt == "f16":
        out.append((32, 2, 64, [(0, 0, "f16_max"), (0, 1, "f16_neg65280"),
                                (1, 1, "f16_pm60000")], "_overflow"))
    return out


def hexof(t):
    if isinstance(t, torch.Tensor):
        if t.dtype in (torch.bfloat16, torch.float16):
            a = t.contiguous().view(torch.int16).numpy().astype("<i2")
        else:
            a = t.contiguous().numpy()
    else:
        a = t
    a = np.ascontiguousarray(a)
    return a.astype(a.dtype.newbyteorder("<")).tobytes().hex()


def build():
    cases = []
    made_total = 0
    for dt in DTYPES:
        for bits, symmetric in MODES:
            for group_size, rows, cols, special, suffix in shapes(dt):
                name = "%s_b%d_%s_%s_%dx%d%s" % (
                    dt, bits, "sym" if symmetric else "asym",
                    "g%d" % group_size if group_size else "channel", rows, cols, suffix)
                rng = np.random.RandomState(zlib.crc32(name.encode()))
                w, made = make_input(dt, bits, symmetric, group_size, rows, cols, special, rng)
                made_total += made
                scale, zp = qparams(w, bits, symmetric, group_size)
                q = quantize(w, scale, zp, bits, group_size)
                decoded = dequantize(q, scale, None if symmetric else zp, group_size)
                case = {
                    "name": name, "dtype": dt, "bits": bits, "symmetric": symmetric,
                    "group_size": group_size, "rows": rows, "cols": cols,
                    "input": hexof(w),
                    "packed": hexof(pack_weight(q, bits)),
                    "scale": hexof(scale),
                }
                if not symmetric:
                    case["zero_point"] = hexof(pack_zero_point(zp, bits))
                case["decoded"] = hexof(decoded)
                cases.append(case)
    return {"source": SOURCE, "cases": cases}, made_total


def render(doc):
    return json.dumps(doc, indent=1) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    doc, made = build()
    text = render(doc)
    if args.check:
        with open(VECTORS) as f:
            same = f.read() == text
        print("up to date" if same else "differs: rerun tools/make_ct_vectors.py")
        return 0 if same else 1
    with open(VECTORS, "w") as f:
        f.write(text)
    print("%s: %d cases, %d bytes, %d ties made by the dtype's rounding"
          % (os.path.relpath(VECTORS, ROOT), len(doc["cases"]), len(text), made))
    return 0


if __name__ == "__main__":
    sys.exit(main())
