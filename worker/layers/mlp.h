// GatedMlp: down(silu(gate x) * up x), with gate and up fused into one projection.
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
                                       const GatedMlpNames& names = {});
  // x [T, hidden] -> [T, hidden].
  Tensor Forward(const Tensor& x) const;

 private:
  Linear gate_up_proj_;
  Linear down_proj_;
};

}  // namespace lattice
