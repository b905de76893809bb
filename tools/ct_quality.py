"""compressed-tensors export on real pretrained weights: the SQNR of its own round-to-nearest
(`--method minmax`, compressed-tensors' bytes) against wq's search within the format
(`--method mse`), per scheme.

    /usr/bin/python3 tools/ct_quality.py build/host/wq-gpu WEIGHTS.safetensors [--group 32]

The linear maps of WEIGHTS (2-D tensors, and 4-D convolutions with 1x1 kernels, which are
linear maps over channels) whose input width is a multiple of the group become MODULE.weight
of a bf16 Hugging Face folder (with a config.json) in a temporary directory; every scheme is
exported both ways and the report's per-tensor SQNR compared: median and minimum over the
tensors, and the median per-tensor gain of mse. WEIGHTS: e.g. the human models converted by
tools/convert_pretrained.py.
"""
import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np


def read_f32(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    out = {}
    for name, e in header.items():
        if e["dtype"] != "F32":
            continue
        a, b = e["data_offsets"]
        out[name] = np.frombuffer(data[8 + n + a:8 + n + b], "<f4").reshape(e["shape"])
    return out


def bf16_bits(x):
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype("<u2")


def write_folder(folder, weights):
    os.makedirs(folder)
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, w in weights.items():
        b = bf16_bits(w).tobytes()
        header[name] = {"dtype": "BF16", "shape": list(w.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(os.path.join(folder, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"model_type": "converted", "torch_dtype": "bfloat16"}, f)


def sqnr_by_tensor(wq, folder, out, scheme, method, group):
    # One file's report has the per-tensor figures (a tree's has files).
    r = subprocess.run([wq, "quantize", os.path.join(folder, "model.safetensors"), "-o", out + ".safetensors",
                        "--to", "compressed-tensors", "--scheme", scheme, "--method", method, "--group-size",
                        str(group), "--json"], capture_output=True, text=True, check=True)
    report = json.loads(r.stdout)
    return {t["name"]: t["sqnr_db"] for t in report["tensors"] if t.get("encoding") == "pack-quantized"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("wq")
    ap.add_argument("weights")
    ap.add_argument("--group", type=int, default=32)
    args = ap.parse_args()
    weights = {}
    for name, w in read_f32(args.weights).items():
        if w.ndim == 4 and w.shape[2:] == (1, 1):
            w = w.reshape(w.shape[0], w.shape[1])
        if w.ndim == 2 and w.shape[1] % args.group == 0 and w.shape[0] >= 8:
            weights[name.replace("/", ".") + ".weight"] = w
    print("%d linear maps of %s with inputs in multiples of %d (%d parameters)"
          % (len(weights), os.path.basename(args.weights), args.group, sum(w.size for w in weights.values())))
    work = tempfile.mkdtemp(prefix="wq-ct-quality-")
    try:
        folder = os.path.join(work, "in")
        write_folder(folder, weights)
        for scheme in ("W4A16", "W4A16_ASYM", "W8A16", "W8A16_ASYM"):
            rtn = sqnr_by_tensor(args.wq, folder, os.path.join(work, "rtn"), scheme, "minmax", args.group)
            mse = sqnr_by_tensor(args.wq, folder, os.path.join(work, "mse"), scheme, "mse", args.group)
            gains = [mse[k] - rtn[k] for k in rtn]
            print("%-11s minmax median %.2f dB (min %.2f) | mse median %.2f dB (min %.2f) | gain median %+.2f dB, "
                  "min %+.2f" % (scheme, np.median(list(rtn.values())), min(rtn.values()),
                                 np.median(list(mse.values())), min(mse.values()), np.median(gains), min(gains)))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
