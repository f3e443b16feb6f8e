// Skinny GEMMs for decode: out[M, N] = x[M, K] w[N, K]^T (+ bias) for M <= 8, where a
// step reads every weight once and the work is pure bandwidth. cuBLASLt's kernels
// for M = 1..8 leave bandwidth unused (see bench/results); here each warp streams
// whole weight rows with 16-byte loads, several in flight, multiplies them with the
// M input rows (small, served from L1) and reduces across the warp in f32.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/gemv.h"

namespace lattice::cuda {
namespace {

constexpr int kThreads = 256;  // one block per kRows weight rows, its threads split K

template <typename T>
__device__ __forceinline__ float Dot8(const uint4& a, const uint4& b) {
  const T* x = reinterpret_cast<const T*>(&a);
  const T* y = reinterpret_cast<const T*>(&b);
  float sum = 0.0f;
#pragma unroll
  for (int i = 0; i < 8; ++i) sum += ToFloat(x[i]) * ToFloat(y[i]);
  return sum;
}

// Block b computes out[:, b * kRows + r] for r < kRows: every thread takes 16-byte
// chunks c = tid, tid + 256, ... of K, loads the kRows weight chunks first (kRows
// loads in flight per thread, the input chunk reused for all of them), accumulates
// in f32, and the block reduces each (row, m) pair at the end.
template <typename T, typename Out, int kM, int kRows>
__global__ void __launch_bounds__(kThreads)
    SkinnyKernel(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias, int64_t n, int64_t k,
                 Out* __restrict__ out) {
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kRows;
  const int64_t chunks = k / 8;
  float acc[kRows][kM];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
#pragma unroll
    for (int m = 0; m < kM; ++m) acc[r][m] = 0.0f;
  }
  const uint4* wbase = reinterpret_cast<const uint4*>(w);
  for (int64_t c = threadIdx.x; c < chunks; c += kThreads) {
    uint4 wv[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const int64_t row = row0 + r;
      wv[r] = row < n ? __ldg(wbase + row * chunks + c) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int m = 0; m < kM; ++m) {
      const uint4 xv = __ldg(reinterpret_cast<const uint4*>(x) + m * chunks + c);
#pragma unroll
      for (int r = 0; r < kRows; ++r) acc[r][m] += Dot8<T>(wv[r], xv);
    }
  }
  __shared__ float partial[kThreads / 32][kRows * kM];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
#pragma unroll
    for (int m = 0; m < kM; ++m) {
      const float v = WarpSum(acc[r][m]);
      if (lane == 0) partial[warp][r * kM + m] = v;
    }
  }
  __syncthreads();
  if (threadIdx.x < kRows * kM) {
    const int r = threadIdx.x / kM, m = threadIdx.x % kM;
    const int64_t row = row0 + r;
    if (row < n) {
      float sum = bias != nullptr ? ToFloat(bias[row]) : 0.0f;
#pragma unroll
      for (int i = 0; i < kThreads / 32; ++i) sum += partial[i][r * kM + m];
      if constexpr (std::is_same_v<Out, float>) {
        out[m * n + row] = sum;
      } else {
        out[m * n + row] = FromFloat<Out>(sum);
      }
    }
  }
}

template <typename T, typename Out, int kM>
void LaunchRows(const T* x, const T* w, const T* bias, int64_t n, int64_t k, Out* out, cudaStream_t stream) {
  // Fewer rows per block for more inputs: registers hold kRows * kM accumulators.
  constexpr int kRows = kM <= 2 ? 8 : 4;
  const int64_t blocks = (n + kRows - 1) / kRows;
  SkinnyKernel<T, Out, kM, kRows><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(x, w, bias, n, k, out);
}

template <typename T, typename Out>
void Launch(int64_t m, const T* x, const T* w, const T* bias, int64_t n, int64_t k, Out* out, cudaStream_t stream) {
  switch (m) {
#define LATTICE_SKINNY_CASE(M) \
  case M:                      \
    LaunchRows<T, Out, M>(x, w, bias, n, k, out, stream); break;
    LATTICE_SKINNY_CASE(1)
    LATTICE_SKINNY_CASE(2)
    LATTICE_SKINNY_CASE(3)
    LATTICE_SKINNY_CASE(4)
    LATTICE_SKINNY_CASE(5)
    LATTICE_SKINNY_CASE(6)
    LATTICE_SKINNY_CASE(7)
    LATTICE_SKINNY_CASE(8)
#undef LATTICE_SKINNY_CASE
  }
  LATTICE_CUDA_LAUNCH_CHECK();
}

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

bool SkinnyGemmApplies(const Tensor& x, const Tensor& w, const Tensor& out) {
  const int64_t m = x.dim(0), k = x.dim(1);
  const DType dtype = x.dtype();
  if (m < 1 || m > kMaxSkinnyRows || dtype == DType::kF32 || k % 8 != 0) return false;
  if (!Aligned16(x.raw_data()) || !Aligned16(w.raw_data())) return false;
  return out.dtype() == dtype || out.dtype() == DType::kF32;
}

void SkinnyGemm(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& out, cudaStream_t stream) {
  LATTICE_CHECK(SkinnyGemmApplies(x, w, out));
  const int64_t m = x.dim(0), k = x.dim(1), n = w.dim(0);
  const DType dtype = x.dtype();
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
}

}  // namespace lattice::cuda
