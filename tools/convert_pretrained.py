#!/usr/bin/env python3
"""Convert TensorFlow.js models shipped in an npm package into one safetensors file.

The pretrained models come from the npm package pinned in tools/pretrained/package.json
(@vladmandic/human: its models/ folder holds TensorFlow.js graph models, a JSON file with a
`weightsManifest` plus `.bin` shards of little-endian values). Install it first:

    cd tools/pretrained && npm install --ignore-scripts --no-audit --no-fund

then, for example:

    python3 tools/convert_pretrained.py -o /tmp/pretrained-f32.safetensors \\
        tools/pretrained/node_modules/@vladmandic/human/models/{blazeface,emotion,iris,liveness}.json

Each input is a model JSON (`model.json`, `*-weights_manifest.json`) or a folder of them.
What is written:

- every float32 weight of 2 or more dimensions, stored as F32 (with --all-dims also the 0-d
  and 1-d ones: biases, PReLU slopes). A tensor is named `MODEL/NAME`, MODEL being the JSON
  file's stem and NAME the manifest's name; a repeated name gets `#2`, `#3`, ...
- weights the manifest marks as quantized are refused (skipped, and counted on stderr):
  uint8/uint16 ones hold affine codes, not the trained float32 values. Those stored as
  float16 are exact float16 values; --allow-float16 widens them to F32 (losslessly) and
  keeps them. Non-float dtypes (int32, bool, string) are skipped.
- --layout torch (the default) rewrites TensorFlow's layouts as PyTorch stores them, so that
  shape[0] is the output channel (wq's rows): conv filters [kh,kw,in,out] -> [out,in,kh,kw],
  depthwise filters [kh,kw,in,m] -> [in*m,1,kh,kw], dense kernels [in,out] -> [out,in], and a
  tensor with at most one dimension above 1 (a per-channel vector) -> 1-d. Depthwise filters
  and transposed MatMuls are recognised from the graph's ops. --layout tfjs keeps the shapes.

Exit status: 0 written, 1 nothing to write, 2 bad input.
"""

import argparse
import json
import math
import os
import struct
import sys

import numpy as np

# bytes per element of a manifest entry as stored in the shards
STORED_SIZE = {"float32": 4, "int32": 4, "bool": 1, "uint8": 1, "uint16": 2, "float16": 2}


def fail(msg):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def model_files(inputs):
    for p in inputs:
        if os.path.isdir(p):
            for f in sorted(os.listdir(p)):
                if f.endswith(".json") and f != "package.json":
                    yield os.path.join(p, f)
        else:
            yield p


def consumers(model):
    """name of each tensor -> list of (op, attr, input index) of the graph nodes reading it."""
    out = {}
    topo = model.get("modelTopology") if isinstance(model, dict) else None
    nodes = topo.get("node", []) if isinstance(topo, dict) else []
    for node in nodes:
        for i, inp in enumerate(node.get("input", [])):
            name = inp.lstrip("^").split(":")[0]
            out.setdefault(name, []).append((node.get("op", ""), node.get("attr", {}), i))
    return out


def to_torch_layout(name, a, users):
    ops = [op for op, _, _ in users]
    if sum(d > 1 for d in a.shape) <= 1:
        return a.reshape(-1)  # a per-channel vector stored as [1,1,C]
    if a.ndim == 4:
        if any("Depthwise" in op for op in ops) or "depthwise" in name.lower():
            kh, kw, c, m = a.shape
            return a.transpose(2, 3, 0, 1).reshape(c * m, 1, kh, kw)
        return a.transpose(3, 2, 0, 1)
    if a.ndim == 3:  # conv1d filter [k, in, out]
        return a.transpose(2, 1, 0)
    if a.ndim == 2:
        tb = any(attr.get("transpose_b", {}).get("b") for op, attr, _ in users
                 if "MatMul" in op)
        return a if tb else a.T
    return a


