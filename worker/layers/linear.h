// Linear layers loaded from checkpoints, whole or cut into tensor-parallel shards:
//   Linear               the whole weight on every rank (routers, gates, tp == 1),
//   ColumnParallelLinear output rows split over TP ranks; output stays sharded,
//   RowParallelLinear    input columns split over TP ranks; partial outputs summed
//                        with an all-reduce (or left for the caller to reduce once).
// W is [out, in] as in Hugging Face; several checkpoint tensors may be stacked along
// the output rows (fused QKV, gate-up), each contributing its own row range.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "absl/status/statusor.h"
#include "kernels/tensor.h"
#include "parallel/communicator.h"
#include "worker/layers/sharding.h"
#include "worker/safetensors.h"

namespace lattice {

// One part of a stacked weight: rows [rows.begin, rows.end) of checkpoint tensor
// `name`, whose full shape is [full_rows, row_shape...].
struct RowSlice {
  std::string name;
  int64_t full_rows = 0;
  RowRange rows;
};

// Loads each slice and stacks them along dim 0.
absl::StatusOr<Tensor> LoadRowSlices(Checkpoint& checkpoint, std::span<const RowSlice> slices,
                                     const Shape& row_shape);
// Loads columns [cols.begin, cols.end) of the 2-D checkpoint tensor `name` [rows, full_cols].
absl::StatusOr<Tensor> LoadColumnSlice(Checkpoint& checkpoint, const std::string& name, int64_t rows,
                                       int64_t full_cols, RowRange cols);

class ColumnParallelLinear {
 public:
  ColumnParallelLinear() = default;
  // `prefix`.weight rows (and `prefix`.bias entries) of each slice, stacked. Slice names
  // are prefixes here: ".weight" and ".bias" are appended.
  static absl::StatusOr<ColumnParallelLinear> Load(Checkpoint& checkpoint,
                                                   std::span<const RowSlice> prefixes,
                                                   int64_t in_features, bool has_bias);
  // x [T, in] -> [T, local out].
  Tensor Forward(const Tensor& x) const;
  int64_t out_features() const { return weight_.dim(0); }
  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }

 private:
  Tensor weight_;
  Tensor bias_;
};

// The whole weight on every rank.
class Linear {
 public:
  Linear() = default;
  static absl::StatusOr<Linear> Load(Checkpoint& checkpoint, const std::string& prefix,
                                     int64_t out_features, int64_t in_features, bool has_bias);
  Tensor Forward(const Tensor& x) const { return impl_.Forward(x); }
  const Tensor& weight() const { return impl_.weight(); }
  const Tensor& bias() const { return impl_.bias(); }

 private:
  ColumnParallelLinear impl_;
};

class RowParallelLinear {
 public:
  RowParallelLinear() = default;
  // Columns `in_shard` of `prefix`.weight [out, full_in]; the bias (whole) is added once,
  // after the reduction.
  static absl::StatusOr<RowParallelLinear> Load(Checkpoint& checkpoint, const std::string& prefix,
                                                int64_t out_features, int64_t full_in_features,
                                                RowRange in_shard, bool has_bias);
  // x [T, local in] -> [T, out], all-reduced over `tp` (bias included).
  Tensor Forward(const Tensor& x, Communicator& tp) const;
  // The rank's partial sum without the bias: the caller adds partials, reduces once,
  // then calls AddBias.
  Tensor ForwardPartial(const Tensor& x) const;
  void AddBias(Tensor& out) const;
  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }

 private:
  Tensor weight_;
  Tensor bias_;
};

}  // namespace lattice
