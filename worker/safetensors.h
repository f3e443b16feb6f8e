// Checkpoint: the tensors of a Hugging Face checkpoint in safetensors format, one
// file (model.safetensors) or sharded (model.safetensors.index.json), memory-mapped.
// Every header is validated when the checkpoint opens, so a hostile or broken file
// is an error naming the file, the tensor and the problem, never a crash.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "kernels/tensor.h"

namespace lattice {

struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  Shape shape;
  int file_index = 0;      // which mapped file holds it
  size_t data_offset = 0;  // byte offset from the start of the file
};

// Not thread-safe: one loading thread owns a Checkpoint. Tensors it returns keep
// their file mapped after the Checkpoint is gone.
class Checkpoint {
 public:
  // Opens `dir`: model.safetensors.index.json if present (every shard it names),
  // else model.safetensors.
  static absl::StatusOr<std::unique_ptr<Checkpoint>> Open(const std::string& dir);
  // Opens one .safetensors file.
  static absl::StatusOr<std::unique_ptr<Checkpoint>> OpenFile(const std::string& path);

  const TensorInfo* Find(std::string_view name) const;
  bool Contains(std::string_view name) const { return Find(name) != nullptr; }
  std::vector<std::string> Names() const;  // sorted

  // The tensor as an f32 host tensor (converted from F32, BF16 or F16). NOT_FOUND
  // when missing ("missing tensor NAME"), INVALID_ARGUMENT when its shape is not
  // `expected_shape` or its dtype is not a float type. Marks the tensor used.
  absl::StatusOr<Tensor> Load(std::string_view name, const Shape& expected_shape);
  // A zero-copy view of the mapped bytes in the stored dtype. Marks the tensor used.
  // The view is misaligned for its dtype when a file's header length is not a
  // multiple of the element size (writers pad it to 8); Load copies such data first.
  absl::StatusOr<Tensor> LoadRaw(std::string_view name);
  // Marks a tensor used without loading it (e.g. a tied lm_head.weight).
  void MarkUsed(std::string_view name);
  // Names never loaded or marked, sorted: the "unexpected tensor" check.
  std::vector<std::string> Unused() const;

 private:
  Checkpoint() = default;
  absl::Status AddFile(const std::string& path);

  std::vector<std::shared_ptr<Buffer>> files_;  // one mapping per file
  std::vector<std::string> paths_;
  std::string source_;  // the directory or file opened, for error messages
  absl::flat_hash_map<std::string, TensorInfo> tensors_;
  absl::flat_hash_map<std::string, bool> used_;
};

// Limits that make a hostile header an error rather than an allocation.
inline constexpr size_t kMaxSafetensorsHeaderBytes = 100 * 1024 * 1024;

}  // namespace lattice
