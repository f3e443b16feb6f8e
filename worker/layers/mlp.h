// GatedMlp: down(silu(gate x) * up x). Gate and up are fused into one column-parallel
// projection (each TP rank holds its slice of the intermediate width) and down is
// row-parallel.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "worker/layers/linear.h"

namespace lattice {

// Checkpoint names of a gated MLP's three projections under its prefix.
struct GatedMlpNames {
  std::string gate = "gate_proj";
  std::string up = "up_proj";
  std::string down = "down_proj";
};

class GatedMlp {
 public:
  static absl::StatusOr<GatedMlp> Load(Checkpoint& checkpoint, const std::string& prefix,
                                       int64_t hidden_size, int64_t intermediate_size, bool has_bias,
                                       Shard tp, const GatedMlpNames& names = {});
  // x [T, hidden] -> [T, hidden], all-reduced over `tp`.
  Tensor Forward(const Tensor& x, Communicator& tp) const;
  // This rank's partial sum, without the down bias (see RowParallelLinear).
  Tensor ForwardPartial(const Tensor& x) const;
  void AddBias(Tensor& out) const { down_proj_.AddBias(out); }
  const ColumnParallelLinear& gate_up_proj() const { return gate_up_proj_; }
  const RowParallelLinear& down_proj() const { return down_proj_; }

 private:
  ColumnParallelLinear gate_up_proj_;
  RowParallelLinear down_proj_;
};

}  // namespace lattice
