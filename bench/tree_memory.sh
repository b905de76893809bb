#!/usr/bin/env bash
# Peak memory of tree mode against the tree's size (issue 5): quantizes trees of 1 GB and
# 8 GB (nested folders of 256 MB checkpoints, 4 tensors of 64 MiB each; the files of a tree
# are hard links to one generated file, which does not change what the process holds) and
# prints the peak RSS of each run. The two should differ by little and stay far under 1 GiB.
#
# usage: bench/tree_memory.sh BUILD_DIR [WORK_DIR] [extra wq-gpu flags...]
set -euo pipefail
build=$(cd "${1:?usage: tree_memory.sh BUILD_DIR [WORK_DIR]}" && pwd)
work=${2:-$(mktemp -d)}
shift $(( $# >= 2 ? 2 : 1 ))
python=/usr/bin/python3
mkdir -p "$work"
seed="$work/seed.safetensors"
if [ ! -f "$seed" ]; then
  "$python" - "$seed" <<'PY'
import json, struct, sys
import numpy as np
rng = np.random.default_rng(1)
tensors = [rng.standard_normal((4096, 4096), dtype=np.float32) * 0.02 for _ in range(4)]
header, offset = {}, 0
for i, t in enumerate(tensors):
    header[f"layer{i}.weight"] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + t.nbytes]}
    offset += t.nbytes
text = json.dumps(header).encode()
text += b" " * (-len(text) % 8)
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text)
    for t in tensors:
        f.write(t.tobytes())
PY
fi
printf '| tree | files | wall s | peak RSS MiB |\n|---|---:|---:|---:|\n'
for gb in 1 8; do
  tree="$work/tree$gb" out="$work/out$gb"
  rm -rf "$tree" "$out"
  files=$(( gb * 4 ))
  for i in $(seq 0 $(( files - 1 ))); do
    dir="$tree/part$(( i % 4 ))/sub$(( i / 4 % 2 ))"
    mkdir -p "$dir"
    ln "$seed" "$dir/model$i.safetensors"
  done
  start=$(date +%s.%N)
  /usr/bin/time -f '%M' -o "$work/rss$gb" "$build/host/wq-gpu" quantize "$tree" -o "$out" -q "$@"
  end=$(date +%s.%N)
  printf '| %s GB | %d | %.1f | %d |\n' "$gb" "$files" "$(awk "BEGIN{print $end - $start}")" $(( $(cat "$work/rss$gb") / 1024 ))
  rm -rf "$out"
done
