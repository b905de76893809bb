#!/usr/bin/env python3
"""Every checkpoint format, written by the real framework, through the real wq-gpu and back.

For the bundled student CNN saved as .pt (zip, legacy, fp16), .pdparams (pickle protocols 2
and 4, with Paddle's name table), .npz and a sharded safetensors checkpoint: quantize at 8 bits,
decode to the source's own format, load it with the framework that made it (torch.load with
weights_only=True, pickle.load, numpy.load), and check names, dtypes, shapes and values; then
run the model on held-out data: 8-bit accuracy must match the original's.

usage: roundtrip_frameworks.py WQ_GPU SOURCE_DIR
"""
import collections
import json
import os
import pickle
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch

WQ, SRC = sys.argv[1], sys.argv[2]
sys.path.insert(0, os.path.join(SRC, "tools"))
import make_example_checkpoint as example  # noqa: E402  (the model and its data)

NP_OF = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "I32": np.int32,
         "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_, "BF16": np.uint16}


def read_safetensors(path):
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    out = collections.OrderedDict()
    for name, e in sorted(((k, v) for k, v in header.items() if k != "__metadata__"),
                          key=lambda kv: kv[1]["data_offsets"][0]):
        b, end = e["data_offsets"]
        out[name] = np.frombuffer(data[8 + n + b:8 + n + end], dtype=NP_OF[e["dtype"]]).reshape(e["shape"])
    return out


def write_safetensors(path, arrays):
    dt = {np.dtype(v): k for k, v in NP_OF.items() if k != "BF16"}
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, a in arrays.items():
        b = np.ascontiguousarray(a).tobytes()
        header[name] = {"dtype": dt[a.dtype], "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def wq(*args):
    r = subprocess.run([WQ, *args, "-q", "--backend", "cpu"], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"wq-gpu {' '.join(args)} failed ({r.returncode}): {r.stderr}")


def accuracy(state_dict, x, y):
    model = example.StudentNet()
    model.load_state_dict({k: torch.as_tensor(np.array(v)) for k, v in state_dict.items()})
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def check_close(name, got, ref):
    assert got.shape == ref.shape, f"{name}: shape {got.shape} != {ref.shape}"
    assert got.dtype == ref.dtype, f"{name}: dtype {got.dtype} != {ref.dtype}"
    if ref.dtype.kind != "f":
        assert np.array_equal(got, ref), f"{name}: integer tensor changed"
        return
    g, r = got.astype(np.float64), ref.astype(np.float64)
    span = (r.max() - r.min()) if r.size else 0.0
    # 8 bits per channel: within half a step of the row's range, plus the stored dtype's rounding.
    tol = span / 255 * 0.51 + np.abs(r).max(initial=0) * (1e-3 if ref.dtype == np.float16 else 1e-6) + 1e-12
    assert np.abs(g - r).max(initial=0) <= tol, f"{name}: error {np.abs(g - r).max()} > {tol}"


def main():
    torch.manual_seed(0)
    ref = read_safetensors(os.path.join(SRC, "examples", "student_net.safetensors"))
    tensors = collections.OrderedDict((k, torch.from_numpy(v.copy())) for k, v in ref.items())
    xv, yv = example.synthetic_dataset(1024, seed=4321)
    base_acc = accuracy(ref, xv, yv)
    work = tempfile.mkdtemp(prefix="wq-roundtrip-")
    table = {k: f"param_{i}" for i, k in enumerate(ref)}

    # The same model in every format, written by the framework that owns it.
    torch.save(tensors, f"{work}/zip.pt")
    torch.save(tensors, f"{work}/legacy.pt", _use_new_zipfile_serialization=False)
    torch.save(collections.OrderedDict((k, v.half() if v.is_floating_point() else v) for k, v in tensors.items()),
               f"{work}/fp16.pt")
    for proto in (2, 4):
        d = dict(ref)
        d["StructuredToParameterName@@"] = table
        pickle.dump(d, open(f"{work}/p{proto}.pdparams", "wb"), protocol=proto)
    np.savez(f"{work}/model.npz", **ref)
    names = list(ref)
    half = len(names) // 2
    shards = {"model-00001-of-00002.safetensors": names[:half], "model-00002-of-00002.safetensors": names[half:]}
    for shard, members in shards.items():
        write_safetensors(f"{work}/{shard}", {k: ref[k] for k in members})
    json.dump({"metadata": {"total_size": 0}, "weight_map": {k: s for s, ms in shards.items() for k in ms}},
              open(f"{work}/model.safetensors.index.json", "w"), indent=2)

    loaders = {
        "pt": lambda p: {k: v.numpy() for k, v in torch.load(p, weights_only=True).items()},
        "pdparams": lambda p: pickle.load(open(p, "rb")),
        "npz": lambda p: dict(np.load(p)),
    }
    cases = [("zip.pt", "pt", ref), ("legacy.pt", "pt", ref),
             ("fp16.pt", "pt", {k: (v.astype(np.float16) if v.dtype == np.float32 else v) for k, v in ref.items()}),
             ("p2.pdparams", "pdparams", ref), ("p4.pdparams", "pdparams", ref), ("model.npz", "npz", ref)]
    for source, fmt, expected in cases:
        wq("quantize", f"{work}/{source}", "-o", f"{work}/{source}.wq.safetensors")
        wq("decode", f"{work}/{source}.wq.safetensors", "-o", f"{work}/{source}.decoded.{fmt}")
        loaded = loaders[fmt](f"{work}/{source}.decoded.{fmt}")
        if fmt == "pdparams":
            assert loaded.pop("StructuredToParameterName@@") == table, f"{source}: Paddle name table lost"
        assert list(loaded) == list(expected), f"{source}: tensor names or order changed"
        for name in expected:
            check_close(f"{source}:{name}", np.asarray(loaded[name]), expected[name])
        acc = accuracy({k: np.asarray(v, dtype=np.float32) if v.dtype == np.float16 else v for k, v in loaded.items()},
                       xv, yv)
        print(f"ok {source}: {len(loaded)} tensors via {fmt}; accuracy {acc:.4f} (original {base_acc:.4f})")
        assert abs(acc - base_acc) <= 0.01, f"{source}: 8-bit accuracy {acc} vs {base_acc}"

    # Sharded: one container per shard and a rewritten index.
    os.makedirs(f"{work}/sharded-out")
    wq("quantize", f"{work}/model.safetensors.index.json", "-o", f"{work}/sharded-out/model.wq.safetensors.index.json")
    index = json.load(open(f"{work}/sharded-out/model.wq.safetensors.index.json"))
    assert set(index["weight_map"]) == set(ref), "sharded index does not list every tensor"
    decoded = {}
    for container in sorted(set(index["weight_map"].values())):
        wq("decode", f"{work}/sharded-out/{container}", "-o", f"{work}/{container}.decoded.safetensors")
        decoded.update(read_safetensors(f"{work}/{container}.decoded.safetensors"))
    for name in ref:
        check_close(f"sharded:{name}", decoded[name], ref[name])
    print(f"ok sharded: {len(index['weight_map'])} tensors in {len(set(index['weight_map'].values()))} containers")
    print("framework round trips passed")


if __name__ == "__main__":
    main()
