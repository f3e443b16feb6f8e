// Gated MLP (see mlp.h).
#include "worker/layers/mlp.h"

#include "kernels/cpu/ops.h"

namespace lattice {

absl::StatusOr<GatedMlp> GatedMlp::Load(Checkpoint& checkpoint, const std::string& prefix,
                                        int64_t hidden_size, int64_t intermediate_size,
                                        bool has_bias, const GatedMlpNames& names) {
  GatedMlp mlp;
  const std::string gate_up[] = {prefix + "." + names.gate, prefix + "." + names.up};
  const int64_t sizes[] = {intermediate_size, intermediate_size};
  absl::StatusOr<Linear> fused = Linear::LoadFused(checkpoint, gate_up, sizes, hidden_size, has_bias);
  if (!fused.ok()) return fused.status();
  mlp.gate_up_proj_ = *std::move(fused);
  absl::StatusOr<Linear> down =
      Linear::Load(checkpoint, prefix + "." + names.down, hidden_size, intermediate_size, has_bias);
  if (!down.ok()) return down.status();
  mlp.down_proj_ = *std::move(down);
  return mlp;
}

Tensor GatedMlp::Forward(const Tensor& x) const {
  const Tensor gate_up = gate_up_proj_.Forward(x);
  Tensor activated = Tensor::Empty(DType::kF32, {x.dim(0), gate_up.dim(1) / 2});
  cpu::SiluAndMul(gate_up, activated);
  return down_proj_.Forward(activated);
}

}  // namespace lattice
