// Dense GEMMs: out[M, N] = x[M, K] @ w[N, K]^T (+ bias[N]), the Linear of every
// projection and the LM head. cuBLASLt, or for decode-sized M (<= 8) in bf16/f16 our
// bandwidth-bound skinny kernel (gemv.h) where it is faster: the first eager call of
// each such shape times both and remembers the winner (a shape first seen while a
// graph is being captured takes cuBLASLt). Row-major tensors as
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
  // kAuto: the faster of the two for each skinny shape; kAlways / kNever force one
  // (tests and benchmarks of each path).
  enum class Skinny { kAuto, kAlways, kNever };
  void set_skinny(Skinny mode) { skinny_ = mode; }

 private:
  struct Plan;
  using Key = std::tuple<int64_t, int64_t, int64_t, int, int, bool>;  // M, N, K, dtype, out dtype, bias
  const Plan& PlanFor(const Key& key);

  cublasLtHandle_t handle_ = nullptr;
  std::shared_ptr<Buffer> workspace_;
  // True: the shape runs faster in the skinny kernel than in cuBLASLt.
  bool SkinnyWins(const Key& key, const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& out,
                  cudaStream_t stream);

  std::map<Key, std::unique_ptr<Plan>> plans_;
  std::map<Key, bool> skinny_wins_;
  Skinny skinny_ = Skinny::kAuto;
};

}  // namespace lattice::cuda
