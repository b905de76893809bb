# shellcheck shell=bash
# Shared by scripts/fuzz.sh and scripts/fuzz-replay.sh (sourced, not run): the fuzzing build in
# build-fuzz/ and the running of its targets. See fuzz/README.md.
#
# Environment (all optional):
#   FUZZ_TARGETS=REGEX   only the targets whose name matches (e.g. 'torch|npz')
#   FUZZ_JOBS=N          libFuzzer -jobs=N -workers=N: N fuzzing processes per target
#   FUZZ_FORK=N          libFuzzer -fork=N, keeping on after crashes, OOMs and timeouts (collects
#                        many artifacts in one run; mutually exclusive with FUZZ_JOBS)
#   FUZZ_PARALLEL=N      N targets at once (default 1; fuzz-replay.sh's short runs: every core)
#   FUZZ_CXX=PATH        the clang++ to build with (default clang++-16, installed if missing)
#   FUZZ_BUILD_JOBS=N    build parallelism (default: every core)
#   FUZZ_ARGS='...'      more libFuzzer flags for every run

fuzz_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
fuzz_build_dir=$fuzz_root/build-fuzz
fuzz_all_targets=(fuzz_safetensors fuzz_sharded_index fuzz_torch_zip fuzz_torch_legacy fuzz_pdparams
                  fuzz_npy fuzz_npz fuzz_container fuzz_rules fuzz_gguf)

# The largest input libFuzzer makes for a target: a few times its largest seed.
fuzz_max_len() {
  case $1 in
    fuzz_npy | fuzz_rules) echo 4096 ;;
    fuzz_torch_legacy | fuzz_pdparams) echo 8192 ;;
    *) echo 16384 ;;
  esac
}

fuzz_targets() {
  local t any=0
  for t in "${fuzz_all_targets[@]}"; do
    if [[ $t =~ ${FUZZ_TARGETS:-.} ]]; then
      echo "$t"
      any=1
    fi
  done
  if [ $any -eq 0 ]; then
    echo "fuzz: no target matches FUZZ_TARGETS='${FUZZ_TARGETS:-}' (targets: ${fuzz_all_targets[*]})" >&2
    return 1
  fi
}

# Configures and builds build-fuzz/ (clang, libFuzzer + ASan + UBSan, CUDA off, no tests).
fuzz_build() {
  local cxx=${FUZZ_CXX:-clang++-16}
  local packages=(cmake make pkg-config nlohmann-json3-dev libxxhash-dev libfmt-dev libtomlplusplus-dev
                  libzip-dev zlib1g-dev)
  [ -z "${FUZZ_CXX:-}" ] && packages+=(clang-16 libclang-rt-16-dev)
  bash "$fuzz_root/scripts/install-deps.sh" "${packages[@]}"
  cmake -S "$fuzz_root" -B "$fuzz_build_dir" -DCMAKE_CXX_COMPILER="$cxx" -DWQ_BUILD_FUZZERS=ON -DWQ_ENABLE_CUDA=OFF \
        -DWQ_BUILD_TESTS=OFF -DWQ_BUILD_BENCH=OFF >/dev/null
  cmake --build "$fuzz_build_dir" -j "${FUZZ_BUILD_JOBS:-$(nproc)}" --target wq_fuzzers
}

# Sanitizer settings of every run: leaks detected, UBSan's stack traces, symbolized reports.
fuzz_environment() {
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:detect_stack_use_after_return=1:strict_string_checks=1}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
  if [ -z "${ASAN_SYMBOLIZER_PATH:-}" ]; then
    local s
    for s in "$(command -v llvm-symbolizer-16 || true)" /usr/lib/llvm-16/bin/llvm-symbolizer \
             "$(command -v llvm-symbolizer || true)" /usr/lib/llvm-*/bin/llvm-symbolizer; do
      if [ -n "$s" ] && [ -x "$s" ]; then
        export ASAN_SYMBOLIZER_PATH
        ASAN_SYMBOLIZER_PATH=$(readlink -f "$s")
        break
      fi
    done
  fi
}

# The artifacts libFuzzer writes: crash-*, leak-*, oom-*, timeout-* (newer than $2 if given).
fuzz_count_artifacts() {
  [ -d "$1" ] || { echo 0; return; }
  if [ -n "${2:-}" ]; then
    find "$1" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'oom-*' -o -name 'timeout-*' \) \
         -newer "$2" | wc -l
  else
    find "$1" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'oom-*' -o -name 'timeout-*' \) | wc -l
  fi
}

# Executions, exec/s, cov and ft from libFuzzer logs (several with -jobs; fork mode's status
# lines where there are no final stats): "EXECS EXEC_PER_S COV FT".
fuzz_stats() {
  awk '
    FNR == 1 { files++ }
    /^stat::number_of_executed_units:/ { execs += $2; final = 1 }
    /^stat::average_exec_per_sec:/ { rate += $2 }
    / cov: [0-9]+ ft: [0-9]+/ {
      for (i = 1; i < NF; i++) {
        if ($i == "cov:" && $(i + 1) + 0 > cov) cov = $(i + 1) + 0
        if ($i == "ft:" && $(i + 1) + 0 > ft) ft = $(i + 1) + 0
      }
    }
    /^#[0-9]+: cov:/ {  # fork mode: "#EXECS: cov: C ft: F corp: N exec/s R ..."
      n = substr($1, 2) + 0; if (n > fork_execs) fork_execs = n
      for (i = 1; i < NF; i++) if ($i == "exec/s" || $i == "exec/s:") fork_rate = $(i + 1) + 0
    }
    END {
      if (!final) { execs = fork_execs; rate = fork_rate }
      printf "%d %d %d %d\n", execs, rate, cov, ft
    }' "$@" 2>/dev/null
}

