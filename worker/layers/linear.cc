// Linear layers and their checkpoint shards (see linear.h).
#include "worker/layers/linear.h"

#include <cstring>
#include <vector>

#include "kernels/cpu/ops.h"

namespace lattice {

absl::StatusOr<Tensor> LoadRowSlices(Checkpoint& checkpoint, std::span<const RowSlice> slices,
                                     const Shape& row_shape) {
  LATTICE_CHECK(!slices.empty());
  int64_t total_rows = 0;
  for (const RowSlice& s : slices) total_rows += s.rows.size();
  Shape stacked_shape = {total_rows};
  stacked_shape.insert(stacked_shape.end(), row_shape.begin(), row_shape.end());
  Tensor stacked = Tensor::Empty(DType::kF32, stacked_shape);
  int64_t row = 0;
  for (const RowSlice& s : slices) {
    Shape full_shape = {s.full_rows};
    full_shape.insert(full_shape.end(), row_shape.begin(), row_shape.end());
    absl::StatusOr<Tensor> full = checkpoint.Load(s.name, full_shape);
    if (!full.ok()) return full.status();
    const Tensor part = full->Slice(s.rows.begin, s.rows.end);
    Tensor dst = stacked.Slice(row, row + s.rows.size());
    std::memcpy(dst.raw_data(), part.raw_data(), part.nbytes());
    row += s.rows.size();
  }
  return stacked;
}

absl::StatusOr<Tensor> LoadColumnSlice(Checkpoint& checkpoint, const std::string& name, int64_t rows,
                                       int64_t full_cols, RowRange cols) {
  absl::StatusOr<Tensor> full = checkpoint.Load(name, {rows, full_cols});
  if (!full.ok()) return full.status();
  if (cols.begin == 0 && cols.end == full_cols) return full;
  Tensor out = Tensor::Empty(DType::kF32, {rows, cols.size()});
  const float* src = full->data<float>();
  float* dst = out.data<float>();
  for (int64_t r = 0; r < rows; ++r) {
    std::memcpy(dst + r * cols.size(), src + r * full_cols + cols.begin, cols.size() * sizeof(float));
  }
  return out;
}

absl::StatusOr<ColumnParallelLinear> ColumnParallelLinear::Load(Checkpoint& checkpoint,
                                                                std::span<const RowSlice> prefixes,
                                                                int64_t in_features, bool has_bias) {
  std::vector<RowSlice> weights(prefixes.begin(), prefixes.end());
  std::vector<RowSlice> biases(prefixes.begin(), prefixes.end());
  for (RowSlice& s : weights) s.name += ".weight";
  for (RowSlice& s : biases) s.name += ".bias";
  ColumnParallelLinear linear;
  absl::StatusOr<Tensor> weight = LoadRowSlices(checkpoint, weights, {in_features});
  if (!weight.ok()) return weight.status();
  linear.weight_ = *std::move(weight);
  if (has_bias) {
    absl::StatusOr<Tensor> bias = LoadRowSlices(checkpoint, biases, {});
    if (!bias.ok()) return bias.status();
    linear.bias_ = *std::move(bias);
  }
  return linear;
}

Tensor ColumnParallelLinear::Forward(const Tensor& x) const {
  Tensor out = Tensor::Empty(DType::kF32, {x.dim(0), out_features()});
  cpu::Linear(x, weight_, bias_, out);
  return out;
}

absl::StatusOr<Linear> Linear::Load(Checkpoint& checkpoint, const std::string& prefix,
                                    int64_t out_features, int64_t in_features, bool has_bias) {
  const RowSlice whole[] = {{prefix, out_features, {0, out_features}}};
  absl::StatusOr<ColumnParallelLinear> impl = ColumnParallelLinear::Load(checkpoint, whole, in_features, has_bias);
  if (!impl.ok()) return impl.status();
  Linear linear;
  linear.impl_ = *std::move(impl);
  return linear;
}

absl::StatusOr<RowParallelLinear> RowParallelLinear::Load(Checkpoint& checkpoint, const std::string& prefix,
                                                          int64_t out_features, int64_t full_in_features,
                                                          RowRange in_shard, bool has_bias) {
  RowParallelLinear linear;
  absl::StatusOr<Tensor> weight =
      LoadColumnSlice(checkpoint, prefix + ".weight", out_features, full_in_features, in_shard);
  if (!weight.ok()) return weight.status();
  linear.weight_ = *std::move(weight);
  if (has_bias) {
    absl::StatusOr<Tensor> bias = checkpoint.Load(prefix + ".bias", {out_features});
    if (!bias.ok()) return bias.status();
    linear.bias_ = *std::move(bias);
  }
  return linear;
}

Tensor RowParallelLinear::ForwardPartial(const Tensor& x) const {
  Tensor out = Tensor::Empty(DType::kF32, {x.dim(0), weight_.dim(0)});
  cpu::Linear(x, weight_, Tensor(), out);
  return out;
}

void RowParallelLinear::AddBias(Tensor& out) const {
  if (!bias_.defined()) return;
  const int64_t rows = out.dim(0), cols = out.dim(1);
  float* o = out.data<float>();
  const float* b = bias_.data<float>();
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) o[r * cols + c] += b[c];
  }
}

Tensor RowParallelLinear::Forward(const Tensor& x, Communicator& tp) const {
  Tensor out = ForwardPartial(x);
  if (tp.size() > 1) tp.AllReduce(out);
  AddBias(out);
  return out;
}

}  // namespace lattice
