// Linear layers loaded from checkpoints (see linear.h).
#include "worker/layers/linear.h"

#include <cstring>
#include <vector>

#include "kernels/cpu/ops.h"

namespace lattice {

absl::StatusOr<Tensor> LoadTensor(Checkpoint& checkpoint, const std::string& name, const Shape& shape) {
  return checkpoint.Load(name, shape);
}

absl::StatusOr<Tensor> LoadStacked(Checkpoint& checkpoint, std::span<const std::string> names,
                                   std::span<const int64_t> rows, const Shape& row_shape) {
  LATTICE_CHECK(names.size() == rows.size() && !names.empty());
  int64_t total_rows = 0;
  for (int64_t r : rows) total_rows += r;
  Shape stacked_shape = {total_rows};
  stacked_shape.insert(stacked_shape.end(), row_shape.begin(), row_shape.end());
  Tensor stacked = Tensor::Empty(DType::kF32, stacked_shape);
  int64_t row = 0;
  for (size_t i = 0; i < names.size(); ++i) {
    Shape shape = {rows[i]};
    shape.insert(shape.end(), row_shape.begin(), row_shape.end());
    absl::StatusOr<Tensor> part = checkpoint.Load(names[i], shape);
    if (!part.ok()) return part.status();
    Tensor dst = stacked.Slice(row, row + rows[i]);
    std::memcpy(dst.raw_data(), part->raw_data(), part->nbytes());
    row += rows[i];
  }
  return stacked;
}

absl::StatusOr<Linear> Linear::Load(Checkpoint& checkpoint, const std::string& prefix,
                                    int64_t out_features, int64_t in_features, bool has_bias) {
  const std::string prefixes[] = {prefix};
  const int64_t outs[] = {out_features};
  return LoadFused(checkpoint, prefixes, outs, in_features, has_bias);
}

absl::StatusOr<Linear> Linear::LoadFused(Checkpoint& checkpoint,
                                         std::span<const std::string> prefixes,
                                         std::span<const int64_t> out_features, int64_t in_features,
                                         bool has_bias) {
  std::vector<std::string> weights, biases;
  for (const std::string& p : prefixes) {
    weights.push_back(p + ".weight");
    biases.push_back(p + ".bias");
  }
  Linear linear;
  absl::StatusOr<Tensor> weight = LoadStacked(checkpoint, weights, out_features, {in_features});
  if (!weight.ok()) return weight.status();
  linear.weight_ = *std::move(weight);
  if (has_bias) {
    absl::StatusOr<Tensor> bias = LoadStacked(checkpoint, biases, out_features, {});
    if (!bias.ok()) return bias.status();
    linear.bias_ = *std::move(bias);
  }
  return linear;
}

Tensor Linear::Forward(const Tensor& x) const {
  Tensor out = Tensor::Empty(DType::kF32, {x.dim(0), out_features()});
  cpu::Linear(x, weight_, bias_, out);
  return out;
}

}  // namespace lattice
