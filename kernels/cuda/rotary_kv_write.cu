// The fused per-head q/k RMSNorm + rotary embedding + paged KV-cache write (see ops.h),
// run on the QKV projection's output right before paged attention (attention.cu).
#include <cmath>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.h"

namespace lattice::cuda {
namespace {

// ---------------------------------------------------------------------------------------
// QkNormRotaryKvWrite: one warp per (token, head) of the fused qkv row.

template <typename T>
__global__ void QkNormRotaryKvWriteKernel(T* qkv, int64_t num_tokens, int num_heads, int num_kv_heads, int head_dim,
                                          const T* __restrict__ q_norm, const T* __restrict__ k_norm, float eps,
                                          const int32_t* __restrict__ positions, const float* __restrict__ inv_freq,
                                          int half, const int32_t* __restrict__ freq_rows, float rope_scale,
                                          const int32_t* __restrict__ slot_mapping, T* __restrict__ k_cache,
                                          T* __restrict__ v_cache) {
  WaitForPriorGrids();
  LaunchDependentGrids();
  const int heads = num_heads + 2 * num_kv_heads;
  const int64_t warp = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (warp >= num_tokens * heads) return;
  const int64_t token = warp / heads;
  const int head = static_cast<int>(warp % heads);
  T* x = qkv + warp * head_dim;
  const int64_t slot = slot_mapping[token];

  if (head >= num_heads + num_kv_heads) {  // a V head: straight to the cache
    if (slot < 0) return;
    T* dst = v_cache + (slot * num_kv_heads + (head - num_heads - num_kv_heads)) * head_dim;
    for (int d = lane; d < head_dim; d += 32) dst[d] = x[d];
    return;
  }
  const bool is_q = head < num_heads;
  const T* weight = is_q ? q_norm : k_norm;
  float inv_rms = 1.0f;
  if (weight != nullptr) {
    float sum = 0.0f;
    for (int d = lane; d < head_dim; d += 32) {
      const float v = ToFloat(x[d]);
      sum += v * v;
    }
    inv_rms = rsqrtf(WarpSum(sum) / static_cast<float>(head_dim) + eps);
  }
  // Every lane has read its inputs (WarpSum synchronises), so writing in place is safe.
  auto normed = [&](int d) {
    const float v = ToFloat(x[d]) * inv_rms;
    return weight != nullptr ? v * ToFloat(weight[d]) : v;
  };
  T* cache_row = nullptr;
  if (!is_q && slot >= 0) cache_row = k_cache + (slot * num_kv_heads + (head - num_heads)) * head_dim;
  const float position = static_cast<float>(positions[token]);
  const float* freqs = inv_freq + static_cast<int64_t>(freq_rows != nullptr ? freq_rows[token] : 0) * half;
  for (int j = lane; j < half; j += 32) {
    const float x1 = normed(j), x2 = normed(j + half);
    float sin_v, cos_v;
    sincosf(position * freqs[j], &sin_v, &cos_v);  // accurate: the angle reaches 1e5 radians
    cos_v *= rope_scale;
    sin_v *= rope_scale;
    const T y1 = FromFloat<T>(x1 * cos_v - x2 * sin_v);
    const T y2 = FromFloat<T>(x2 * cos_v + x1 * sin_v);
    x[j] = y1;
    x[j + half] = y2;
    if (cache_row != nullptr) {
      cache_row[j] = y1;
      cache_row[j + half] = y2;
    }
  }
  for (int d = 2 * half + lane; d < head_dim; d += 32) {
    const T y = FromFloat<T>(normed(d));
    x[d] = y;
    if (cache_row != nullptr) cache_row[d] = y;
  }
}

}  // namespace

void QkNormRotaryKvWrite(Tensor& qkv, int64_t num_heads, int64_t num_kv_heads, const Tensor& q_norm,
                         const Tensor& k_norm, float eps, const Tensor& positions, const Tensor& inv_freq,
                         const Tensor& freq_rows, float rope_scale, const Tensor& slot_mapping, Tensor& k_cache,
                         Tensor& v_cache, cudaStream_t stream) {
  const DType dtype = qkv.dtype();
  CheckDeviceTensor(qkv, dtype, "qkv");
  CheckDeviceTensor(k_cache, dtype, "k_cache");
  CheckDeviceTensor(v_cache, dtype, "v_cache");
  LATTICE_CHECK(k_cache.ndim() == 4 && v_cache.shape() == k_cache.shape() && k_cache.dim(2) == num_kv_heads);
  const int64_t head_dim = k_cache.dim(3);
  const int64_t num_tokens = qkv.dim(0);
  LATTICE_CHECK(qkv.ndim() == 2 && qkv.dim(1) == (num_heads + 2 * num_kv_heads) * head_dim);
  for (const Tensor* norm : {&q_norm, &k_norm}) {
    if (!norm->defined()) continue;
    CheckDeviceTensor(*norm, dtype, "q_norm / k_norm");
    LATTICE_CHECK(norm->numel() == head_dim);
  }
  CheckDeviceTensor(positions, DType::kI32, "positions");
  CheckDeviceTensor(slot_mapping, DType::kI32, "slot_mapping");
  CheckDeviceTensor(inv_freq, DType::kF32, "inv_freq");
  LATTICE_CHECK(positions.numel() == num_tokens && slot_mapping.numel() == num_tokens);
  LATTICE_CHECK(inv_freq.ndim() == 2 && 2 * inv_freq.dim(1) <= head_dim);
  if (freq_rows.defined()) {
    CheckDeviceTensor(freq_rows, DType::kI32, "freq_rows");
    LATTICE_CHECK(freq_rows.numel() == num_tokens);
  }
  const int64_t warps = num_tokens * (num_heads + 2 * num_kv_heads);
  if (warps == 0) return;
  constexpr int kWarpsPerBlock = 4;
  const int64_t blocks = (warps + kWarpsPerBlock - 1) / kWarpsPerBlock;
  LATTICE_CHECK(blocks < (int64_t{1} << 31));
  DispatchFloat(dtype, [&](auto* type) {
    using T = std::remove_pointer_t<decltype(type)>;
    LaunchKernel(
        LaunchMode::kProgrammatic, QkNormRotaryKvWriteKernel<T>, static_cast<unsigned>(blocks), kWarpsPerBlock * 32, 0,
        stream, MutablePtr<T>(qkv), num_tokens, static_cast<int>(num_heads), static_cast<int>(num_kv_heads),
        static_cast<int>(head_dim), q_norm.defined() ? Ptr<T>(q_norm) : nullptr,
        k_norm.defined() ? Ptr<T>(k_norm) : nullptr, eps, Ptr<int32_t>(positions), Ptr<float>(inv_freq),
        static_cast<int>(inv_freq.dim(1)), freq_rows.defined() ? Ptr<int32_t>(freq_rows) : nullptr, rope_scale,
        Ptr<int32_t>(slot_mapping), MutablePtr<T>(k_cache), MutablePtr<T>(v_cache));
  });
  LATTICE_CUDA_LAUNCH_CHECK();
}

}  // namespace lattice::cuda
