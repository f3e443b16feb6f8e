// Dense GEMMs: out[M, N] = x[M, K] @ w[N, K]^T (+ bias[N]), the Linear of every
// projection and the LM head. cuBLASLt, or for decode-sized M (<= 8) in bf16/f16 our
// bandwidth-bound skinny kernel (gemv.h) where it is faster: the first eager call of
// each such shape times both and remembers the winner (a shape first seen while a
// graph is being captured takes cuBLASLt). The skinny kernel gets a small allowance
// (3% + 1.5 us): it overlaps the previous kernel (programmatic launch), which timing
// it alone cannot show. Row-major tensors as
// everywhere else; bf16/f16 with f32 accumulation (the output may be f32: the LM
// head's logits), f32 in plain f32 (no TF32: f32 is the exact path).
// A plan (layouts plus the heuristic's algorithm) is cached per shape, so a step
// only launches; with the workspace fixed at construction the launches can be
// captured in CUDA graphs. One owner thread.
#pragma once

#include <cstdint>
#include <functional>
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
  // out = SiluAndMul(gate_up) @ w^T (+ bias): gate_up [M, 2K], w [N, K]. Where the
  // skinny kernel runs the shape, it computes the activation as it reads its input;
  // otherwise SiluAndMul (ops.h) writes `act` [M, K] (the caller's scratch) and
  // Linear reads it.
  void LinearSiluAndMul(const Tensor& gate_up, const Tensor& w, const Tensor& bias, Tensor& act, Tensor& out,
                        cudaStream_t stream = nullptr);
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
  // True: `skinny` runs faster than `other`, given the allowance above; decided on the
  // first call of `key` (timing both) and remembered in `decisions`. False while a
  // graph is being captured and the key is new.
  bool SkinnyWins(const Key& key, std::map<Key, bool>& decisions, cudaStream_t stream,
                  const std::function<void()>& skinny, const std::function<void()>& other);

  std::map<Key, std::unique_ptr<Plan>> plans_;
  std::map<Key, bool> skinny_wins_;  // plain skinny kernel vs cuBLASLt
  std::map<Key, bool> fused_wins_;   // fused SiLU-and-mul skinny kernel vs SiluAndMul + Linear
  Skinny skinny_ = Skinny::kAuto;
};

}  // namespace lattice::cuda
