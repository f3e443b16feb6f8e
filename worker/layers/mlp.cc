// Gated MLP (see mlp.h).
#include "worker/layers/mlp.h"

#include "kernels/cpu/ops.h"

namespace lattice {

absl::StatusOr<GatedMlp> GatedMlp::Load(Checkpoint& checkpoint, const std::string& prefix,
                                        int64_t hidden_size, int64_t intermediate_size, bool has_bias,
                                        Shard tp, const GatedMlpNames& names) {
  const RowRange local = EvenSplit(intermediate_size, tp);
  GatedMlp mlp;
  const RowSlice gate_up[] = {{prefix + "." + names.gate, intermediate_size, local},
                              {prefix + "." + names.up, intermediate_size, local}};
  absl::StatusOr<ColumnParallelLinear> fused =
      ColumnParallelLinear::Load(checkpoint, gate_up, hidden_size, has_bias);
  if (!fused.ok()) return fused.status();
  mlp.gate_up_proj_ = *std::move(fused);
  absl::StatusOr<RowParallelLinear> down = RowParallelLinear::Load(
      checkpoint, prefix + "." + names.down, hidden_size, intermediate_size, local, has_bias);
  if (!down.ok()) return down.status();
  mlp.down_proj_ = *std::move(down);
  return mlp;
}

Tensor GatedMlp::ForwardPartial(const Tensor& x) const {
  const Tensor gate_up = gate_up_proj_.Forward(x);
  Tensor activated = Tensor::Empty(DType::kF32, {x.dim(0), gate_up.dim(1) / 2});
  cpu::SiluAndMul(gate_up, activated);
  return down_proj_.ForwardPartial(activated);
}

Tensor GatedMlp::Forward(const Tensor& x, Communicator& tp) const {
  Tensor out = ForwardPartial(x);
  if (tp.size() > 1) tp.AllReduce(out);
  AddBias(out);
  return out;
}

}  // namespace lattice
