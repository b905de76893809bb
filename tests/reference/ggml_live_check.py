"""wq's ggml block quantizers and decoders against ggml's own library, byte for byte.

usage: ggml_live_check.py GGML_BLOCKS_TOOL [--quick]

For every quantized type and many inputs (fixed seeds: weight-like Gaussians, heavy tails with
outliers, one-signed data, constant, zero and single-spike blocks, rounding ties, subnormals,
huge ranges that overflow binary16), the blocks wq writes (through the CPU backend's kernels,
ggml_blocks_tool) must equal those of ggml's `quantize_row_*_ref`, and wq's decode of them must
equal ggml's `dequantize_row_*`, bit for bit. Random block bytes are decoded by both too.
Exit 77 (skipped) when libggml-base.so is not installed (scripts/install-npm-tools.sh).
"""
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ggml_oracle  # noqa: E402


LONG_Q3_K_REFINEMENTS = [
    "-0x1.b5277ep-1 0x1.0a2b36p-1 0x1.b62e94p-2 -0x1.4eca72p+0 0x1.ae623cp+0 0x1.652662p-6 0x1.2a7ccep-4 "
    "-0x1.e5e9ecp-3 0x1.21abe4p-1 0x1.2da53ap-5 0x1.e5012ep-3 -0x1.bba74ep+0 -0x1.c7ddc6p-1 0x1.68d374p-4 "
    "-0x1.288168p+0 0x1.1a3eaap+0",
    "0x1.eed1eap+0 -0x1.dd9a68p-3 -0x1.7737d4p-1 -0x1.6cf2e8p-3 -0x1.ce33eep-2 -0x1.aebefcp-1 -0x1.d9ae8ep-1 "
    "0x1.0274eep+0 0x1.65ffaep+0 -0x1.d36042p-1 -0x1.f5bd98p+0 -0x1.4b068p-2 -0x1.7b89dap-1 -0x1.5032cap+0 "
    "-0x1.0b390cp-1 -0x1.c6ef1ep+0",
    "0x1.f8ba08p-3 0x1.f79288p-1 0x1.fe141p-2 0x1.123f76p-2 -0x1.f86a24p-2 -0x1.030254p-2 0x1.ed352cp-2 "
    "-0x1.03e098p-1 0x1.0af32p-2 0x1.83b6fap-1 0x1.846f3ap-1 -0x1.fe8ed2p-2 -0x1.7c275p-1 -0x1.fa2e3ep-1 "
    "0x1.f96ae8p-1 0x1.640ddap-9",
    "-0x1.900e16p+0 0x1.44e9fcp+0 0x1.216c8p-2 -0x1.8cbfacp+0 0x1.fddce6p-1 0x1.0cc7c4p+0 -0x1.a3affep-3 "
    "-0x1.78e012p-1 0x1.49f66p-1 0x1.8da67cp+0 -0x1.41bf3ap-1 -0x1.640ae8p+0 0x1.7643f2p-2 0x1.66ee2ap-1 "
    "0x1.062406p+0 -0x1.260886p-1",
    "0x1.1c4f68p-3 0x1.2206f8p+0 -0x1.8296e8p+0 -0x1.d10518p+0 -0x1.824b6cp-2 -0x1.7e2cc6p+0 0x1.ed8abep-5 "
    "0x1.0e4b46p+0 -0x1.0af054p-2 0x1.f071eap-1 0x1.437906p-5 -0x1.22bd5ap+1 0x1.892632p-1 0x1.15333p+1 "
    "0x1.754d1cp+0 0x1.103c6p-1",
]


