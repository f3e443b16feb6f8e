#!/usr/bin/env bash
# Installs missing Debian packages, configures (once) and builds Lattice into build/.
# CUDA sources are compiled wherever nvcc exists (LATTICE_CUDA_ARCHITECTURES, default 90a).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
build_dir=${LATTICE_BUILD_DIR:-build}
if [ ! -f "$build_dir/build.ninja" ]; then
  cmake -S . -B "$build_dir" -G Ninja \
    -DCMAKE_BUILD_TYPE="${CMAKE_BUILD_TYPE:-RelWithDebInfo}" \
    -DLATTICE_CUDA_ARCHITECTURES="${LATTICE_CUDA_ARCHITECTURES:-90a}"
fi
cmake --build "$build_dir" -j "$(nproc)"
