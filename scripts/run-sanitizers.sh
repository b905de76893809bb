#!/usr/bin/env bash
# Builds the library and the parser tests with AddressSanitizer and UndefinedBehaviorSanitizer
# (CPU only) and runs the suites that feed hostile and malformed files to every reader, and the
# backend suite on the CPU backend (the SIMD kernels' loads and stores at every odd length).
set -euo pipefail
cd "$(dirname "$0")/.."
# -O1 without debug info keeps this build quick; the sanitizers' reports still name the line.
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=None -DCMAKE_CXX_FLAGS="-O1 -g1" \
      -DWQ_ENABLE_CUDA=OFF -DWQ_SANITIZE=ON -DWQ_BUILD_BENCH=OFF -DWQ_WERROR=ON >/dev/null
cmake --build build-asan -j "$(nproc)" --target wq_format_tests wq_pickle_tests wq_numpy_writer_tests wq_backend_tests
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
(cd build-asan && ctest --output-on-failure -j "$(nproc)" -R '^(Safetensors|ContainerTest|HostilePickles|HostileFiles|Unpickler|Files/FrameworkFiles|FrameworkFiles|NpyReader|NumpyFiles|CheckpointWriters|GgufTest|Backends/BackendSuite\..*/cpu_|Backends/GgmlBackendSuite\..*/cpu_|Backends/PackedBackendSuite\..*/cpu_|PackedCodec\.)')