def read_model(path, args, out, counts):
    try:
        with open(path) as f:
            model = json.load(f)
    except (OSError, ValueError) as e:
        fail(f"{path}: {e}")
    groups = model.get("weightsManifest") if isinstance(model, dict) else model
    if not isinstance(groups, list):
        print(f"note: {path}: no weightsManifest, skipped", file=sys.stderr)
        return
    stem = os.path.basename(path)
    for suffix in ("-weights_manifest.json", ".json"):
        if stem.endswith(suffix):
            stem = stem[:-len(suffix)]
            break
    users = consumers(model)
    folder = os.path.dirname(path)
    for g in groups:
        blob = b""
        for shard in g["paths"]:
            try:
                with open(os.path.join(folder, shard), "rb") as f:
                    blob += f.read()
            except OSError as e:
                fail(f"{path}: shard {shard}: {e}")
        off = 0
        for w in g["weights"]:
            name, shape, dtype = w["name"], [int(d) for d in w["shape"]], w["dtype"]
            q = w.get("quantization")
            stored = q["dtype"] if q else dtype
            if stored not in STORED_SIZE:
                fail(f"{path}: weight {name}: stored dtype {stored!r} is not supported")
            n = math.prod(shape)
            nbytes = n * STORED_SIZE[stored]
            if off + nbytes > len(blob):
                fail(f"{path}: weight {name} runs past the end of its shards")
            raw = blob[off:off + nbytes]
            off += nbytes
            if dtype != "float32":
                counts["not float32"] += 1
                continue
            if q and not (stored == "float16" and args.allow_float16):
                counts[f"quantized ({stored})"] += 1
                continue
            a = np.frombuffer(raw, dtype="<f2" if stored == "float16" else "<f4")
            a = a.astype(np.float32).reshape(shape)
            if args.layout == "torch":
                a = to_torch_layout(name, a, users.get(name, []))
            if a.ndim < 2 and not args.all_dims:
                counts["0-d/1-d"] += 1
                continue
            key = f"{stem}/{name}"
            k = 2
            while key in out:
                key = f"{stem}/{name}#{k}"
                k += 1
            out[key] = np.ascontiguousarray(a)
            counts["written"] += 1
        if off != len(blob):
            fail(f"{path}: the shards hold {len(blob)} bytes, the manifest describes {off}")


def write_safetensors(path, tensors, metadata):
    header, offset = {"__metadata__": metadata}, 0
    for name, a in tensors.items():
        header[name] = {"dtype": "F32", "shape": list(a.shape),
                        "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-(8 + len(text)) % 8)  # data starts at a multiple of 8
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for a in tensors.values():
            f.write(a.astype("<f4").tobytes())
    os.replace(tmp, path)


def package_of(path):
    """name@version of the npm package that holds path, if any."""
    d = os.path.dirname(os.path.abspath(path))
    while d != os.path.dirname(d):
        p = os.path.join(d, "package.json")
        if os.path.isfile(p):
            with open(p) as f:
                pkg = json.load(f)
            return f"{pkg.get('name')}@{pkg.get('version')}"
        d = os.path.dirname(d)
    return "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.split("\n")[2:]))
    ap.add_argument("inputs", nargs="+", help="model JSON files or folders of them")
    ap.add_argument("-o", dest="out", required=True, help="output .safetensors file")
    ap.add_argument("--all-dims", action="store_true", help="also write 0-d and 1-d tensors")
    ap.add_argument("--allow-float16", action="store_true",
                    help="keep weights stored as float16 (widened to F32)")
    ap.add_argument("--layout", choices=("torch", "tfjs"), default="torch")
    args = ap.parse_args()
    tensors, sources = {}, []
    for path in model_files(args.inputs):
        counts = {"written": 0}
        for k in ("0-d/1-d", "not float32", "quantized (uint8)", "quantized (uint16)",
                  "quantized (float16)"):
            counts[k] = 0
        read_model(path, args, tensors, counts)
        print(f"{path}: " + ", ".join(f"{v} {k}" for k, v in counts.items() if v or
                                      k == "written"), file=sys.stderr)
        if counts["written"]:
            sources.append(os.path.basename(path))
    if not tensors:
        print("error: no tensor to write", file=sys.stderr)
        return 1
    first = next(iter(model_files(args.inputs)))
    meta = {"format": "pt", "source": f"npm {package_of(first)}: {' '.join(sources)}",
            "layout": args.layout, "float16_widened": str(args.allow_float16).lower()}
    write_safetensors(args.out, tensors, meta)
    n = sum(a.size for a in tensors.values())
    print(f"wrote {args.out}: {len(tensors)} tensors, {n:,} values", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
