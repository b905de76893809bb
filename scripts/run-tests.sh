#!/usr/bin/env bash
# One command from a fresh clone: install dependencies, build (warnings are errors), run every
# test, then install the package and build the example consumer against it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh --tests
# The real llama.cpp/ggml (CPU build) and a GGUF parser from npm, pinned by tests/npm's lock
# file: the independent checkers of wq's ggml block types and GGUF files.
bash scripts/install-npm-tools.sh
bash scripts/build.sh
(cd build && ctest --output-on-failure -j "$(nproc)")

# Every reader again under AddressSanitizer and UndefinedBehaviorSanitizer.
bash scripts/run-sanitizers.sh

# The libFuzzer targets (clang): every seed and crafted regression file replayed, then a short
# fresh run of each target (WQ_FUZZ_SECONDS each, default 20; 0 replays only).
bash scripts/fuzz-replay.sh "${WQ_FUZZ_SECONDS:-20}"

# The installed package must work for another project: find_package(wqcuda) + wq::wqcuda.
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install build --prefix "$prefix" >/dev/null
cmake -S examples/consumer -B "$prefix/consumer-build" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$prefix/consumer-build" >/dev/null
"$prefix/consumer-build/wq_consumer"
"$prefix/bin/wq-gpu" --version
echo "1 passed, 0 failed: installed package consumer"

# The Python package as a user installs it (scripts/install-python.sh, here into a temporary
# folder and from the build above), then the README's Python example, run from elsewhere.
WQ_BUILD_TESTS=ON WQ_BUILD_BENCH=ON bash scripts/install-python.sh "$prefix/python" >/dev/null
awk '/^## Python/{p=1} p && /^```python/{f=1; next} f && /^```/{exit} f' README.md > "$prefix/readme_example.py"
(cd "$prefix" && PYTHONPATH="$prefix/python" /usr/bin/python3 readme_example.py)
echo "1 passed, 0 failed: installed Python package and the README's example"
