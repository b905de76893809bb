"""wq's `--method mse` in the legacy ggml layouts against llama.cpp's reference blocks, on real
pretrained weights: the per-tensor SQNR of each, through wq-gpu itself.

    /usr/bin/python3 tools/ggml_quality.py build/host/wq-gpu WEIGHTS.safetensors [--types Q4_0,Q8_0]

Every float32 tensor of WEIGHTS with at least 32 values becomes rows of 32 (its values in
order, the last partial block dropped), since ggml blocks run along rows and many convolution
kernels have rows of 3; each type is written (as ggml blocks in a WQ container: the names are
longer than GGUF allows) with and without --method mse, and the
reports' per-tensor SQNR are compared: median and minimum over the tensors, the median gain and
the smallest gain (never negative: the search keeps the reference block where it is not
strictly better). WEIGHTS: e.g. the human models converted by tools/convert_pretrained.py.
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ct_quality import read_f32  # noqa: E402


def write_rows_of_32(path, weights):
    header, blobs, offset = {}, [], 0
    for name, w in weights.items():
        rows = w.size // 32
        if rows == 0:
            continue
        b = np.ascontiguousarray(w.reshape(-1)[:rows * 32]).tobytes()
        header[name] = {"dtype": "F32", "shape": [rows, 32], "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
    return len(header), offset


def sqnr_by_tensor(wq_gpu, src, dst, args):
    started = time.perf_counter()
    out = subprocess.run([wq_gpu, "quantize", src, "-o", dst, "--json", "--backend", "cpu", "--all"] + args,
                         check=True, capture_output=True, text=True).stdout
    seconds = time.perf_counter() - started
    return {t["name"]: t["sqnr_db"] for t in json.loads(out)["tensors"]}, seconds


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("wq_gpu")
    p.add_argument("weights")
    p.add_argument("--types", default="Q4_0,Q4_1,Q5_0,Q5_1,Q8_0")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "rows32.safetensors")
        tensors, nbytes = write_rows_of_32(src, read_f32(a.weights))
        print("%d tensors, %d float32 values, as rows of 32\n" % (tensors, nbytes // 4))
        print("| type | reference, median (min) | mse, median (min) | gain, median (min) | time ref / mse |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for t in a.types.split(","):
            ref, t_ref = sqnr_by_tensor(a.wq_gpu, src, os.path.join(tmp, "ref.wq.safetensors"), ["--type", t])
            mse, t_mse = sqnr_by_tensor(a.wq_gpu, src, os.path.join(tmp, "mse.wq.safetensors"), ["--type", t, "--method", "mse"])
            names = [n for n in ref if np.isfinite(ref[n]) and np.isfinite(mse[n])]
            r = np.array([ref[n] for n in names])
            m = np.array([mse[n] for n in names])
            g = m - r
            print("| %s | %.2f (%.2f) dB | %.2f (%.2f) | %+.2f (%+.2f) | %.2f / %.2f s |" % (
                t, np.median(r), r.min(), np.median(m), m.min(), np.median(g), g.min(), t_ref, t_mse))
            if g.min() < 0:
                print("NEGATIVE gain on", [n for n, v in zip(names, g) if v < 0], file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
