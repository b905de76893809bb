"""compressed-tensors export end to end, against the machine's I/O floor measured in the same run.

    /usr/bin/python3 bench/ct_export.py BUILD_DIR [--gb 8] [--shards 4] [--scheme W4A16] [--runs 3]

Writes a sharded bf16 Hugging Face folder of llama-7B-shaped layers (hidden 4096, MLP 11008,
~0.4 GB per layer) into a temporary folder; the values are one random-normal block of 16M
elements reused for every tensor, so that making 8 GB takes seconds. Then:
1. reads every input file once to page-cache it;
2. the I/O floor: `cat` of the inputs into /dev/null (the read), then writing as many bytes as
   wq's output into one file with fsync (the durable write), as the sum of both times;
3. `wq-gpu quantize IN -o OUT --to compressed-tensors` (RUNS runs, the output removed before
   each, median), and prints GB/s of input and the floor's time over wq's (1.0 = at the floor).
The wq runs and the floor's reads and writes alternate, and every time is printed.
Everything it creates is removed at the end. TMPDIR chooses the file system.
"""
import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

import statistics


def bf16_block(n, seed):
    x = np.random.default_rng(seed).standard_normal(n, dtype=np.float32)
    bits = x.view(np.uint32)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)  # nearest even


def layer_tensors(layer, hidden, inter):
    p = "model.layers.%d." % layer
    out = [(p + "input_layernorm.weight", (hidden,)), (p + "post_attention_layernorm.weight", (hidden,))]
    out += [(p + "self_attn.%s.weight" % m, (hidden, hidden)) for m in ("q_proj", "k_proj", "v_proj", "o_proj")]
    out += [(p + "mlp.gate_proj.weight", (inter, hidden)), (p + "mlp.up_proj.weight", (inter, hidden)),
            (p + "mlp.down_proj.weight", (hidden, inter))]
    return out


def write_model(folder, gb, shards, hidden=4096, inter=11008, vocab=32000):
    block = bf16_block(16 << 20, 1)
    per_layer = 2 * (4 * hidden * hidden + 3 * inter * hidden)
    layers = max(1, int(gb * 1e9 - 2 * 2 * vocab * hidden) // per_layer)
    tensors = [("model.embed_tokens.weight", (vocab, hidden))]
    for i in range(layers):
        tensors += layer_tensors(i, hidden, inter)
    tensors += [("model.norm.weight", (hidden,)), ("lm_head.weight", (vocab, hidden))]
    total = sum(2 * int(np.prod(s)) for _, s in tensors)
    per_shard = total / shards
    groups, current, size = [], [], 0
    for t in tensors:
        current.append(t)
        size += 2 * int(np.prod(t[1]))
        if size >= per_shard and len(groups) < shards - 1:
            groups.append(current)
            current, size = [], 0
    groups.append(current)
    os.makedirs(folder)
    weight_map = {}
    for k, group in enumerate(groups):
        name = "model-%05d-of-%05d.safetensors" % (k + 1, len(groups))
        header, offset = {"__metadata__": {"format": "pt"}}, 0
        for tname, shape in group:
            n = 2 * int(np.prod(shape))
            header[tname] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + n]}
            offset += n
            weight_map[tname] = name
        text = json.dumps(header).encode()
        text += b" " * (-len(text) % 8)
        with open(os.path.join(folder, name), "wb") as f:
            f.write(struct.pack("<Q", len(text)) + text)
            for tname, shape in group:
                n = int(np.prod(shape))
                written = 0
                while written < n:
                    take = min(n - written, block.size)
                    f.write(block[:take].tobytes())
                    written += take
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
                   "intermediate_size": inter, "num_hidden_layers": layers, "torch_dtype": "bfloat16"}, f)
    return total


def folder_bytes(folder):
    return sum(os.path.getsize(os.path.join(folder, n)) for n in os.listdir(folder))


def timed(cmd):
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--gb", type=float, default=8.0)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--scheme", default="W4A16")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--input", help="an existing model folder instead of a generated one (kept)")
    args = ap.parse_args()
    wq = os.path.join(args.build, "host", "wq-gpu")
    work = tempfile.mkdtemp(prefix="wq-ct-bench-")
    try:
        src, out = args.input or os.path.join(work, "in"), os.path.join(work, "out")
        if args.input:
            total = sum(os.path.getsize(os.path.join(src, n)) for n in os.listdir(src) if n.endswith(".safetensors"))
            print("input: %s, %.2f GB of safetensors" % (src, total / 1e9))
        else:
            t = time.perf_counter()
            total = write_model(src, args.gb, args.shards)
            print("input: %.2f GB of bf16 in %d shards (written in %.0f s)" % (total / 1e9, args.shards,
                                                                              time.perf_counter() - t))
        inputs = sorted(os.path.join(src, n) for n in os.listdir(src) if n.endswith(".safetensors"))
        subprocess.run(["cat", *inputs], check=True, stdout=subprocess.DEVNULL)  # page-cache it

        def run_wq():
            shutil.rmtree(out, ignore_errors=True)
            return timed([wq, "quantize", src, "-o", out, "--to", "compressed-tensors", "--scheme", args.scheme,
                          "--backend", args.backend, "-q"])
        wq_times = [run_wq()]
        out_bytes = folder_bytes(out)
        read_times, write_times = [], []
        # Alternating (wq, read, write): this VM's disk and CPU speeds drift by 2x within
        # minutes, and the ratio is only meaningful between neighbouring runs.
        for k in range(args.runs):
            if k > 0:
                wq_times.append(run_wq())
            read_times.append(timed(["cat", *inputs]))
            target = os.path.join(work, "floor.bin")
            write_times.append(timed(["dd", "if=/dev/zero", "of=" + target, "bs=16M", "count=%d" % -(-out_bytes // (16 << 20)),
                                      "conv=fsync", "status=none"]))
            os.remove(target)
        wq_s, read_s, write_s = (statistics.median(t) for t in (wq_times, read_times, write_times))
        floor = read_s + write_s
        print("I/O floor: read %.2f s (%.2f GB/s) + durable write of %.2f GB %.2f s = %.2f s; reads %s, writes %s"
              % (read_s, total / read_s / 1e9, out_bytes / 1e9, write_s, floor, ["%.2f" % x for x in read_times],
                 ["%.2f" % x for x in write_times]))
        print("wq-gpu --to compressed-tensors --scheme %s (%s): %.2f s median of %s = %.2f GB/s of input; "
              "floor / wq = %.2f" % (args.scheme, args.backend, wq_s, ["%.2f" % x for x in wq_times],
                                     total / wq_s / 1e9, floor / wq_s))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
