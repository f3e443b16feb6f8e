// Linear: y = x W^T + b with W [out, in] loaded from a checkpoint, alone or as
// several checkpoint tensors stacked along the output rows (fused QKV, gate-up).
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "absl/status/statusor.h"
#include "kernels/tensor.h"
#include "worker/safetensors.h"

namespace lattice {

// Loads `name` with `shape`, prefixing any error with nothing extra: the checkpoint's
// messages already name the tensor.
absl::StatusOr<Tensor> LoadTensor(Checkpoint& checkpoint, const std::string& name, const Shape& shape);

// Loads tensors [rows_i, cols...] and stacks them along the first dimension.
absl::StatusOr<Tensor> LoadStacked(Checkpoint& checkpoint, std::span<const std::string> names,
                                   std::span<const int64_t> rows, const Shape& row_shape);

class Linear {
 public:
  Linear() = default;
  // `prefix`.weight [out, in], and `prefix`.bias [out] when has_bias.
  static absl::StatusOr<Linear> Load(Checkpoint& checkpoint, const std::string& prefix,
                                     int64_t out_features, int64_t in_features, bool has_bias);
  // Several projections of the same input, stacked: rows of prefixes[0], then prefixes[1]...
  static absl::StatusOr<Linear> LoadFused(Checkpoint& checkpoint,
                                          std::span<const std::string> prefixes,
                                          std::span<const int64_t> out_features,
                                          int64_t in_features, bool has_bias);

  // x [T, in] -> [T, out].
  Tensor Forward(const Tensor& x) const;
  int64_t out_features() const { return weight_.dim(0); }
  int64_t in_features() const { return weight_.dim(1); }

 private:
  Tensor weight_;
  Tensor bias_;
};

}  // namespace lattice
