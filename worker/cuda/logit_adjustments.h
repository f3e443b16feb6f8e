// LogitAdjustmentStage: a step's sequence-dependent sampling controls (penalties,
// min_tokens, logit_bias: each SamplingRow's adjustments, built on the host by the
// SequenceTable) on the GPU. Stage() packs the rows' entries and penalties into pinned
// memory and copies them to the device on the step's stream, beside the step's
// metadata; Apply() runs cuda::ApplyLogitAdjustments on the f32 logits after the
// forward (after a graph's replay: never inside a graph), before Sample. A step without
// entries (the common case) copies and launches nothing. The buffers grow to the
// largest step seen, after a stream sync: the one allocation on the step path, only
// when a step carries more entries than any before. One owner thread; the model's
// device current.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/tensor.h"
#include "worker/device_model.h"

namespace lattice {

class LogitAdjustmentStage {
 public:
  explicit LogitAdjustmentStage(cudaStream_t stream) : stream_(stream) {}
  ~LogitAdjustmentStage();
  LogitAdjustmentStage(const LogitAdjustmentStage&) = delete;
  LogitAdjustmentStage& operator=(const LogitAdjustmentStage&) = delete;

  // Stages the rows' adjustments (row r of the step's logits is rows[r]); the previous
  // step's must be applied already.
  void Stage(const std::vector<SamplingRow>& rows);
  // Whether the staged step has any entry.
  bool active() const { return num_entries_ > 0; }
  // Applies the staged adjustments to logits [rows, vocab] in place (nothing when inactive).
  void Apply(const Tensor& logits);

 private:
  void Reserve(size_t words);

  cudaStream_t stream_;
  int32_t* host_ = nullptr;  // pinned: penalties [rows, 3], then entries [n, kLogitAdjustmentWords]
  std::shared_ptr<Buffer> device_;
  size_t capacity_words_ = 0;
  int64_t num_rows_ = 0;
  int64_t num_entries_ = 0;
};

}  // namespace lattice
