#!/usr/bin/env bash
# Configures and builds wq into ./build. WQ_ENABLE_CUDA=AUTO|ON|OFF (default AUTO: the CUDA
# backend is compiled when nvcc is found); WQ_BUILD_TESTS, WQ_BUILD_BENCH=ON|OFF (default ON,
# given every time so that a build folder configured by run-example.sh gets its tests back).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DWQ_ENABLE_CUDA="${WQ_ENABLE_CUDA:-AUTO}" \
      -DWQ_BUILD_TESTS="${WQ_BUILD_TESTS:-ON}" -DWQ_BUILD_BENCH="${WQ_BUILD_BENCH:-ON}" \
      -DWQ_WERROR=ON ${WQ_CMAKE_ARGS:-}
cmake --build build -j "$(nproc)"
