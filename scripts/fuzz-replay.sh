#!/usr/bin/env bash
# The fuzz targets as a regression test: builds build-fuzz/ (as scripts/fuzz.sh does), replays
# every committed seed (fuzz/corpus/TARGET/) and every crafted regression file
# (fuzz/regressions/TARGET/, where there is one) through its target under ASan/UBSan with leak
# detection, then fuzzes each target briefly from its seeds (SECONDS each, default 20; 0 skips
# this part), FUZZ_PARALLEL targets at once (default: every core). Exits 1 on any failure.
#
# usage: scripts/fuzz-replay.sh [SECONDS]      (FUZZ_TARGETS=REGEX etc.: scripts/fuzz-common.sh)
set -euo pipefail
# shellcheck source=scripts/fuzz-common.sh
source "$(dirname "$0")/fuzz-common.sh"
seconds=${1:-20}

fuzz_targets >/dev/null
fuzz_build
fuzz_environment
logs=$fuzz_build_dir/logs/replay
rm -rf "$logs"
mkdir -p "$logs"

# Runs FILES through TARGET once each; on a failure names every failing file with the first
# lines of its report.
replay() {
  local target=$1
  shift
  local bin=$fuzz_build_dir/fuzz/$target log=$logs/$target.log
  local opts=(-rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10)
  if "$bin" "${opts[@]}" "$@" >"$log" 2>&1; then
    return 0
  fi
  local file bad=0
  for file in "$@"; do
    if ! "$bin" "${opts[@]}" "$file" >"$log.one" 2>&1; then
      bad=$((bad + 1))
      echo "  FAILED: ${file#"$fuzz_root"/}"
      grep -m1 -E 'ERROR|terminate called|runtime error|out-of-memory|timeout' "$log.one" | sed 's/^/    /'
      grep -m1 -A1 'what():' "$log.one" | sed 's/^/    /' || true
      grep -E '^ +#[0-9]+ ' "$log.one" | grep -v -E 'libFuzzer|fuzzer::|__sanitizer|libc\.so|libstdc\+\+|_start|abort|raise|pthread_kill' |
        head -4 | sed 's/^/    /'
      cp "$log.one" "$log.$(basename "$file").txt"
    fi
  done
  rm -f "$log.one"
  [ $bad -gt 0 ] || echo "  FAILED as a batch, though no file fails alone (state carried between inputs?): see $log"
  return 1
}

status=0
echo "fuzz-replay: committed seeds and regression files"
for target in $(fuzz_targets); do
  files=()
  for dir in "$fuzz_root/fuzz/corpus/$target" "$fuzz_root/fuzz/regressions/$target"; do
    [ -d "$dir" ] || continue
    while IFS= read -r -d '' f; do files+=("$f"); done < <(find "$dir" -maxdepth 1 -type f ! -name '.*' ! -name 'README*' -print0 | sort -z)
  done
  if [ ${#files[@]} -eq 0 ]; then
    printf '%-20s no files\n' "$target"
    continue
  fi
  if replay "$target" "${files[@]}"; then
    printf '%-20s %3d files passed\n' "$target" ${#files[@]}
  else
    printf '%-20s FAILED (logs in %s)\n' "$target" "${logs#"$fuzz_root"/}"
    status=1
  fi
done

if [ "$seconds" -gt 0 ]; then
  echo "fuzz-replay: ${seconds}s of fresh fuzzing per target"
  rm -rf "$fuzz_build_dir/replay-corpus"
  FUZZ_PARALLEL=${FUZZ_PARALLEL:-$(nproc)} fuzz_run_all "$seconds" "$fuzz_build_dir/replay-corpus" "$logs" || status=1
fi
[ $status -eq 0 ] && echo "fuzz-replay: passed" || echo "fuzz-replay: FAILED"
exit $status
