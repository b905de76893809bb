#!/usr/bin/python3
"""Anchors for wq's throughput: the original assignment's numpy + pickle method, and torch.

    /usr/bin/python3 bench/anchor_numpy.py FILE.safetensors [--runs 3] [--no-torch] [--json OUT]

Reads the float tensors of a safetensors file with numpy (8-byte little-endian header length,
JSON header, data offsets relative to the start of the data), then times, median of --runs:

  load          reading the file into numpy arrays (page cache permitting)
  encode8       the assignment's method exactly as written, on every tensor:
                    param = np.float64(param); min_val = np.min(param); max_val = np.max(param)
                    param = np.round((param - min_val) / (max_val - min_val) * 255)
                    param = np.uint8(param); custom_dict[name] = (min_val, max_val, param)
  encode8+pickle  the same followed by pickle.dump(custom_dict, open(fname, 'wb'))
  e2e           load + encode8 + pickle.dump, what 'wq-gpu quantize' does end to end
                (without fsync; wq-gpu fsyncs its output)
  torch anchors (1 thread and every core): per-tensor 8-bit torch.quantize_per_tensor,
                per-channel 8-bit torch.quantize_per_channel (axis 0), and a per-group 4-bit
                quantizer written in torch (groups of 64 along rows, min/max, scale, round,
                clamp; codes left as one uint8 each, not packed). Each includes its min/max.

Every rate is GB/s (1e9 bytes) of float32 input.
"""
import argparse
import json
import os
import pickle
import statistics
import sys
import tempfile
import time

import numpy as np

DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16}


def write_benchmark_model(path):
    """The end-to-end benchmarks' checkpoint: 25 float32 tensors [2048, 2048] (~420 MB), random
    normal with a fixed seed, as safetensors. Returns the bytes of tensor data."""
    rng = np.random.default_rng(12345)
    names = [f"layers.{i}.weight" for i in range(25)]
    shape = (2048, 2048)
    nbytes = shape[0] * shape[1] * 4
    header = {"__metadata__": {"format": "pt"}}
    for i, n in enumerate(names):
        header[n] = {"dtype": "F32", "shape": list(shape), "data_offsets": [i * nbytes, (i + 1) * nbytes]}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for _ in names:
            f.write(rng.standard_normal(shape, dtype=np.float32).tobytes())
    return len(names) * nbytes


def read_safetensors(path):
    """Returns {name: ndarray} for the file's float tensors, in file order."""
    with open(path, "rb") as f:
        (header_len,) = np.frombuffer(f.read(8), dtype="<u8")
        header = json.loads(f.read(int(header_len)))
        data = f.read()
    tensors = {}
    items = [(k, v) for k, v in header.items() if k != "__metadata__"]
    items.sort(key=lambda kv: kv[1]["data_offsets"][0])
    for name, info in items:
        if info["dtype"] not in DTYPES:
            continue
        begin, end = info["data_offsets"]
        arr = np.frombuffer(data, dtype=DTYPES[info["dtype"]], count=(end - begin) // np.dtype(DTYPES[info["dtype"]]).itemsize,
                            offset=begin).reshape(info["shape"])
        tensors[name] = arr
    return tensors


def encode8(state_dict):
    # The assignment's loop, verbatim in substance.
    custom_dict = {}
    for name, param in state_dict.items():
        param = np.float64(param)
        min_val = np.min(param)
        max_val = np.max(param)
        param = np.round((param - min_val) / (max_val - min_val) * 255)
        param = np.uint8(param)
        custom_dict[name] = (min_val, max_val, param)
    return custom_dict


