#!/usr/bin/python3
"""One command, one Markdown table: wq's CPU kernels and wq-gpu end to end, next to the
machine's memory bandwidth, the assignment's numpy method and PyTorch's CPU quantizers.

    /usr/bin/python3 bench/run_all.py BUILD_DIR [--quick] [--keep-json DIR]

BUILD_DIR must hold bench/bench_cpu and host/wq-gpu (a CPU build, Release). About 3 to 4
minutes on 2 cores; --quick (one repetition everywhere, fewer cases) takes about one.

What runs, all on the same machine in the same run:
  kernels   a [4096, 4096] float32 tensor (64 MiB, random normal, fixed seed), written once to
            a temporary file that bench_cpu (WQ_BENCH_INPUT), numpy and torch all read:
            - bench_cpu: memcpy and read bandwidth, wq quantize/dequantize for bits
              {8, 4, 3, 2} x {tensor, channel, group 32/64/128} x {1 thread, every core},
              median of WQ_BENCH_REPETITIONS (default 5) repetitions of >= 0.2 s, the
              repetitions of all cases interleaved in random order (so that a slow spell of a
              shared machine lands on many cases once, not on one case every time); and the
              same quantizers at 8 and 4 bits on its first 256 KiB ([64, 1024], in L2, one
              thread) next to the read of those 256 KiB: the compute rate memory hides;
            - numpy: the assignment's encode8 and decode8 (seed/weight-quantization-assignment.md,
              the numpy part verbatim: float64, min/max, round(... * 255), uint8; decode
              q / 255 * (max - min) + min; paddle.Tensor() left out);
            - torch: quantize_per_tensor (8-bit), quantize_per_channel (8-bit, axis 0), a
              per-group-64 4-bit quantizer written in torch, and dequantize() of the first two,
              at 1 thread and every core. Median of 5 runs each.
  e2e       a ~420 MB safetensors file (25 x [2048, 2048] float32), page-cached: cat of the
            file, `wq-gpu quantize --backend cpu` at 8-bit per-tensor and 4-bit group 64 (1
            thread and every core; it fsyncs its output), dd of the 8-bit output's size with
            conv=fsync (the disk's floor for a durable writer), and the assignment's load +
            encode8 + pickle.dump (no fsync). Median of 3 runs; rates in GB/s of the input.
Every rate is GB/s of float32 (1e9 bytes of the tensor's float32 values per second).
"""
import argparse
import json
import os
import pickle
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import anchor_numpy  # noqa: E402  (encode8 verbatim, safetensors reading)

ROWS, COLS = 4096, 4096
NBYTES = ROWS * COLS * 4
CORES = os.cpu_count() or 1


def median_time(fn, runs):
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
        del out
    return statistics.median(times)


def decode8(custom_dict):
    # The assignment's decode8 after pickle.load, without the final paddle.Tensor().
    out = {}
    for name, param in custom_dict.items():
        min_val, max_val, param = param
        param = np.float64(param)
        param = (param / 255 * (max_val - min_val)) + min_val
        out[name] = param
    return out


# ---- kernels -------------------------------------------------------------------------------

def run_bench_cpu(build, tensor_file, work, quick):
    out = os.path.join(work, "bench_cpu.json")
    env = dict(os.environ, WQ_BENCH_INPUT=tensor_file,
               WQ_BENCH_MIN_TIME=os.environ.get("WQ_BENCH_MIN_TIME", "0.1" if quick else "0.2"),
               WQ_BENCH_REPETITIONS=os.environ.get("WQ_BENCH_REPETITIONS", "1" if quick else "5"))
    cmd = [os.path.join(build, "bench", "bench_cpu"), f"--benchmark_out={out}", "--benchmark_out_format=json",
           "--benchmark_enable_random_interleaving=true"]
    if quick:
        cmd.append("--benchmark_filter=baseline|/b8/|/b4/")  # (the _l2 cases are b8/b4 too)
    print("== " + " ".join(cmd), flush=True)
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    data = json.load(open(out))
    rates = {}  # (name, threads) -> GB/s; wq cases run on one benchmark thread plus the pool
    for b in data["benchmarks"]:
        if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
            continue
        # run_name is e.g. "quantize/b8/tensor/t1/min_time:0.300/repeats:3/real_time"
        name = re.split(r"/(?:min_time|repeats|real_time|threads|iterations)", b["run_name"])[0]
        threads = int(b.get("threads", 1))
        if name.startswith(("quantize", "dequantize")):
            threads = int(name.rsplit("/t", 1)[1])
            name = name.rsplit("/t", 1)[0]
        rates[(name, threads)] = b["bytes_per_second"] / 1e9
    return rates


