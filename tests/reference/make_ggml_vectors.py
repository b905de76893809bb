"""Known-answer vectors for wq's ggml block types, computed by ggml's own library.

usage: make_ggml_vectors.py [--check] [OUT.json]   (default tests/data/ggml_vectors.json)

Each case holds float32 input, the blocks that ggml's `quantize_row_*_ref` writes for it (what
`llama-quantize` writes without an importance matrix) and ggml's `dequantize_row_*` of them. The
file is checked in, so tests/unit/ggml_vectors_test.cpp runs without npm; with --check this
script recomputes every case with the installed library and fails if the file differs (ctest
runs that when the library is present). Exit 77 when it is not installed.
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ggml_oracle  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "..", "data", "ggml_vectors.json")


def inputs(block):
    rng = np.random.default_rng(1205)
    out = [
        ("gauss_0.02_two_blocks", rng.normal(0, 0.02, 2 * block)),
        ("heavy_tail_outliers", rng.standard_t(3, block) * 0.05 * np.where(rng.random(block) < 0.03, 40, 1)),
        ("positive_only", np.abs(rng.normal(0.3, 0.2, block))),
        ("zeros", np.zeros(block)),
        ("constant", np.full(block, -2.5)),
        ("half_grid_ties", (rng.integers(-16, 16, block) + 0.5) / 8),
        ("mixed_magnitudes", rng.normal(0, 1, block) * 10.0 ** rng.integers(-6, 4, block // 16).repeat(16)),
        ("subnormal", rng.normal(0, 1e-40, block)),
        ("f16_overflow", rng.uniform(-70000, 70000, block)),
    ]
    return [(name, np.asarray(x, dtype=np.float32)) for name, x in out]


def build(oracle):
    cases = []
    for type_name, (type_id, block, _, _) in ggml_oracle.TYPES.items():
        for name, x in inputs(block):
            blocks = oracle.quantize(type_name, x)
            cases.append({
                "type": type_name,
                "type_id": type_id,
                "name": name,
                "input_f32_hex": x.astype("<f4").tobytes().hex(),
                "blocks_hex": blocks.hex(),
                "decoded_f32_hex": oracle.dequantize(type_name, blocks).astype("<f4").tobytes().hex(),
            })
    return {
        "about": "ggml block types: float32 input, the blocks of ggml's quantize_row_*_ref and ggml's "
                 "dequantize_row_* of them, computed by calling libggml-base.so of npm "
                 "@node-llama-cpp/linux-x64 (tests/npm/package-lock.json) from "
                 "tests/reference/make_ggml_vectors.py. Hex fields are little-endian bytes.",
        "cases": cases,
    }


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    out = args[0] if args else DEFAULT_OUT
    path = ggml_oracle.find_library()
    if not path or not os.path.exists(path):
        print("SKIP: libggml-base.so not installed (scripts/install-npm-tools.sh installs it)")
        return 77
    data = build(ggml_oracle.GgmlOracle(path))
    if "--check" in sys.argv:
        with open(out) as f:
            stored = json.load(f)
        if stored != data:
            bad = [c["type"] + "/" + c["name"] for c, d in zip(stored["cases"], data["cases"]) if c != d]
            print("FAIL: %s differs from what ggml computes now: %s" % (out, bad[:10] or "case list"))
            return 1
        print("%s: all %d cases equal ggml's output" % (out, len(data["cases"])))
        return 0
    with open(out, "w") as f:
        json.dump(data, f, indent=0)
        f.write("\n")
    print("wrote %d cases to %s" % (len(data["cases"]), out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