# Runs one target for $2 seconds on the working corpus $3 (seeded read-only from fuzz/corpus),
# artifacts into $4, logs into $5/TARGET*.log. Prints the summary line; returns 1 on findings.
fuzz_run_target() {
  local target=$1 seconds=$2 corpus=$3 artifacts=$4 logs=$5
  local bin=$fuzz_build_dir/fuzz/$target seeds=$fuzz_root/fuzz/corpus/$target
  mkdir -p "$corpus" "$artifacts" "$logs"
  local stamp=$logs/.$target.start
  : >"$stamp"
  local opts=(-max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10
              -max_len="$(fuzz_max_len "$target")" -use_value_profile=1 -dict="$fuzz_root/fuzz/dict/$target.dict"
              -artifact_prefix="$artifacts/" -print_final_stats=1)
  # shellcheck disable=SC2206
  local extra=(${FUZZ_ARGS:-})
  local status=0 logfiles
  rm -f "$logs/$target".log "$logs/$target".job-*.log
  if [ "${FUZZ_JOBS:-1}" -gt 1 ]; then
    # -jobs writes fuzz-JOB.log into the working folder: one folder per target.
    local jobdir=$logs/$target.jobs
    rm -rf "$jobdir" && mkdir -p "$jobdir"
    (cd "$jobdir" && "$bin" "${opts[@]}" "${extra[@]}" -jobs="$FUZZ_JOBS" -workers="$FUZZ_JOBS" "$corpus" "$seeds") \
      >"$logs/$target.log" 2>&1 || status=$?
    logfiles=("$jobdir"/fuzz-*.log)
  elif [ -n "${FUZZ_FORK:-}" ]; then
    "$bin" "${opts[@]}" "${extra[@]}" -fork="$FUZZ_FORK" -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1 \
      "$corpus" "$seeds" >"$logs/$target.log" 2>&1 || status=$?
    logfiles=("$logs/$target.log")
  else
    "$bin" "${opts[@]}" "${extra[@]}" "$corpus" "$seeds" >"$logs/$target.log" 2>&1 || status=$?
    logfiles=("$logs/$target.log")
  fi
  local execs rate cov ft found
  read -r execs rate cov ft < <(fuzz_stats "${logfiles[@]}")
  found=$(fuzz_count_artifacts "$artifacts" "$stamp")
  local note=""
  if [ "$found" -gt 0 ]; then
    note="  FOUND (see $artifacts)"
  elif [ "$status" -ne 0 ]; then
    note="  FAILED with status $status (see $logs/$target.log)"
  fi
  printf '%-20s executions %10s  exec/s %7s  cov %6s  ft %7s  artifacts %3s%s\n' \
         "$target" "$execs" "$rate" "$cov" "$ft" "$found" "$note"
  [ "$found" -eq 0 ] && [ "$status" -eq 0 ]
}

# Runs every selected target for $1 seconds, FUZZ_PARALLEL at a time, working corpora under
# $2/TARGET, artifacts under build-fuzz/artifacts/TARGET, logs under $3. Prints one line per
# target, in order; returns 1 when any found something or failed.
fuzz_run_all() {
  local seconds=$1 corpus_root=$2 logs=$3 parallel=${FUZZ_PARALLEL:-1}
  local targets target failed=0 i=0
  mapfile -t targets < <(fuzz_targets)
  mkdir -p "$logs"
  local pids=() names=()
  for target in "${targets[@]}"; do
    fuzz_run_target "$target" "$seconds" "$corpus_root/$target" "$fuzz_build_dir/artifacts/$target" "$logs" \
      >"$logs/.$target.summary" &
    pids+=($!)
    names+=("$target")
    if [ ${#pids[@]} -ge "$parallel" ]; then
      wait "${pids[0]}" || failed=1
      cat "$logs/.${names[0]}.summary"
      pids=("${pids[@]:1}")
      names=("${names[@]:1}")
    fi
  done
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || failed=1
    cat "$logs/.${names[$i]}.summary"
  done
  fuzz_clean_scratch
  return $failed
}

# Scratch folders (fuzz/fuzz_support.h) of fuzzing processes that died without removing them.
fuzz_clean_scratch() {
  local d pid
  for d in /dev/shm/wq-fuzz-* "${TMPDIR:-/tmp}"/wq-fuzz-* "${WQ_FUZZ_TMPDIR:-/nonexistent}"/wq-fuzz-*; do
    [ -d "$d" ] || continue
    pid=${d##*/wq-fuzz-}
    pid=${pid%%-*}
    [[ $pid =~ ^[0-9]+$ ]] || continue
    kill -0 "$pid" 2>/dev/null || rm -rf "$d"
  done
}