def run_kernel_anchors(tensor_file, quick):
    x = np.fromfile(tensor_file, dtype=np.float32).reshape(ROWS, COLS)
    runs = 3 if quick else 5
    res = {}
    sd = {"w": x}
    enc = anchor_numpy.encode8(sd)
    res[("numpy encode8 (assignment)", 1)] = NBYTES / median_time(lambda: anchor_numpy.encode8(sd), runs) / 1e9
    res[("numpy decode8 (assignment)", 1)] = NBYTES / median_time(lambda: decode8(enc), runs) / 1e9
    import torch
    t = torch.from_numpy(x.copy())
    default_threads = torch.get_num_threads()

    def per_tensor8():
        lo, hi = torch.aminmax(t)
        lo, hi = float(lo), float(hi)
        scale = (hi - lo) / 255.0 or 1.0
        return torch.quantize_per_tensor(t, scale, int(round(-lo / scale)), torch.quint8)

    def per_channel8():
        lo, hi = torch.aminmax(t, dim=1)
        scales = ((hi - lo) / 255.0).double().clamp_min(1e-12)
        zps = torch.round(-lo.double() / scales).long().clamp(0, 255)
        return torch.quantize_per_channel(t, scales, zps, 0, torch.quint8)

    def per_group4():
        g = t.reshape(-1, 64)
        lo = g.amin(dim=1, keepdim=True)
        hi = g.amax(dim=1, keepdim=True)
        scale = ((hi - lo) / 15.0).clamp_min(1e-12)
        q = torch.round((g - lo) / scale).clamp_(0, 15).to(torch.uint8)
        return q, scale, lo

    qt, qc = per_tensor8(), per_channel8()
    q4, s4, m4 = per_group4()
    for threads in sorted({1, CORES}):
        torch.set_num_threads(threads)
        with torch.no_grad():
            for label, fn in (("torch quantize_per_tensor 8-bit", per_tensor8),
                              ("torch quantize_per_channel 8-bit", per_channel8),
                              ("torch per-group-64 4-bit (torch ops, codes unpacked)", per_group4),
                              ("torch dequantize per-tensor 8-bit", lambda: qt.dequantize()),
                              ("torch dequantize per-channel 8-bit", lambda: qc.dequantize()),
                              ("torch dequantize per-group-64 4-bit", lambda: q4.float() * s4 + m4)):
                res[(label, threads)] = NBYTES / median_time(fn, runs) / 1e9
    torch.set_num_threads(default_threads)
    return res


# ---- end to end ----------------------------------------------------------------------------



def run_e2e(build, work, quick):
    model = os.path.join(work, "model.safetensors")
    print(f"== writing {model}", flush=True)
    input_bytes = anchor_numpy.write_benchmark_model(model)
    runs = 1 if quick else 3
    for _ in range(2):
        subprocess.run(["cat", model], stdout=subprocess.DEVNULL, check=True)
    res = {}
    res[("e2e: cat FILE > /dev/null (page-cached read)", CORES)] = input_bytes / median_time(
        lambda: subprocess.run(["cat", model], stdout=subprocess.DEVNULL, check=True), runs + 2) / 1e9
    wq = os.path.join(build, "host", "wq-gpu")
    out = os.path.join(work, "out.wq.safetensors")
    sizes = []  # output bytes, per wq-gpu case
    for label, flags in (("e2e: wq-gpu quantize 8-bit per-tensor", ["--bits", "8", "--granularity", "tensor"]),
                         ("e2e: wq-gpu quantize 4-bit group 64",
                          ["--bits", "4", "--granularity", "group", "--group-size", "64"])):
        for threads in sorted({1, CORES}):
            def once():  # wq-gpu writes a temporary file, fsyncs it and renames it
                if os.path.exists(out):
                    os.remove(out)
                subprocess.run([wq, "quantize", model, "-o", out, "--backend", "cpu", "-q",
                                "--threads", str(threads)] + flags, check=True)
            print(f"== {label}, {threads} thread(s)", flush=True)
            res[(label, threads)] = input_bytes / median_time(once, runs) / 1e9
        sizes.append(os.path.getsize(out))
    # The floor of any durable writer on this disk: the 8-bit output's bytes written and fsynced.
    out_bytes = sizes[0]
    os.remove(out)
    dd = os.path.join(work, "dd.bin")

    def write_floor():
        subprocess.run(["dd", "if=/dev/zero", f"of={dd}", "bs=1M", f"count={(out_bytes + (1 << 20) - 1) >> 20}",
                        "conv=fsync", "status=none"], check=True)
        os.remove(dd)

    res[(f"e2e: dd {out_bytes / 1e6:.0f} MB + fsync (writing the 8-bit output durably)", CORES)] = \
        input_bytes / median_time(write_floor, runs) / 1e9
    fname = os.path.join(work, "model.pkl")

    def numpy_e2e():
        custom_dict = anchor_numpy.encode8(anchor_numpy.read_safetensors(model))
        with open(fname, "wb") as f:
            pickle.dump(custom_dict, f)

    print("== numpy load + encode8 + pickle.dump", flush=True)
    res[("e2e: numpy load + encode8 + pickle.dump (assignment)", 1)] = input_bytes / median_time(numpy_e2e, runs) / 1e9
    os.remove(fname)
    os.remove(model)
    return res


# ---- the table -----------------------------------------------------------------------------

def fmt(v, spec="{:.2f}"):
    return "-" if v is None else spec.format(v)


