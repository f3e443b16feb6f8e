#!/usr/bin/env bash
# Builds a relocatable bundle: bin/ (lattice, and with CUDA the GPU tests and
# benchmarks) and lib/ (the non-system shared libraries they need: gRPC, protobuf,
# abseil, gloo, ...), every binary with rpath $ORIGIN/../lib. A GPU host without our
# build dependencies runs it as is; the C/C++ runtime, the CUDA runtime, cuBLAS, NCCL
# and MPI come from the host.
#   deploy/bundle.sh [out_dir]   (default: dist/lattice)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-dist/lattice}
build_dir=${LATTICE_BUILD_DIR:-build}
bash scripts/install-deps.sh
targets=(lattice lattice_sentencepiece)
[ -f "$build_dir/build.ninja" ] || bash scripts/build.sh
if ninja -C "$build_dir" -t targets all | grep -q '^cuda_tests:'; then
  targets+=(cuda_tests lattice_step_bench lattice_kernel_bench)
fi
cmake --build "$build_dir" --target "${targets[@]}"
rm -rf "$out" && mkdir -p "$out/bin" "$out/lib"
for t in "${targets[@]}"; do
  [ "$t" = lattice_sentencepiece ] && continue
  path=$(find "$build_dir" -type f -name "$t" -perm -u+x | head -1)
  cp "$path" "$out/bin/"
done
# The sentencepiece plugin, loaded from ../lib at run time (tokenizer/sentencepiece_backend.h).
cp "$build_dir/tokenizer/liblattice_sentencepiece.so" "$out/lib/"
# Oniguruma, loaded privately by the tokenizer (tokenizer/regex.cc): not in ldd's list.
cp -L "$(ldconfig -p | awk '/libonig\.so\.5 / {print $NF; exit}')" "$out/lib/"
system='linux-vdso|ld-linux|libc\.so|libm\.so|libgcc_s|libstdc\+\+|libpthread|libdl\.so|librt\.so|libcudart|libcublas|libnccl|libcuda\.so|libmpi|libopen-|libhwloc|libevent|libpmix|libz\.so|libssl|libcrypto'
for binary in "$out"/bin/* "$out/lib/liblattice_sentencepiece.so"; do
  { ldd "$binary" | grep -v -E "$system" || true; } | awk '$3 ~ /^\// {print $3}' | while read -r lib; do
    cp -L -n "$lib" "$out/lib/"
  done
  patchelf --set-rpath '$ORIGIN/../lib' "$binary"
done
strip --strip-debug "$out"/bin/* "$out"/lib/*  # small enough to ship
for lib in "$out"/lib/*; do patchelf --set-rpath '$ORIGIN' "$lib"; done
git rev-parse --short HEAD > "$out/COMMIT" 2>/dev/null || true
du -sh "$out"
