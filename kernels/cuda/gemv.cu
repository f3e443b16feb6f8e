// Skinny GEMMs for decode: out[M, N] = x[M, K] w[N, K]^T (+ bias) for M <= 8, where a
// step reads every weight once and the work is pure bandwidth. cuBLASLt's kernels
// for M = 1..8 leave bandwidth unused (see bench/results); here each warp streams
// whole weight rows with 16-byte loads, several in flight, multiplies them with the
// M input rows (small, served from L1) and reduces across the warp in f32.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/gemv.h"

namespace lattice::cuda {
namespace {

constexpr int kWarps = 8;       // per block; one weight row per warp at a time
constexpr int kUnroll = 4;      // 16-byte weight loads in flight per lane

template <typename T>
struct Vec8 {
  uint4 bits;
  __device__ __forceinline__ float Get(int i) const {
    const T* v = reinterpret_cast<const T*>(&bits);
    return ToFloat(v[i]);
  }
};

template <typename T, typename Out, int kM>
__global__ void __launch_bounds__(kWarps * 32)
    GemvKernel(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias, int64_t n, int64_t k,
               Out* __restrict__ out) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t chunks = k / 8;  // 16-byte chunks per row
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * kWarps + warp; row < n;
       row += static_cast<int64_t>(gridDim.x) * kWarps) {
    const uint4* wrow = reinterpret_cast<const uint4*>(w + row * k);
    float acc[kM];
#pragma unroll
    for (int m = 0; m < kM; ++m) acc[m] = 0.0f;
    for (int64_t base = lane; base < chunks; base += 32 * kUnroll) {
      Vec8<T> wv[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int64_t c = base + u * 32;
        wv[u].bits = c < chunks ? __ldg(wrow + c) : make_uint4(0, 0, 0, 0);
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int64_t c = base + u * 32;
        if (c >= chunks) break;
#pragma unroll
        for (int m = 0; m < kM; ++m) {
          Vec8<T> xv;
          xv.bits = __ldg(reinterpret_cast<const uint4*>(x + m * k) + c);
#pragma unroll
          for (int i = 0; i < 8; ++i) acc[m] += wv[u].Get(i) * xv.Get(i);
        }
      }
    }
#pragma unroll
    for (int m = 0; m < kM; ++m) {
      const float sum = WarpSum(acc[m]);
      if (lane == 0) {
        const float b = bias != nullptr ? ToFloat(bias[row]) : 0.0f;
        if constexpr (std::is_same_v<Out, float>) {
          out[m * n + row] = sum + b;
        } else {
          out[m * n + row] = FromFloat<Out>(sum + b);
        }
      }
    }
  }
}

template <typename T, typename Out>
void Launch(int64_t m, const T* x, const T* w, const T* bias, int64_t n, int64_t k, Out* out, cudaStream_t stream) {
  const int blocks = static_cast<int>(std::min<int64_t>((n + kWarps - 1) / kWarps, 65535));
  switch (m) {
#define LATTICE_GEMV_CASE(M) \
  case M:                    \
    GemvKernel<T, Out, M><<<blocks, kWarps * 32, 0, stream>>>(x, w, bias, n, k, out); break;
    LATTICE_GEMV_CASE(1)
    LATTICE_GEMV_CASE(2)
    LATTICE_GEMV_CASE(3)
    LATTICE_GEMV_CASE(4)
    LATTICE_GEMV_CASE(5)
    LATTICE_GEMV_CASE(6)
    LATTICE_GEMV_CASE(7)
    LATTICE_GEMV_CASE(8)
#undef LATTICE_GEMV_CASE
  }
  LATTICE_CUDA_LAUNCH_CHECK();
}

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

bool SkinnyGemm(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& out, cudaStream_t stream) {
  const int64_t m = x.dim(0), k = x.dim(1), n = w.dim(0);
  const DType dtype = x.dtype();
  if (m < 1 || m > kMaxSkinnyRows || dtype == DType::kF32 || k % 8 != 0) return false;
  if (!Aligned16(x.raw_data()) || !Aligned16(w.raw_data())) return false;
  if (out.dtype() != dtype && out.dtype() != DType::kF32) return false;
  DispatchFloat(dtype, [&](auto* type) {
    using T = std::remove_pointer_t<decltype(type)>;
    if constexpr (!std::is_same_v<T, float>) {
      const T* b = bias.defined() ? Ptr<T>(bias) : nullptr;
      if (out.dtype() == DType::kF32) {
        Launch<T, float>(m, Ptr<T>(x), Ptr<T>(w), b, n, k, MutablePtr<float>(out), stream);
      } else {
        Launch<T, T>(m, Ptr<T>(x), Ptr<T>(w), b, n, k, MutablePtr<T>(out), stream);
      }
    }
  });
  return true;
}

}  // namespace lattice::cuda
