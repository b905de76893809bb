#!/usr/bin/python3
"""The Python package's figures (issue 16), each the median of --runs, in one run:

    PYTHONPATH=build/python /usr/bin/python3 bench/bench_python.py --wq-gpu build/host/wq-gpu [--runs 3]

- save: `wq.save` of a ~420 MB float32 state dict (25 tensors [2048, 2048], random normal,
  fixed seed) at 8 bits (the CLI's default, per channel), against the assignment's `encode8`
  exactly as written (float64, per-tensor min/max, round, uint8) plus its `pickle.dump`, on the
  same arrays; both write into the same folder. wq.save fsyncs by default; pickle.dump does not,
  so wq.save(durable=False) is measured too: the like-for-like comparison.
- load: `wq.load` of the 4-bit group-64 container into numpy arrays, against the CLI's
  `wq-gpu decode` of the same file to safetensors (its process start included).
- memory: the peak RSS of a fresh process that imports wq and calls `wq.load`, minus that of the
  same process before the call, against the decoded tensors' bytes (the issue: at most those
  plus 64 MiB).
"""
import argparse
import os
import pickle
import subprocess
import sys
import tempfile

import numpy as np

import wq
from timing import median_seconds


def encode8(params, fname):
    """The assignment's encode8, as written (paddle's tensors replaced by the numpy arrays)."""
    custom_dict = {}
    for (name, param) in params.items():
        param = np.float64(param)
        if type(param) == np.ndarray:
            min_val = np.min(param)
            max_val = np.max(param)
            param = np.round((param - min_val) / (max_val - min_val) * 255)
            param = np.uint8(param)
            custom_dict[name] = (min_val, max_val, param)
        else:
            custom_dict[name] = param
    pickle.dump(custom_dict, open(fname, 'wb'))




# VmHWM, the process's peak RSS, in KiB: reset first (ru_maxrss would carry the parent's peak
# across fork and exec).
LOAD_PEAK = """
import sys, wq
def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
open("/proc/self/clear_refs", "w").write("5")
before = peak()
out = wq.load(sys.argv[1])
after = peak()
print(before, after, sum(a.nbytes for a in out.values()))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wq-gpu", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", default=None, help="folder for the files (default: a temporary one)")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    sd = {f"layer{i}.weight": (rng.standard_normal((2048, 2048), dtype=np.float32) * 0.02) for i in range(25)}
    nbytes = sum(a.nbytes for a in sd.values())
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        pk, w8, w4, dec = (os.path.join(d, n) for n in ("a.pkl", "b.wq", "c.wq", "d.safetensors"))
        t_encode8 = median_seconds(lambda: encode8(sd, pk), args.runs)
        t_save8 = median_seconds(lambda: wq.save(sd, w8, bits=8), args.runs)
        t_save8_nosync = median_seconds(lambda: wq.save(sd, w8, bits=8, durable=False), args.runs)
        t_save4 = median_seconds(lambda: wq.save(sd, w4, bits=4, granularity="group", group_size=64), args.runs)
        t_load = median_seconds(lambda: wq.load(w4), args.runs)
        t_decode = median_seconds(lambda: subprocess.run([args.wq_gpu, "decode", w4, "-o", dec, "-q"], check=True), args.runs)
        peak = subprocess.run([sys.executable, "-c", LOAD_PEAK, w4], check=True, capture_output=True, text=True,
                              env=dict(os.environ)).stdout.split()
        before, after, decoded = (int(v) for v in peak)
    gb = nbytes / 1e9
    grown = (after - before) / 1024  # MiB
    print(f"state dict: {len(sd)} float32 tensors, {nbytes / 1e6:.0f} MB; median of {args.runs}; "
          f"{os.cpu_count()} CPUs")
    print("| what | seconds | GB/s of float32 | against |")
    print("| --- | ---: | ---: | --- |")
    print(f"| encode8 + pickle.dump (the assignment) | {t_encode8:.3f} | {gb / t_encode8:.3f} | - |")
    print(f"| wq.save, 8 bits per channel (fsync) | {t_save8:.3f} | {gb / t_save8:.2f} | {t_encode8 / t_save8:.1f}x encode8 |")
    print(f"| wq.save, 8 bits per channel, durable=False (no fsync, as pickle.dump) | {t_save8_nosync:.3f} | "
          f"{gb / t_save8_nosync:.2f} | {t_encode8 / t_save8_nosync:.1f}x encode8 (issue: >= 20x) |")
    print(f"| wq.save, 4 bits group 64 | {t_save4:.3f} | {gb / t_save4:.2f} | {t_encode8 / t_save4:.1f}x encode8 |")
    print(f"| wq.load of the 4-bit file (numpy) | {t_load:.3f} | {gb / t_load:.2f} | {t_decode / t_load:.2f}x `wq-gpu decode` (issue: >= 0.8x) |")
    print(f"| `wq-gpu decode` of the same file | {t_decode:.3f} | {gb / t_decode:.2f} | - |")
    print(f"| wq.load peak RSS growth | {grown:.0f} MiB | - | decoded {decoded / 2**20:.0f} MiB + "
          f"{grown - decoded / 2**20:.0f} MiB (issue: <= + 64 MiB) |")


if __name__ == "__main__":
    main()
