// Skinny GEMMs for decode: out[M, N] = x[M, K] w[N, K]^T (+ bias) for M <= 8, where a
// step reads every weight once and the work is pure bandwidth. cuBLASLt's kernels
// for M = 1..8 leave bandwidth unused on the small projections (see bench/results).
//
// One persistent wave: the grid is as many blocks as fit on the GPU at once, and block
// b owns an even share of the rows (they differ by at most one row, so no SM waits on
// a last partial wave). It walks its rows in tiles of kRows; within a tile each thread
// takes the 16-byte chunks c = tid, tid + 256, ... of K of all kRows rows. The loads
// of the next step (the next chunk column, or the first one of the next tile) are
// issued before the current step's multiply-adds, so a thread always has kRows to
// 2 kRows weight loads in flight, across tile boundaries too. Each tile ends with a
// warp-shuffle and shared-memory reduction in f32.
//
// The kernel launches programmatically (common.cuh): its first weight loads go out
// before it waits for the previous kernel, so they overlap that kernel's tail (the
// weights are constants; only x depends on it). With SkinnyInput::kSiluAndMul (M = 1)
// it reads x as [M, 2K] (gate | up) and multiplies by silu(gate) * up rounded to the
// dtype, the exact input SiluAndMul would have written: the down projection without
// that kernel. (At M > 1 every thread would recompute M activations per chunk, more
// than the kernel it saves.)
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/gemv.h"

namespace lattice::cuda {
namespace {

constexpr int kThreads = 256;

// A 16-byte weight load that skips L1 (each weight is read once; L1 keeps x).
__device__ __forceinline__ uint4 LoadStreaming(const uint4* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

// The 8 input values of chunk c of row m, as f32 (after rounding to T where fused).
template <typename T, bool kSiluMul>
__device__ __forceinline__ void LoadInput(const T* x, int64_t m, int64_t k, int64_t c, float (&v)[8]) {
  if constexpr (!kSiluMul) {
    const uint4 raw = __ldg(reinterpret_cast<const uint4*>(x + m * k) + c);
    const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int i = 0; i < 8; ++i) v[i] = ToFloat(e[i]);
  } else {
    const uint4 g = __ldg(reinterpret_cast<const uint4*>(x + m * 2 * k) + c);
    const uint4 u = __ldg(reinterpret_cast<const uint4*>(x + m * 2 * k + k) + c);
    const T* ge = reinterpret_cast<const T*>(&g);
    const T* ue = reinterpret_cast<const T*>(&u);
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      v[i] = ToFloat(FromFloat<T>(SiluMul(ToFloat(ge[i]), ToFloat(ue[i]))));
    }
  }
}

template <typename T>
__device__ __forceinline__ float Dot8(const uint4& w, const float (&x)[8]) {
  const T* e = reinterpret_cast<const T*>(&w);
  float sum = 0.0f;
#pragma unroll
  for (int i = 0; i < 8; ++i) sum += ToFloat(e[i]) * x[i];
  return sum;
}

template <typename T, typename Out, int kM, int kRows, bool kSiluMul>
__global__ void __launch_bounds__(kThreads)
    SkinnyKernel(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias, int64_t n, int64_t k,
                 Out* __restrict__ out) {
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int64_t chunks = k / 8;
  const int64_t row_begin = n * blockIdx.x / gridDim.x, row_end = n * (blockIdx.x + 1) / gridDim.x;
  const int64_t num_tiles = (row_end - row_begin + kRows - 1) / kRows;
  const int64_t steps = tid < chunks ? (chunks - 1 - tid) / kThreads + 1 : 0;  // this thread's chunks per row
  const uint4* wbase = reinterpret_cast<const uint4*>(w);
  auto load = [&](int64_t tile, int64_t step, uint4 (&wv)[kRows]) {
    const int64_t row0 = row_begin + tile * kRows, c = tid + step * kThreads;
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      wv[r] = row0 + r < row_end ? LoadStreaming(wbase + (row0 + r) * chunks + c) : make_uint4(0, 0, 0, 0);
    }
  };

  uint4 cur[kRows];
  if (num_tiles > 0 && steps > 0) load(0, 0, cur);
  WaitForPriorGrids();  // x (and out) belong to the previous kernels
  LaunchDependentGrids();

