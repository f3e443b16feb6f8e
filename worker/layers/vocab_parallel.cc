// Vocabulary-parallel embedding and LM head (see vocab_parallel.h).
#include "worker/layers/vocab_parallel.h"

#include <cstring>
#include <vector>

#include "kernels/cpu/ops.h"

namespace lattice {

RowRange VocabShard(int64_t vocab_size, Shard tp) {
  const int64_t per_rank = (vocab_size + tp.size - 1) / tp.size;
  return {tp.rank * per_rank, (tp.rank + 1) * per_rank};
}

absl::StatusOr<Tensor> LoadVocabShard(Checkpoint& checkpoint, const std::string& name, int64_t vocab_size,
                                      int64_t hidden_size, Shard tp) {
  absl::StatusOr<Tensor> full = checkpoint.Load(name, {vocab_size, hidden_size});
  if (!full.ok()) return full.status();
  const RowRange rows = VocabShard(vocab_size, tp);
  if (tp.size == 1) return full;
  Tensor shard = Tensor::Zeros(DType::kF32, {rows.size(), hidden_size});
  const int64_t real_end = std::min(rows.end, vocab_size);
  if (real_end > rows.begin) {
    const Tensor part = full->Slice(rows.begin, real_end);
    std::memcpy(shard.raw_data(), part.raw_data(), part.nbytes());
  }
  return shard;
}

VocabParallelEmbedding::VocabParallelEmbedding(Tensor weight, int64_t vocab_size, Shard tp)
    : weight_(std::move(weight)), rows_(VocabShard(vocab_size, tp)), vocab_size_(vocab_size) {}

Tensor VocabParallelEmbedding::Forward(std::span<const int32_t> ids, Communicator& tp) const {
  const int64_t tokens = static_cast<int64_t>(ids.size()), hidden = weight_.dim(1);
  Tensor out = Tensor::Empty(DType::kF32, {tokens, hidden});
  if (tp.size() == 1) {
    cpu::Embedding(ids, weight_, out);
    return out;
  }
  // Look every id up in the local rows (out-of-range ids read row 0), then zero the
  // rows whose id lives on another rank.
  std::vector<int32_t> local(ids.size());
  for (size_t t = 0; t < ids.size(); ++t) {
    const bool mine = ids[t] >= rows_.begin && ids[t] < rows_.end;
    local[t] = mine ? static_cast<int32_t>(ids[t] - rows_.begin) : 0;
  }
  cpu::Embedding(local, weight_, out);
  for (size_t t = 0; t < ids.size(); ++t) {
    if (ids[t] < rows_.begin || ids[t] >= rows_.end) {
      std::memset(out.data<float>() + t * hidden, 0, hidden * sizeof(float));
    }
  }
  tp.AllReduce(out);
  return out;
}

Tensor ParallelLMHead::Forward(const Tensor& x, Communicator& tp) const {
  const int64_t tokens = x.dim(0), shard = weight_.dim(0);
  Tensor local = Tensor::Empty(DType::kF32, {tokens, shard});
  cpu::Linear(x, weight_, Tensor(), local);
  if (tp.size() == 1) return local;
  Tensor gathered = Tensor::Empty(DType::kF32, {tp.size() * tokens, shard});
  tp.AllGather(local, gathered);
  // gathered rows are [rank][token]; logits columns are [rank][vocab in shard].
  Tensor logits = Tensor::Empty(DType::kF32, {tokens, vocab_size_});
  for (int r = 0; r < tp.size(); ++r) {
    const int64_t begin = r * shard;
    const int64_t width = std::min(shard, vocab_size_ - begin);
    if (width <= 0) break;
    for (int64_t t = 0; t < tokens; ++t) {
      std::memcpy(logits.data<float>() + t * vocab_size_ + begin,
                  gathered.data<float>() + (r * tokens + t) * shard, width * sizeof(float));
    }
  }
  return logits;
}

}  // namespace lattice
