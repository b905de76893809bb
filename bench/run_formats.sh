#!/usr/bin/env bash
# Read throughput of every checkpoint format next to a plain read of the same file.
# Makes the same ~400 MB model (25 float32 tensors of 2048x2048, plus small ones) in each
# format with the real torch/numpy, page-caches the files and runs bench_read over them.
#
# usage: bench/run_formats.sh BUILD_DIR [WORK_DIR]
set -euo pipefail
build=$1
work=${2:-$(mktemp -d)}
trap '[ -z "${2:-}" ] && rm -rf "$work"' EXIT
/usr/bin/python3 - "$work" <<'PY'
import collections, json, os, pickle, struct, sys
import numpy as np, torch
work = sys.argv[1]
rng = np.random.default_rng(0)
arrays = collections.OrderedDict()
for i in range(25):
    arrays[f"layer{i}.weight"] = rng.standard_normal((2048, 2048), dtype=np.float32)
    arrays[f"layer{i}.bias"] = rng.standard_normal(2048, dtype=np.float32)
header, off, blobs = {"__metadata__": {"format": "pt"}}, 0, []
for k, v in arrays.items():
    header[k] = {"dtype": "F32", "shape": list(v.shape), "data_offsets": [off, off + v.nbytes]}
    off += v.nbytes
h = json.dumps(header).encode(); h += b" " * ((8 - len(h) % 8) % 8)
with open(f"{work}/model.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h)
    for v in arrays.values(): f.write(v.tobytes())
tensors = collections.OrderedDict((k, torch.from_numpy(v)) for k, v in arrays.items())
torch.save(tensors, f"{work}/model.pt")
torch.save(tensors, f"{work}/model_legacy.pt", _use_new_zipfile_serialization=False)
pickle.dump(dict(arrays), open(f"{work}/model.pdparams", "wb"), protocol=4)
np.savez(f"{work}/model.npz", **arrays)
PY
cat "$work"/model* > /dev/null
"$build/bench/bench_read" "$work/model.safetensors" "$work/model.pt" "$work/model_legacy.pt" \
  "$work/model.pdparams" "$work/model.npz"
