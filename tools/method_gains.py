#!/usr/bin/env python3
"""Per-tensor SQNR of wq-gpu's methods against minmax on one checkpoint, through the real CLI.

    tools/method_gains.py WQ_GPU MODEL.safetensors [--bits 4,2] [--group-size 64] [--scale-dtype f16]

Runs `wq-gpu quantize --json --tensors` once per method and setting into a temporary folder and
prints, per bits, the median / min SQNR of each method and the median and smallest
per-tensor gain over minmax (the figures of docs/range-study.md and bench/RESULTS.md)."""
import argparse
import json
import math
import os
import statistics
import subprocess
import tempfile


def run(wq, model, out, method, bits, args):
    cmd = [wq, "quantize", model, "-o", out, "--method", method, "--bits", str(bits), "--granularity",
           args.granularity, "--group-size", str(args.group_size), "--scale-dtype", args.scale_dtype,
           "--backend", args.backend, "--json", "--tensors", "-q"]
    report = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    os.unlink(out)
    # A lossless tensor (SQNR +inf, null in the JSON) has no gain to compare.
    return {t["name"]: t for t in report["tensors"] if t.get("sqnr_db") is not None}, report["output_bytes"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("wq")
    ap.add_argument("model")
    ap.add_argument("--bits", default="4,2")
    ap.add_argument("--granularity", default="group")
    ap.add_argument("--group-size", type=int, default=64)
    ap.add_argument("--scale-dtype", default="f32")
    ap.add_argument("--backend", default="cpu")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as work:
        out = os.path.join(work, "q.wq.safetensors")
        layout = f"group {args.group_size}" if args.granularity == "group" else args.granularity
        print(f"{os.path.basename(args.model)}: {layout}, {args.scale_dtype} scales")
        print("| bits | method | bytes | SQNR median / min dB | gain over minmax: median (min) dB |")
        print("| --- | --- | --- | --- | --- |")
        for bits in [int(b) for b in args.bits.split(",")]:
            base, _ = run(args.wq, args.model, out, "minmax", bits, args)
            for method in ("minmax", "symmetric", "mse"):
                tensors, size = run(args.wq, args.model, out, method, bits, args)
                sq = [t["sqnr_db"] for t in tensors.values()]
                gains = [tensors[n]["sqnr_db"] - base[n]["sqnr_db"] for n in tensors if n in base]
                print(f"| {bits} | {method} | {size:,} | {statistics.median(sq):.2f} / {min(sq):.2f} | "
                      f"{statistics.median(gains):+.2f} ({min(gains):+.2f}) |")


if __name__ == "__main__":
    main()
