#!/usr/bin/env bash
# Bundles GPU test binaries with the non-system shared libraries they need into .gpu/
# (ignored by git), for a machine that has the CUDA runtime and NCCL but none of our
# build dependencies. Run there: LD_LIBRARY_PATH=.gpu/lib .gpu/cuda_tests
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${LATTICE_BUILD_DIR:-build}
cmake --build "$build_dir" --target cuda_tests
rm -rf .gpu/lib && mkdir -p .gpu/lib
cp "$build_dir/tests/cuda_tests" .gpu/
# The CUDA runtime and NCCL come from the GPU machine; so does everything in the C runtime.
ldd "$build_dir/tests/cuda_tests" |
  grep -v -E 'linux-vdso|ld-linux|libc\.so|libm\.so|libgcc_s|libstdc\+\+|libpthread|libdl\.so|librt\.so|libcudart|libnccl' |
  awk '{print $3}' | while read -r lib; do [ -n "$lib" ] && cp -L "$lib" .gpu/lib/; done
du -sh .gpu