def timed(fn, runs):
    times = []
    result = None
    for _ in range(runs):
        result = None  # free the previous run's output first
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, result


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--json", help="also write the results as JSON here")
    ap.add_argument("--tmpdir", default=None, help="where the pickle is written (deleted after)")
    args = ap.parse_args()

    results = {}
    t_load, load_times, tensors = timed(lambda: read_safetensors(args.file), args.runs)
    in_bytes = sum(a.size * 4 for a in tensors.values())  # as float32, the rate's unit
    file_bytes = os.path.getsize(args.file)
    largest = max(tensors.values(), key=lambda a: a.size)
    print(f"file: {args.file}  ({file_bytes / 1e6:.1f} MB, {len(tensors)} float tensors, "
          f"{in_bytes / 1e6:.1f} MB float32, largest {list(largest.shape)})")

    def report(key, seconds, times):
        results[key] = {"seconds": seconds, "gbps": in_bytes / seconds / 1e9, "runs": times}
        print(f"  {key:<34} {seconds * 1e3:9.1f} ms  {in_bytes / seconds / 1e9:7.3f} GB/s"
              f"   (runs: {', '.join(f'{t * 1e3:.0f}' for t in times)} ms)")

    report("load (numpy read)", t_load, load_times)

    t, ts, out = timed(lambda: encode8(tensors), args.runs)
    report("numpy encode8", t, ts)
    del out

    tmpdir = tempfile.mkdtemp(prefix="wq-anchor-", dir=args.tmpdir)
    fname = os.path.join(tmpdir, "model.pkl")
    try:
        def encode_and_pickle():
            custom_dict = encode8(tensors)
            pickle.dump(custom_dict, open(fname, 'wb'))  # as the assignment wrote it

        def e2e():
            custom_dict = encode8(read_safetensors(args.file))
            with open(fname, 'wb') as f:
                pickle.dump(custom_dict, f)

        t, ts, _ = timed(encode_and_pickle, args.runs)
        report("numpy encode8+pickle", t, ts)
        t, ts, _ = timed(e2e, args.runs)
        report("numpy e2e (load+encode8+pickle)", t, ts)
        results["pickle_bytes"] = os.path.getsize(fname)
    finally:
        if os.path.exists(fname):
            os.remove(fname)
        os.rmdir(tmpdir)

    if not args.no_torch:
        import torch
        tt = {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in tensors.items()}  # writable copies

        def per_tensor8():
            out = {}
            for k, x in tt.items():
                lo, hi = torch.aminmax(x)
                lo, hi = float(lo), float(hi)
                scale = (hi - lo) / 255.0 or 1.0
                zp = int(round(-lo / scale))
                out[k] = torch.quantize_per_tensor(x, scale, zp, torch.quint8)
            return out

        def per_channel8():
            out = {}
            for k, x in tt.items():
                x2 = x.reshape(x.shape[0], -1)
                lo, hi = torch.aminmax(x2, dim=1)
                scales = ((hi - lo) / 255.0).double().clamp_min(1e-12)
                zps = torch.round(-lo.double() / scales).long().clamp(0, 255)
                out[k] = torch.quantize_per_channel(x2, scales, zps, 0, torch.quint8)
            return out

        def per_group4():
            out = {}
            for k, x in tt.items():
                g = x.reshape(-1, 64)  # rows of these tensors are multiples of 64
                lo = g.amin(dim=1, keepdim=True)
                hi = g.amax(dim=1, keepdim=True)
                scale = ((hi - lo) / 15.0).clamp_min(1e-12)
                q = torch.round((g - lo) / scale).clamp_(0, 15).to(torch.uint8)
                out[k] = (q, scale, lo)
            return out

        default_threads = torch.get_num_threads()  # may be 1 here: torch's OpenMP default
        for threads in sorted({1, os.cpu_count() or 1}):
            torch.set_num_threads(threads)
            with torch.no_grad():
                for key, fn in (("torch quantize_per_tensor 8b", per_tensor8),
                                ("torch quantize_per_channel 8b", per_channel8),
                                ("torch per-group64 4b", per_group4)):
                    t, ts, out = timed(fn, args.runs)
                    del out
                    report(f"{key} t{threads}", t, ts)
        torch.set_num_threads(default_threads)

    results["input_bytes_f32"] = in_bytes
    results["file_bytes"] = file_bytes
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
