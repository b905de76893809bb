#!/usr/bin/env bash
# Quantize a tree of checkpoints with a Slurm job array: each task does its share of the files
# (wq-gpu reads SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT / SLURM_ARRAY_TASK_MIN), all of
# them write into the same output folder, each with its own journal.
#
#   sbatch --array=0-7 docs/slurm-array.sh /data/models /data/models-wq --bits 4 --granularity group --group-size 64
#
# A task that fails or is preempted can simply be resubmitted (sbatch --array=3 ...): it skips
# what its journal records and redoes the rest. The same command without an array afterwards
# (`wq-gpu quantize IN -o OUT ...` on one node) checks that everything is up to date.
#SBATCH --job-name=wq-quantize
#SBATCH --cpus-per-task=8
#SBATCH --mem=32G
#SBATCH --time=04:00:00
#SBATCH --output=wq-%A_%a.log
#SBATCH --requeue
# For the CUDA backend, add: #SBATCH --gres=gpu:1
set -euo pipefail

if [ $# -lt 2 ]; then
  echo "usage: sbatch --array=0-N docs/slurm-array.sh INPUT_DIR OUTPUT_DIR [wq-gpu quantize options]" >&2
  exit 2
fi
input=$1
output=$2
shift 2
: "${SLURM_ARRAY_TASK_ID:?submit with sbatch --array=...}"
report="${output%/}.report-${SLURM_ARRAY_TASK_ID}.json"

# stderr is not a terminal here: one progress line per file goes to the log.
exec wq-gpu quantize "$input" -o "$output" --threads "${SLURM_CPUS_PER_TASK:-0}" \
  --json="$report" "$@"
