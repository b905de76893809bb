#!/usr/bin/env bash
# Builds the libFuzzer targets (build-fuzz/, clang-16, ASan + UBSan; clang-16 and
# libclang-rt-16-dev are installed when missing) and fuzzes each for SECONDS (default 60) on its
# working corpus build-fuzz/corpus/TARGET (seeded read-only from fuzz/corpus/TARGET, which is
# never written), with its dictionary fuzz/dict/TARGET.dict. Artifacts (crashes, leaks, OOMs,
# timeouts) go to build-fuzz/artifacts/TARGET/, logs to build-fuzz/logs/. Prints one line per
# target (executions, exec/s, coverage, new artifacts); exits 1 when any artifact was found.
#
# usage: scripts/fuzz.sh [SECONDS] [--targets REGEX] [--jobs N] [--fork N] [--parallel N]
#   --targets REGEX  only the targets whose name matches (also FUZZ_TARGETS)
#   --jobs N         N fuzzing processes per target, -jobs=N -workers=N (also FUZZ_JOBS)
#   --fork N         -fork=N, going on after crashes/OOMs/timeouts to collect them all (FUZZ_FORK)
#   --parallel N     N targets at once (also FUZZ_PARALLEL; default 1)
# More in scripts/fuzz-common.sh and fuzz/README.md.
set -euo pipefail
# shellcheck source=scripts/fuzz-common.sh
source "$(dirname "$0")/fuzz-common.sh"

seconds=60
while [ $# -gt 0 ]; do
  case $1 in
    --targets) FUZZ_TARGETS=$2; shift 2 ;;
    --jobs) FUZZ_JOBS=$2; shift 2 ;;
    --fork) FUZZ_FORK=$2; shift 2 ;;
    --parallel) FUZZ_PARALLEL=$2; shift 2 ;;
    -h | --help) sed -n '2,15p' "$0"; exit 0 ;;
    [0-9]*) seconds=$1; shift ;;
    *) echo "fuzz.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
export FUZZ_TARGETS FUZZ_JOBS FUZZ_FORK FUZZ_PARALLEL
if [ -n "${FUZZ_FORK:-}" ] && [ "${FUZZ_JOBS:-1}" -gt 1 ]; then
  echo "fuzz.sh: --fork and --jobs do not go together" >&2
  exit 2
fi
fuzz_targets >/dev/null

fuzz_build
fuzz_environment
echo "fuzz: ${seconds}s per target$( [ "${FUZZ_JOBS:-1}" -gt 1 ] && echo ", $FUZZ_JOBS jobs each")$( [ -n "${FUZZ_FORK:-}" ] && echo ", fork mode ($FUZZ_FORK)")"
status=0
fuzz_run_all "$seconds" "$fuzz_build_dir/corpus" "$fuzz_build_dir/logs" || status=1
if [ $status -ne 0 ]; then
  echo "fuzz: findings or failures above; reproduce one with build-fuzz/fuzz/TARGET ARTIFACT (fuzz/README.md)"
fi
exit $status
