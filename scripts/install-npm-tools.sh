#!/usr/bin/env bash
# Installs the independent checkers of wq's GGUF output from the npm registry, at the exact
# versions that tests/npm/package-lock.json pins: node-llama-cpp with its prebuilt CPU build of
# llama.cpp/ggml (@node-llama-cpp/linux-x64: libggml-base.so, libllama.so) and the
# @huggingface/gguf parser. Nothing is built; the package's postinstall (which would download
# or compile other llama.cpp builds) is not run, and nothing needs it.
#
# usage: scripts/install-npm-tools.sh      (idempotent: a second run with the same lock file
#                                           does nothing)
set -euo pipefail
cd "$(dirname "$0")/../tests/npm"
if ! command -v npm >/dev/null; then
  bash ../../scripts/install-deps.sh nodejs npm
fi
stamp=node_modules/.wq-lock-sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] &&
   [ -f node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/libggml-base.so ]; then
  echo "install-npm-tools: tests/npm is up to date"
  exit 0
fi
npm ci --omit=optional --ignore-scripts --no-audit --no-fund --loglevel=error
echo "$want" > "$stamp"
echo "install-npm-tools: installed $(node -p 'Object.entries(require("./package.json").dependencies).map(([k,v])=>k+"@"+v).join(", ")')"
