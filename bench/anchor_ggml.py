#!/usr/bin/python3
"""The anchor for wq's ggml block types: ggml's own reference quantizers, timed here.

    /usr/bin/python3 bench/anchor_ggml.py [--wq BUILD/tests/ggml_blocks_tool] [--runs 3]

`llama-quantize` without an importance matrix runs ggml's quantize_row_*_ref (ggml-quants.c),
so these are the rates a user gets from llama.cpp today. They are called here in the real
libggml-base.so of npm @node-llama-cpp/linux-x64 (tests/npm, scripts/install-npm-tools.sh) on
64 MiB of float32 (a Gaussian with heavy tails, fixed seed), one thread, through ctypes (one
call per type: the call's overhead is nothing next to 16 M elements). With --wq, wq's CPU
kernels (the ggml_blocks_tool test helper, one thread, the same input) are timed in the same
run, after checking that both give the same bytes, and the table shows the ratio.

Every rate is GB/s (1e9 bytes) of float32 input; the median of --runs.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "reference"))
import ggml_oracle  # noqa: E402
from timing import median_seconds  # noqa: E402

N = 16 << 20  # 64 MiB of float32




def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wq", help="ggml_blocks_tool of a build, to time wq's kernels beside ggml's")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    lib = ggml_oracle.find_library()
    if not lib or not os.path.exists(lib):
        sys.exit("libggml-base.so not installed: run scripts/install-npm-tools.sh")
    oracle = ggml_oracle.GgmlOracle(lib)
    rng = np.random.default_rng(20261206)
    x = (rng.standard_t(5, N) * 0.02).astype("<f4")
    print("| type | ggml quantize_row_*_ref GB/s (1 thread) | wq GB/s (1 thread) | wq / ggml |")
    print("|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "x.f32")
        x.tofile(src)
        for name in ggml_oracle.TYPES:
            want = oracle.quantize(name, x)  # also warms the library up
            ggml_rate = N * 4 / median_seconds(lambda: oracle.quantize(name, x), args.runs) / 1e9
            wq_rate, ratio = "-", "-"
            if args.wq:
                dst = os.path.join(tmp, "out")
                cmd = [args.wq, "quantize", name, src, dst, "1"]
                subprocess.run(cmd, check=True)
                with open(dst, "rb") as f:
                    if f.read() != want:
                        sys.exit("wq's %s bytes differ from ggml's" % name)
                # The tool's own time (printed on stderr) excludes its file reading and writing.
                seconds = []
                for _ in range(args.runs):
                    out = subprocess.run(cmd + ["--time"], check=True, capture_output=True, text=True)
                    seconds.append(float(out.stderr.strip().split()[-1]))
                rate = N * 4 / statistics.median(seconds) / 1e9
                wq_rate, ratio = "%.2f" % rate, "%.1fx" % (rate / ggml_rate)
            print("| %s | %.3f | %s | %s |" % (name, ggml_rate, wq_rate, ratio), flush=True)


if __name__ == "__main__":
    main()
