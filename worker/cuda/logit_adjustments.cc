// The GPU side of the sequence-dependent sampling controls (see logit_adjustments.h).
#include "worker/cuda/logit_adjustments.h"

#include <algorithm>
#include <cstring>

#include "base/check.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/ops.h"

namespace lattice {

LogitAdjustmentStage::~LogitAdjustmentStage() {
  if (host_) cudaFreeHost(host_);
}

void LogitAdjustmentStage::Reserve(size_t words) {
  if (words <= capacity_words_) return;
  // The last copy from the pinned area and the last kernel reading the device one are done.
  LATTICE_CUDA_CHECK(cudaStreamSynchronize(stream_));
  if (host_) LATTICE_CUDA_CHECK(cudaFreeHost(host_));
  host_ = nullptr;
  device_.reset();
  capacity_words_ = std::max<size_t>(words * 2, 1 << 16);
  LATTICE_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&host_), capacity_words_ * 4));
  device_ = cuda::AllocateDevice(capacity_words_ * 4);
}

void LogitAdjustmentStage::Stage(const std::vector<SamplingRow>& rows) {
  num_rows_ = static_cast<int64_t>(rows.size());
  num_entries_ = 0;
  for (const SamplingRow& row : rows) num_entries_ += static_cast<int64_t>(row.adjustments.size());
  if (num_entries_ == 0) return;
  const size_t penalty_words = (3 * rows.size() + 3) / 4 * 4;  // entries start 16-byte aligned
  const size_t words = penalty_words + static_cast<size_t>(num_entries_) * cuda::kLogitAdjustmentWords;
  Reserve(words);
  float* penalties = reinterpret_cast<float*>(host_);
  int32_t* entries = host_ + penalty_words;
  for (size_t r = 0; r < rows.size(); ++r) {
    penalties[3 * r] = rows[r].penalties.repetition_penalty;
    penalties[3 * r + 1] = rows[r].penalties.presence_penalty;
    penalties[3 * r + 2] = rows[r].penalties.frequency_penalty;
    cuda::PackLogitAdjustments(rows[r].adjustments, static_cast<int32_t>(r), entries);
    entries += rows[r].adjustments.size() * cuda::kLogitAdjustmentWords;
  }
  LATTICE_CUDA_CHECK(cudaMemcpyAsync(device_->data(), host_, words * 4, cudaMemcpyHostToDevice, stream_));
}

void LogitAdjustmentStage::Apply(const Tensor& logits) {
  if (num_entries_ == 0) return;
  LATTICE_CHECK(logits.ndim() == 2 && logits.dim(0) == num_rows_);
  const size_t penalty_words = (3 * static_cast<size_t>(num_rows_) + 3) / 4 * 4;
  // As cpu::ApplyLogitAdjustments: a token outside the row is a broken invariant, not a stray write.
  for (int64_t i = 0; i < num_entries_; ++i) {
    const int32_t token = host_[penalty_words + i * cuda::kLogitAdjustmentWords];
    LATTICE_CHECK(token >= 0 && token < logits.dim(1));
  }
  const Tensor penalties = Tensor::FromBuffer(device_, 0, DType::kF32, {num_rows_, 3});
  const Tensor entries =
      Tensor::FromBuffer(device_, penalty_words * 4, DType::kI32, {num_entries_, cuda::kLogitAdjustmentWords});
  Tensor rows = logits;
  cuda::ApplyLogitAdjustments(rows, entries, penalties, stream_);
}

}  // namespace lattice
