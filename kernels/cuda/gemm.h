// Dense GEMMs: out[M, N] = x[M, K] @ w[N, K]^T (+ bias[N]), the Linear of every
// projection and the LM head. cuBLASLt, except decode-sized M (<= 8) in bf16/f16,
// which goes to our bandwidth-bound skinny kernel (gemv.h). Row-major tensors as
// everywhere else; bf16/f16 with f32 accumulation (the output may be f32: the LM
// head's logits), f32 in plain f32 (no TF32: f32 is the exact path).
// A plan (layouts plus the heuristic's algorithm) is cached per shape, so a step
// only launches; with the workspace fixed at construction the launches can be
// captured in CUDA graphs. One owner thread.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <tuple>

#include <cublasLt.h>
#include <cuda_runtime.h>

#include "kernels/tensor.h"

namespace lattice::cuda {

class Gemm {
 public:
  Gemm();
  ~Gemm();
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;

  // out = x @ w^T (+ bias, when defined). x [M, K], w [N, K], bias [N], out [M, N]; one
  // float dtype for x, w and bias; out the same or f32.
  void Linear(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& out, cudaStream_t stream = nullptr);
  // Off: every shape through cuBLASLt (for benchmarks comparing the two).
  void set_skinny(bool on) { skinny_ = on; }

 private:
  struct Plan;
  using Key = std::tuple<int64_t, int64_t, int64_t, int, int, bool>;  // M, N, K, dtype, out dtype, bias
  const Plan& PlanFor(const Key& key);

  cublasLtHandle_t handle_ = nullptr;
  std::shared_ptr<Buffer> workspace_;
  std::map<Key, std::unique_ptr<Plan>> plans_;
  bool skinny_ = true;
};

}  // namespace lattice::cuda
