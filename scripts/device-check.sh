#!/usr/bin/env bash
# The GPU checks of the CUDA backend, in one run on a machine with a CUDA device:
#   1. the test suites (backend suites on cuda and cuda_small_slots, CLI byte identity of whole
#      files CPU vs CUDA, auto picking the device), 2. bench_cuda (kernels, pipeline, small
#      files) and bench_small_files (where a small file's time goes, by workers), 3. compute-sanitizer memcheck, racecheck and synccheck on the CUDA suites,
#   4. (step "profile", where Nsight Compute exists) ncu's speed-of-light and occupancy
#      sections for the first single-pass quantize kernels bench_cuda launches.
# The build is made beforehand (scripts/build.sh with -DCMAKE_CUDA_ARCHITECTURES=90 on a
# machine with the Debian dependencies) and brought along; LIBS names a folder with any shared
# libraries the device machine lacks. Logs go to $OUT (default /tmp/wq-device).
#
# usage: [STEPS="tests bench sanitize profile"] scripts/device-check.sh [BUILD_DIR] [LIBS_DIR]
set -uo pipefail
steps=${STEPS:-tests bench sanitize}
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build}
libs=${2:-}
out=${OUT:-/tmp/wq-device}
mkdir -p "$out"
[ -n "$libs" ] && export LD_LIBRARY_PATH="$root/$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# ctest files name the checkout's path where it was configured: make that path lead here.
configured=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$root/$build/CMakeCache.txt")
if [ "$configured" != "$root" ] && [ ! -e "$configured" ]; then
  mkdir -p "$(dirname "$configured")" && ln -s "$root" "$configured"
fi
cd "$configured/$build" || exit 1

step() { printf '\n=== %s (%s)\n' "$1" "$(date +%T)"; }

step "device"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$out/gpu.txt"

has() { [[ " $steps " == *" $1 "* ]]; }

if has tests; then
step "tests on the CUDA backend"
timeout 150 ctest -j16 --timeout 140 -R "${TESTS:-BackendSuite|CudaPlan|cli}" >"$out/ctest.log" 2>&1
echo "ctest status $?"
grep -E 'tests passed|tests failed|\(Failed\)|\(Timeout\)|Exception' "$out/ctest.log" | head -40
fi

if has bench; then
step "bench_cuda"
timeout 110 ./bench/bench_cuda --dir /dev/shm --gb 8 --small-files 1000 2>&1 | tee "$out/bench_cuda.txt"
step "bench_small_files (host share against backend share, by workers)"
timeout 100 ./bench/bench_small_files --backend cuda --dir /dev/shm --files 1000 --workers 1,2,4,8,16 --large-gb 2 \
  --cli ./host/wq-gpu 2>&1 |
  tee "$out/bench_small_files.txt"
fi

has sanitize && for tool in memcheck racecheck synccheck; do
  step "compute-sanitizer $tool"
  timeout 70 compute-sanitizer --tool "$tool" --error-exitcode 9 ./tests/wq_backend_tests \
    --gtest_filter='*EveryKernelSchedule*/cuda_small_slots:*BatchesGive*/cuda_small_slots:*ConstantTensors*/cuda:*Casts*/cuda:*NonFinite*/cuda_small_slots:*ErrorStatistics*/cuda:*HalfAndDouble*/cuda:*MatricesWithShortLastGroups/cuda:*PackedBackendSuite.WritesCompressed*/cuda:*PackedBackendSuite.Refuses*/cuda' \
    >"$out/sanitizer-$tool.log" 2>&1
  echo "$tool status $?"
  grep -E 'ERROR SUMMARY|PASSED|FAILED' "$out/sanitizer-$tool.log" | tail -3
  grep -m12 -E '^========= (Invalid|Race|Barrier|Error|Program hit|    at )' "$out/sanitizer-$tool.log"
done

if has profile; then
step "ncu"
if command -v ncu >/dev/null; then
  # The first launch of each single-pass schedule that bench_cuda's kernel cases reach:
  # small groups (QuantLaunch 1), warp groups (2), block groups (3).
  for schedule in 1 2 3; do
    timeout 60 ncu --kernel-name-base mangled --kernel-name "regex:QuantLaunchE${schedule}E" --launch-count 1 \
      --section SpeedOfLight --section Occupancy --section LaunchStats \
      ./bench/bench_cuda --dir /dev/shm --gb 0.07 --small-files 1 >"$out/ncu-$schedule.txt" 2>&1
    echo "ncu schedule $schedule status $?"
    grep -E 'Memory Throughput|DRAM Throughput|Compute \(SM\) Throughput|Achieved Occupancy|Registers Per Thread|Theoretical Occupancy|Duration|ERR' "$out/ncu-$schedule.txt" | head -12
  done
else
  echo "no ncu on this machine"
fi
fi