  __shared__ float partial[2][kThreads / 32][kRows * kM];
  for (int64_t tile = 0; tile < num_tiles; ++tile) {
    float acc[kRows][kM];
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
#pragma unroll
      for (int m = 0; m < kM; ++m) acc[r][m] = 0.0f;
    }
    for (int64_t step = 0; step < steps; ++step) {
      uint4 next[kRows];
      const bool last = step + 1 == steps;
      if (!last) {
        load(tile, step + 1, next);
      } else if (tile + 1 < num_tiles) {
        load(tile + 1, 0, next);
      }
      const int64_t c = tid + step * kThreads;
#pragma unroll
      for (int m = 0; m < kM; ++m) {
        float xv[8];
        LoadInput<T, kSiluMul>(x, m, k, c, xv);
#pragma unroll
        for (int r = 0; r < kRows; ++r) acc[r][m] += Dot8<T>(cur[r], xv);
      }
#pragma unroll
      for (int r = 0; r < kRows; ++r) cur[r] = next[r];
    }
    // Double-buffered by tile parity: the next tile's partials never overwrite these
    // before every thread has passed the next barrier, after this tile's readers.
    float (*p)[kRows * kM] = partial[tile & 1];
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
#pragma unroll
      for (int m = 0; m < kM; ++m) {
        const float v = WarpSum(acc[r][m]);
        if (lane == 0) p[warp][r * kM + m] = v;
      }
    }
    __syncthreads();
    if (tid < kRows * kM) {
      const int r = tid / kM, m = tid % kM;
      const int64_t row = row_begin + tile * kRows + r;
      if (row < row_end) {
        float sum = bias != nullptr ? ToFloat(bias[row]) : 0.0f;
#pragma unroll
        for (int i = 0; i < kThreads / 32; ++i) sum += p[i][r * kM + m];
        if constexpr (std::is_same_v<Out, float>) {
          out[m * n + row] = sum;
        } else {
          out[m * n + row] = FromFloat<Out>(sum);
        }
      }
    }
  }
}

// Blocks of `kernel` resident per SM (at least 1), cached per kernel.
template <typename Kernel>
int BlocksPerSm(Kernel kernel) {
  static std::atomic<int> cached{0};
  int blocks = cached.load(std::memory_order_relaxed);
  if (blocks == 0) {
    LATTICE_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, kThreads, 0));
    blocks = std::max(blocks, 1);
    cached.store(blocks, std::memory_order_relaxed);
  }
  return blocks;
}

template <typename T, typename Out, int kM, bool kSiluMul>
void LaunchRows(const T* x, const T* w, const T* bias, int64_t n, int64_t k, Out* out, cudaStream_t stream) {
  // Fewer rows per tile for more inputs: registers hold kRows * kM accumulators (and
  // 2 kRows weight vectors); at M = 1 that is 124 registers, two blocks per SM.
  constexpr int kRows = kM == 1 ? 8 : 4;
  auto kernel = SkinnyKernel<T, Out, kM, kRows, kSiluMul>;
  const int64_t wave = static_cast<int64_t>(MultiprocessorCount()) * BlocksPerSm(kernel);
  const int64_t blocks = std::max<int64_t>(1, std::min(wave, (n + kRows - 1) / kRows));
  LaunchKernel(LaunchMode::kProgrammatic, kernel, static_cast<unsigned>(blocks), kThreads, 0, stream, x, w, bias, n, k,
               out);
}

template <typename T, typename Out, bool kSiluMul>
void Launch(int64_t m, const T* x, const T* w, const T* bias, int64_t n, int64_t k, Out* out, cudaStream_t stream) {
  switch (m) {
#define LATTICE_SKINNY_CASE(M) \
  case M:                      \
    LaunchRows<T, Out, M, kSiluMul>(x, w, bias, n, k, out, stream); break;
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
}

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

bool SkinnyGemmApplies(const Tensor& x, const Tensor& w, const Tensor& out, SkinnyInput input) {
  const int64_t m = x.dim(0), k = w.dim(1);
  const DType dtype = x.dtype();
  if (m < 1 || m > kMaxSkinnyRows || dtype == DType::kF32 || k % 8 != 0) return false;
  if (!Aligned16(x.raw_data()) || !Aligned16(w.raw_data())) return false;
  if (input == SkinnyInput::kSiluAndMul) return m == 1 && x.dim(1) == 2 * k && out.dtype() == dtype;
  return x.dim(1) == k && (out.dtype() == dtype || out.dtype() == DType::kF32);
}

void SkinnyGemm(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& out, cudaStream_t stream,
                SkinnyInput input) {
  LATTICE_CHECK(SkinnyGemmApplies(x, w, out, input));
  const int64_t m = x.dim(0), k = w.dim(1), n = w.dim(0);
  const DType dtype = x.dtype();
  const bool silu_mul = input == SkinnyInput::kSiluAndMul;
  DispatchFloat(dtype, [&](auto* type) {
    using T = std::remove_pointer_t<decltype(type)>;
    if constexpr (!std::is_same_v<T, float>) {
      const T* b = bias.defined() ? Ptr<T>(bias) : nullptr;
      if (out.dtype() == DType::kF32) {
        Launch<T, float, false>(m, Ptr<T>(x), Ptr<T>(w), b, n, k, MutablePtr<float>(out), stream);
      } else if (silu_mul) {
        LaunchRows<T, T, 1, true>(Ptr<T>(x), Ptr<T>(w), b, n, k, MutablePtr<T>(out), stream);
      } else {
        Launch<T, T, false>(m, Ptr<T>(x), Ptr<T>(w), b, n, k, MutablePtr<T>(out), stream);
      }
    }
  });
}

}  // namespace lattice::cuda
