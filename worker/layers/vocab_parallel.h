// VocabParallelEmbedding and ParallelLMHead: the vocabulary split over TP ranks.
// The vocabulary is padded up to a multiple of the TP size; each rank holds
// vocab_padded / tp rows (zero rows past the real vocabulary). The embedding looks up
// the ids in its range, zeroes the rest and all-reduces; the head computes its slice
// of the logits and all-gathers them, dropping the padding.
#pragma once

#include <span>
#include <string>

#include "absl/status/statusor.h"
#include "kernels/tensor.h"
#include "parallel/communicator.h"
#include "worker/layers/sharding.h"
#include "worker/safetensors.h"

namespace lattice {

// The rows of a vocabulary of `vocab_size` that TP rank `tp` holds, padding included.
RowRange VocabShard(int64_t vocab_size, Shard tp);

// Rows of checkpoint tensor `name` [vocab_size, hidden] for this rank, padded with zeros.
absl::StatusOr<Tensor> LoadVocabShard(Checkpoint& checkpoint, const std::string& name, int64_t vocab_size,
                                      int64_t hidden_size, Shard tp);

class VocabParallelEmbedding {
 public:
  VocabParallelEmbedding() = default;
  VocabParallelEmbedding(Tensor weight, int64_t vocab_size, Shard tp);
  // ids [T] -> [T, hidden], all-reduced over `tp`.
  Tensor Forward(std::span<const int32_t> ids, Communicator& tp) const;
  const Tensor& weight() const { return weight_; }

 private:
  Tensor weight_;  // [vocab_padded / tp, hidden]
  RowRange rows_;
  int64_t vocab_size_ = 0;
};

class ParallelLMHead {
 public:
  ParallelLMHead() = default;
  ParallelLMHead(Tensor weight, int64_t vocab_size) : weight_(std::move(weight)), vocab_size_(vocab_size) {}
  // x [T, hidden] -> logits [T, vocab_size], gathered over `tp` (every TP rank gets all).
  Tensor Forward(const Tensor& x, Communicator& tp) const;
  const Tensor& weight() const { return weight_; }

 private:
  Tensor weight_;  // [vocab_padded / tp, hidden]
  int64_t vocab_size_ = 0;
};

}  // namespace lattice