def print_table(cpu, anchors, e2e):
    def get(d, name, threads):
        return d.get((name, threads))

    mem1, memn = get(cpu, "baseline/memcpy", 1), get(cpu, "baseline/memcpy", CORES)
    rd1, rdn = get(cpu, "baseline/read", 1), get(cpu, "baseline/read", CORES)
    np_enc = get(anchors, "numpy encode8 (assignment)", 1)
    np_dec = get(anchors, "numpy decode8 (assignment)", 1)
    np_e2e = get(e2e, "e2e: numpy load + encode8 + pickle.dump (assignment)", 1)
    cat = get(e2e, "e2e: cat FILE > /dev/null (page-cached read)", CORES)
    n = CORES
    print()
    print(f"GB/s of float32 (median); 'x read' = the 1-thread rate over one core's read bandwidth "
          f"({fmt(rd1)} GB/s; {fmt(rdn)} on {n}); 'x numpy' = over the assignment's numpy method "
          f"(encode8 {fmt(np_enc)}, decode8 {fmt(np_dec)}, file to pickle {fmt(np_e2e)} GB/s); "
          f"e2e rows compare with reading the file (cat, {fmt(cat)} GB/s).")
    print()
    print(f"| case | 1 thread | {n} threads | {n}/1 | x read (1 thread) | x numpy (1 thread) |")
    print("|---|---:|---:|---:|---:|---:|")

    def row(label, a, b, ref_read, ref_np):
        ratio = b / a if a and b else None
        print(f"| {label} | {fmt(a)} | {fmt(b)} | {fmt(ratio)} | "
              f"{fmt(a / ref_read if a and ref_read else None)} | {fmt(a / ref_np if a and ref_np else None, '{:.1f}x')} |")

    row("memcpy (bytes copied)", mem1, memn, rd1, None)
    row("read (xor-reduce)", rd1, rdn, rd1, None)
    for op, ref in (("quantize", np_enc), ("dequantize", np_dec)):
        for bits in (8, 4, 3, 2):
            for gran in ("tensor", "channel", "group32", "group64", "group128"):
                name = f"{op}/b{bits}/{gran}"
                if get(cpu, name, 1) is None:
                    continue
                row(f"wq {op} {bits}-bit {gran}", get(cpu, name, 1), get(cpu, name, n), rd1, ref)
    rd_l2 = get(cpu, "baseline/read_l2", 1)
    row("read of 256 KiB in L2 (xor-reduce)", rd_l2, None, rd_l2, None)
    for bits in (8, 4):
        for gran in ("tensor", "channel", "group32", "group64", "group128"):
            name = f"quantize_l2/b{bits}/{gran}"
            if get(cpu, name, 1) is not None:
                row(f"wq quantize {bits}-bit {gran}, in L2 ('x read' = x the L2 read)", get(cpu, name, 1), None,
                    rd_l2, np_enc)
    row("numpy encode8 (assignment, 8-bit per-tensor)", np_enc, None, rd1, np_enc)
    row("numpy decode8 (assignment)", np_dec, None, rd1, np_dec)
    for label in ("torch quantize_per_tensor 8-bit", "torch quantize_per_channel 8-bit",
                  "torch per-group-64 4-bit (torch ops, codes unpacked)"):
        row(label, get(anchors, label, 1), get(anchors, label, n), rd1, np_enc)
    for label in ("torch dequantize per-tensor 8-bit", "torch dequantize per-channel 8-bit",
                  "torch dequantize per-group-64 4-bit"):
        row(label, get(anchors, label, 1), get(anchors, label, n), rd1, np_dec)
    e2e_labels = []
    for (label, _) in e2e:
        if label not in e2e_labels:
            e2e_labels.append(label)
    for label in e2e_labels:
        a, b = get(e2e, label, 1), get(e2e, label, n)
        ratio = b / a if a and b else None
        best = b or a
        print(f"| {label} | {fmt(a)} | {fmt(b)} | {fmt(ratio)} | "
              f"{fmt(best / cat if best and cat else None)} (x cat) | "
              f"{fmt(best / np_e2e if best and np_e2e else None, '{:.1f}x')} |")
    print()
    print("e2e rows: 'x cat' and 'x numpy' use the every-core figure where there is one "
          "(numpy is single-threaded).")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("build")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--keep-json", help="copy bench_cpu's JSON here")
    ap.add_argument("--no-e2e", action="store_true")
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    started = time.time()
    work = tempfile.mkdtemp(prefix="wq-bench-", dir=os.environ.get("TMPDIR"))
    try:
        tensor_file = os.path.join(work, "tensor.f32")
        np.random.default_rng(20240611).standard_normal((ROWS, COLS), dtype=np.float32).tofile(tensor_file)
        cpu = run_bench_cpu(build, tensor_file, work, args.quick)
        if args.keep_json:
            shutil.copy(os.path.join(work, "bench_cpu.json"), args.keep_json)
        print("== numpy and torch on the same tensor", flush=True)
        anchors = run_kernel_anchors(tensor_file, args.quick)
        e2e = {} if args.no_e2e else run_e2e(build, work, args.quick)
        print_table(cpu, anchors, e2e)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n(total {time.time() - started:.0f} s, {CORES} cores)")


if __name__ == "__main__":
    main()
