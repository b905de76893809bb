#!/usr/bin/env bash
# One command from a fresh clone: install dependencies, build, and quantize the bundled example
# checkpoint (a small CNN, examples/student_net.safetensors) at 8 and 4 bits, printing the
# size/error table, then decode it back.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh   # only what wq itself needs: no test, benchmark or fuzzing tools
WQ_BUILD_TESTS=OFF WQ_BUILD_BENCH=OFF bash scripts/build.sh
mkdir -p out
./build/host/wq-gpu quantize examples/student_net.safetensors -o out/student_net.wq.safetensors
echo
./build/host/wq-gpu quantize examples/student_net.safetensors -o out/student_net.4bit.wq.safetensors \
  --bits 4 --granularity group --group-size 32
echo
./build/host/wq-gpu decode out/student_net.wq.safetensors -o out/student_net.decoded.safetensors
