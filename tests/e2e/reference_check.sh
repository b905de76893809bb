#!/usr/bin/env bash
# Quantizes the bundled example at every bits 1..8 x tensor/channel/group (and f16 scales,
# --all) with the real wq-gpu, for each --method minmax, symmetric and mse, then has the
# independent numpy implementation (tests/reference/wq_reference.py) check codes, scales,
# mins, metadata and checksums byte for byte, the decoded values, the 7-bit/8-bit size ratio
# and the assignment's 8-bit formula.
set -euo pipefail
# bash clears -e inside $(...), so without this a failing check in size=$(check ...) would go
# unnoticed whenever the function's last command (stat) succeeds
shopt -s inherit_errexit
wq=$1 py=$2 src=$3
ref="$src/tests/reference/wq_reference.py"
input="$src/examples/student_net.safetensors"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

check() {  # bits granularity [extra flags...]
  local bits=$1 gran=$2; shift 2
  local out="$work/q.wq.safetensors"
  "$wq" quantize "$input" -o "$out" --backend cpu -q --bits "$bits" --granularity "$gran" --group-size 48 "$@"
  local ref_flags=(--bits "$bits" --granularity "$gran" --group-size 48) prev=
  for f in "$@"; do
    case $f in --all) ref_flags+=(--all) ;; f16) ref_flags+=(--scale-dtype f16) ;; esac
    if [[ $prev == --method ]]; then ref_flags+=(--method "$f"); fi
    prev=$f
  done
  "$py" "$ref" check --input "$input" --container "$out" "${ref_flags[@]}" >/dev/null
  "$wq" decode "$out" -o "$work/d.safetensors" --backend cpu -q
  "$py" "$ref" decode-check --container "$out" --decoded "$work/d.safetensors" >/dev/null
  stat -c %s "$out"
}

for bits in 1 2 3 4 5 6 7 8; do
  for gran in tensor channel group; do
    size=$(check "$bits" "$gran")
    echo "ok bits=$bits granularity=$gran bytes=$size"
  done
done
check 4 group --scale-dtype f16 >/dev/null && echo "ok 4-bit group f16 scales"
check 3 channel --all >/dev/null && echo "ok 3-bit channel --all"

for method in symmetric mse; do
  for bits in 1 2 3 4 5 6 7 8; do
    for gran in tensor channel group; do
      size=$(check "$bits" "$gran" --method "$method")
      echo "ok method=$method bits=$bits granularity=$gran bytes=$size"
    done
  done
  check 4 group --method "$method" --scale-dtype f16 >/dev/null && echo "ok $method 4-bit group f16 scales"
done

# 7 bits cost 7/8 of 8 bits: the code parts are exactly 7/8 (to the byte per tensor), and the
# whole file, with --all and per-tensor scales so that codes dominate, is about 7/8.
"$wq" quantize "$input" -o "$work/q7.wq.safetensors" --backend cpu -q --bits 7 --granularity tensor --all
"$wq" quantize "$input" -o "$work/q8.wq.safetensors" --backend cpu -q --bits 8 --granularity tensor --all
"$py" - "$work/q7.wq.safetensors" "$work/q8.wq.safetensors" <<'PY'
import json, os, struct, sys
def codes_bytes(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    return sum(v["data_offsets"][1] - v["data_offsets"][0]
               for k, v in header.items() if k.endswith(".__codes"))
c7, c8 = (codes_bytes(p) for p in sys.argv[1:3])
f7, f8 = (os.path.getsize(p) for p in sys.argv[1:3])
print(f"7-bit / 8-bit codes: {c7} / {c8} = {c7 / c8:.4f}; whole files: {f7} / {f8} = {f7 / f8:.4f}")
assert abs(c7 / c8 - 7 / 8) < 0.001, "7-bit codes are not 7/8 of 8-bit codes"
# On this 1 MB model the JSON header is ~10% of the file, so the whole-file ratio sits a little
# above 7/8.
assert 7 / 8 <= f7 / f8 < 0.92, "7-bit file is not about 7/8 of the 8-bit one"
PY

"$wq" quantize "$input" -o "$work/a8.wq.safetensors" --backend cpu -q --bits 8 --granularity tensor
"$py" "$ref" assignment-check --input "$input" --container "$work/a8.wq.safetensors"
echo "reference check passed"
