#!/usr/bin/env bash
# End-to-end benchmark: wq-gpu (CPU backend) against the assignment's numpy + pickle method.
#
#   bench/run_e2e.sh BUILD_DIR [FILE.safetensors]
#
# Without FILE, writes a ~420 MB safetensors file of 25 float32 tensors [2048, 2048] (random
# normal, fixed seed) into a temporary folder. Then:
#   1. page-caches the file and times reading it (cat > /dev/null): the I/O ceiling;
#   2. times `wq-gpu quantize FILE -o OUT --backend cpu -q` at 8 bits per-tensor and at 4 bits
#      group 64 (RUNS runs each, median), recording peak RSS with /usr/bin/time -v;
#   3. runs bench/anchor_numpy.py on the same file (numpy encode8 + pickle, torch anchors);
#   4. prints GB/s of each (float32 input bytes / wall time) and wq's speed-up.
# Everything it creates is removed on exit.
#
# Environment: RUNS (default 3), TMPDIR (where the file and the outputs go; default /tmp),
# WQ_THREADS (wq-gpu --threads; default 0 = every core), NO_TORCH=1 (skip torch anchors).
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
  echo "usage: $0 BUILD_DIR [FILE.safetensors]" >&2
  exit 2
fi
BUILD_DIR=$(cd "$1" && pwd)
WQ="$BUILD_DIR/host/wq-gpu"
PY=/usr/bin/python3
HERE=$(cd "$(dirname "$0")" && pwd)
RUNS=${RUNS:-3}
WQ_THREADS=${WQ_THREADS:-0}
[[ -x "$WQ" ]] || { echo "no wq-gpu at $WQ (build it first)" >&2; exit 2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/wq-e2e.XXXXXX")
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT INT TERM

FILE=${2:-}
if [[ -z "$FILE" ]]; then
  FILE="$WORK/model.safetensors"
  echo "== writing $FILE (25 x [2048, 2048] float32, random normal)"
  "$PY" -c 'import sys; sys.path.insert(0, sys.argv[1]); import anchor_numpy; anchor_numpy.write_benchmark_model(sys.argv[2])' \
    "$HERE" "$FILE"
fi
[[ -r "$FILE" ]] || { echo "cannot read $FILE" >&2; exit 2; }

now() { date +%s.%N; }
TIMES="$WORK/times.txt"  # label seconds peak_rss_kb
: > "$TIMES"

echo "== page-caching and timing a read of $FILE"
cat "$FILE" > /dev/null
cat "$FILE" > /dev/null
for ((i = 0; i < RUNS; i++)); do
  t0=$(now); cat "$FILE" > /dev/null; t1=$(now)
  echo "read $(echo "$t1 - $t0" | bc -l) 0" >> "$TIMES"
done

run_wq() {  # label, then wq-gpu quantize flags
  local label=$1; shift
  local out="$WORK/out.wq.safetensors"
  for ((i = 0; i < RUNS; i++)); do
    rm -f "$out"
    local t0 t1 rss
    if [[ -x /usr/bin/time ]]; then
      t0=$(now)
      /usr/bin/time -v -o "$WORK/time.txt" "$WQ" quantize "$FILE" -o "$out" --backend cpu -q \
        --threads "$WQ_THREADS" "$@"
      t1=$(now)
      rss=$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' "$WORK/time.txt")
    else
      # No /usr/bin/time: the children's peak RSS from getrusage (the only child is wq-gpu).
      local r
      r=$("$PY" -c 'import resource, subprocess, sys, time
t0 = time.perf_counter(); subprocess.run(sys.argv[1:], check=True); t1 = time.perf_counter()
print(t1 - t0, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)' \
        "$WQ" quantize "$FILE" -o "$out" --backend cpu -q --threads "$WQ_THREADS" "$@")
      t0=0; t1=${r% *}; rss=${r#* }
    fi
    echo "$label $(echo "$t1 - $t0" | bc -l) $rss" >> "$TIMES"
  done
  echo "   $label: output $(stat -c %s "$out") bytes"
  rm -f "$out"
}

echo "== wq-gpu quantize (cpu backend, --threads $WQ_THREADS), $RUNS runs each"
run_wq wq_b8_tensor --bits 8 --granularity tensor
run_wq wq_b4_group64 --bits 4 --granularity group --group-size 64

echo "== numpy + pickle (the assignment's method) and torch anchors"
ANCHOR_ARGS=(--runs "$RUNS" --json "$WORK/anchor.json" --tmpdir "$WORK")
[[ "${NO_TORCH:-0}" == 1 ]] && ANCHOR_ARGS+=(--no-torch)
"$PY" "$HERE/anchor_numpy.py" "$FILE" "${ANCHOR_ARGS[@]}"

echo "== summary"
"$PY" - "$FILE" "$TIMES" "$WORK/anchor.json" <<'EOF'
import json, os, statistics, sys
path, times_path, anchor_path = sys.argv[1:4]
with open(path, "rb") as f:
    n = int.from_bytes(f.read(8), "little")
    header = json.loads(f.read(n))
sizes = [v["data_offsets"][1] - v["data_offsets"][0] for k, v in header.items() if k != "__metadata__"]
file_bytes = os.path.getsize(path)
input_bytes = sum(sizes)
largest = max(sizes)
rows = {}
for line in open(times_path):
    label, sec, rss = line.split()
    rows.setdefault(label, []).append((float(sec), int(rss)))
anchor = json.load(open(anchor_path))
np_e2e = anchor["numpy e2e (load+encode8+pickle)"]["seconds"]
np_enc = anchor["numpy encode8+pickle"]["seconds"]
mb = 1 << 20
print(f"file {file_bytes / 1e6:.1f} MB, tensors {input_bytes / 1e6:.1f} MB float32, largest tensor {largest / mb:.0f} MiB")
print(f"{'case':<36}{'median s':>10}{'GB/s':>9}{'vs numpy e2e':>14}{'peak RSS MiB':>14}")
def line(label, sec, rss=None, speedup=True):
    gbs = input_bytes / sec / 1e9
    sp = f"{np_e2e / sec:.1f}x" if speedup else ""
    r = f"{rss / 1024:.0f}" if rss else ""
    print(f"{label:<36}{sec:>10.3f}{gbs:>9.2f}{sp:>14}{r:>14}")
for label, vals in rows.items():
    sec = statistics.median(v[0] for v in vals)
    rss = max(v[1] for v in vals)
    line(("cat > /dev/null" if label == "read" else "wq-gpu " + label[3:]), sec, rss if label != "read" else None, label != "read")
line("numpy encode8 (in memory)", anchor["numpy encode8"]["seconds"])
line("numpy encode8+pickle (in memory)", np_enc)
line("numpy e2e load+encode8+pickle", np_e2e)
for k, v in anchor.items():
    if k.startswith("torch"):
        line(k + " (in memory)", v["seconds"])
limit = 2 * largest + 256 * mb
worst = max(v[1] for k, vals in rows.items() if k != "read" for v in vals) * 1024
print(f"peak RSS of wq-gpu {worst / mb:.0f} MiB; target < 2 x largest tensor + 256 MiB = {limit / mb:.0f} MiB: "
      f"{'met' if worst < limit else 'NOT met'}")
EOF