def input_cases(block, quick):
    """(name, float32 array) pairs; every length is a multiple of `block`."""
    rng = np.random.default_rng(20261205)
    counts = [1, 3, 7] if quick else [1, 2, 3, 7, 33]
    cases = []
    for n in counts:
        size = n * block
        cases.append(("gauss_0.02_x%d" % n, rng.normal(0, 0.02, size)))
        cases.append(("uniform_x%d" % n, rng.uniform(-1, 1, size)))
        t = rng.standard_t(3, size) * 0.05
        t[rng.integers(0, size, max(1, size // 50))] *= 40  # outliers
        cases.append(("heavy_tail_x%d" % n, t))
        cases.append(("positive_x%d" % n, np.abs(rng.normal(0.3, 0.2, size))))
        cases.append(("negative_x%d" % n, -np.abs(rng.normal(0.3, 0.2, size)) - 1))
    size = 4 * block
    cases.append(("zeros", np.zeros(size)))
    cases.append(("negative_zeros", np.full(size, -0.0)))
    cases.append(("constant_positive", np.full(size, 0.375)))
    cases.append(("constant_negative", np.full(size, -2.5)))
    spike = np.zeros(size)
    spike[::37] = 1.0
    spike[5] = -3.0
    cases.append(("spikes", spike))
    # Values on a half-integer grid: ties everywhere for the codes' rounding.
    cases.append(("grid_ties", (rng.integers(-16, 16, size) + 0.5) / 8))
    cases.append(("small_integers", rng.integers(-8, 8, size).astype(float)))
    # Sub-block ranges spanning many orders of magnitude within one super-block.
    scales = 10.0 ** rng.integers(-6, 4, size // 16).repeat(16)
    cases.append(("mixed_magnitudes", rng.normal(0, 1, size) * scales))
    cases.append(("tiny_1e-20", rng.normal(0, 1e-20, size)))
    cases.append(("subnormal", rng.normal(0, 1e-40, size)))
    cases.append(("subnormal_min", rng.choice([0.0, 1.4e-45, -1.4e-45, 2.8e-45], size)))
    # Sub-blocks whose Q3_K refinement changes codes in five, six and seven passes (ggml stops
    # after five; tests/backend/ggml_backend_test.cpp holds the same ones), among weights.
    hard = np.array([[float.fromhex(v) for v in row.split()] for row in LONG_Q3_K_REFINEMENTS])
    mixed = rng.normal(0, 0.5, size)
    for k in range(0, size // 16, 3):
        mixed[16 * k:16 * k + 16] = hard[k % len(hard)]
    cases.append(("q3_k_long_refinements", mixed))
    cases.append(("huge_1e30", rng.normal(0, 1e30, size)))
    cases.append(("f16_edge", rng.uniform(-70000, 70000, size)))
    cases.append(("near_f32_max", rng.uniform(-3e38, 3e38, size)))
    return [(name, np.asarray(x, dtype=np.float32)) for name, x in cases]


def run_tool(tool, command, type_name, data, threads):
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "in")
        dst = os.path.join(tmp, "out")
        with open(src, "wb") as f:
            f.write(data)
        subprocess.run([tool, command, type_name, src, dst, str(threads)], check=True)
        with open(dst, "rb") as f:
            return f.read()


def first_difference(a, b, unit):
    for i in range(0, min(len(a), len(b)), unit):
        if a[i:i + unit] != b[i:i + unit]:
            return i // unit
    return None if len(a) == len(b) else min(len(a), len(b)) // unit


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    tool = sys.argv[1]
    quick = "--quick" in sys.argv
    path = ggml_oracle.find_library()
    if not path or not os.path.exists(path):
        print("SKIP: libggml-base.so not installed (scripts/install-npm-tools.sh installs it)")
        return 77
    oracle = ggml_oracle.GgmlOracle(path)
    print("ggml library:", oracle.path)
    failures = 0
    checked_blocks = 0
    rng = np.random.default_rng(7)
    for type_name, (_, block, size, _) in ggml_oracle.TYPES.items():
        type_failures = 0
        for name, x in input_cases(block, quick):
            expected = oracle.quantize(type_name, x)
            for threads in (1, 2):
                got = run_tool(tool, "quantize", type_name, x.tobytes(), threads)
                k = first_difference(expected, got, size)
                if k is not None:
                    type_failures += 1
                    print("FAIL %s %s (%d threads): block %d differs\n  input %s\n  ggml  %s\n  wq    %s" % (
                        type_name, name, threads, k, x[k * block:(k + 1) * block].tobytes().hex(),
                        expected[k * size:(k + 1) * size].hex(), got[k * size:(k + 1) * size].hex()))
                    break
            checked_blocks += x.size // block
            decoded_ggml = oracle.dequantize(type_name, expected).tobytes()
            decoded_wq = run_tool(tool, "decode", type_name, expected, 1)
            k = first_difference(decoded_ggml, decoded_wq, 4 * block)
            if k is not None:
                type_failures += 1
                print("FAIL %s %s: decode of block %d differs" % (type_name, name, k))
        # Any bytes at all are a block that ggml decodes; wq must read them the same way. The
        # binary16 fields are kept finite here (a NaN's payload is not part of the contract).
        blocks = rng.integers(0, 256, size * 64, dtype=np.uint8)
        decoded_ggml = oracle.dequantize(type_name, blocks.tobytes())
        decoded_wq = np.frombuffer(run_tool(tool, "decode", type_name, blocks.tobytes(), 2), dtype="<f4")
        both_nan = np.isnan(decoded_ggml) & np.isnan(decoded_wq)
        if not np.array_equal(decoded_ggml.view(np.uint32)[~both_nan], decoded_wq.view(np.uint32)[~both_nan]):
            type_failures += 1
            bad = np.flatnonzero((decoded_ggml.view(np.uint32) != decoded_wq.view(np.uint32)) & ~both_nan)[0]
            print("FAIL %s: decode of random bytes differs at element %d: ggml %r wq %r" % (
                type_name, bad, decoded_ggml[bad], decoded_wq[bad]))
        print("%-5s %s" % (type_name, "ok" if type_failures == 0 else "%d FAILED" % type_failures))
        failures += type_failures
    print("%d blocks quantized by both; %d failures" % (checked_blocks, failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
