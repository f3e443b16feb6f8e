// Flat int32 encodings of StepPlan and StepOutput (see step_plan.h).
#include "worker/step_plan.h"

#include <bit>

#include "absl/strings/str_cat.h"

namespace lattice {
namespace {

class Writer {
 public:
  void Int(int64_t v) { words_.push_back(static_cast<int32_t>(v)); }
  void Int64(int64_t v) {
    words_.push_back(static_cast<int32_t>(static_cast<uint64_t>(v) >> 32));
    words_.push_back(static_cast<int32_t>(static_cast<uint64_t>(v) & 0xffffffffu));
  }
  void Float(float v) { words_.push_back(std::bit_cast<int32_t>(v)); }
  void Ints(const std::vector<int32_t>& v) {
    Int(static_cast<int64_t>(v.size()));
    words_.insert(words_.end(), v.begin(), v.end());
  }
  std::vector<int32_t> Take() { return std::move(words_); }

 private:
  std::vector<int32_t> words_;
};

class Reader {
 public:
  explicit Reader(const std::vector<int32_t>& words) : words_(words) {}
  bool ok() const { return ok_; }
  int32_t Int() {
    if (pos_ >= words_.size()) {
      ok_ = false;
      return 0;
    }
    return words_[pos_++];
  }
  int64_t Int64() {
    const uint64_t hi = static_cast<uint32_t>(Int()), lo = static_cast<uint32_t>(Int());
    return static_cast<int64_t>(hi << 32 | lo);
  }
  float Float() { return std::bit_cast<float>(Int()); }
  // A count that must fit in what is left (each element at least `min_words` words).
  int32_t Count(size_t min_words = 1) {
    const int32_t n = Int();
    if (n < 0 || static_cast<size_t>(n) * min_words > words_.size() - pos_) {
      ok_ = false;
      return 0;
    }
    return n;
  }
  std::vector<int32_t> Ints() {
    const int32_t n = Count();
    std::vector<int32_t> v(words_.begin() + pos_, words_.begin() + pos_ + n);
    pos_ += n;
    return v;
  }
  bool at_end() const { return pos_ == words_.size(); }

 private:
  const std::vector<int32_t>& words_;
  size_t pos_ = 0;
  bool ok_ = true;
};

constexpr int32_t kPlanMagic = 0x504c414e;    // "PLAN"
constexpr int32_t kOutputMagic = 0x4f555450;  // "OUTP"

}  // namespace

bool StepPlan::empty() const {
  for (const auto& chunks : per_dp) {
    if (!chunks.empty()) return false;
  }
  return true;
}

std::vector<int32_t> EncodeStepPlan(const StepPlan& plan) {
  Writer w;
  w.Int(kPlanMagic);
  w.Int64(plan.step);
  w.Int(plan.micro_batch);
  w.Int(plan.stop ? 1 : 0);
  w.Int(static_cast<int64_t>(plan.per_dp.size()));
  for (const auto& chunks : plan.per_dp) {
    w.Int(static_cast<int64_t>(chunks.size()));
    for (const ScheduledChunk& c : chunks) {
      w.Int64(c.seq_id);
      w.Int(c.start_position);
      w.Ints(c.token_ids);
      w.Ints(c.block_table);
      w.Int(c.sample ? 1 : 0);
      w.Float(c.sampling.temperature);
      w.Int(c.sampling.top_k);
      w.Float(c.sampling.top_p);
      w.Float(c.sampling.min_p);
      w.Int64(static_cast<int64_t>(c.sampling.seed));
      w.Int(c.num_logprobs);
    }
  }
  return w.Take();
}

absl::StatusOr<StepPlan> DecodeStepPlan(const std::vector<int32_t>& words) {
  Reader r(words);
  if (r.Int() != kPlanMagic) return absl::InvalidArgumentError("step plan: bad magic");
  StepPlan plan;
  plan.step = r.Int64();
  plan.micro_batch = r.Int();
  plan.stop = r.Int() != 0;
  plan.per_dp.resize(r.Count());
  for (auto& chunks : plan.per_dp) {
    chunks.resize(r.Count(13));
    for (ScheduledChunk& c : chunks) {
      c.seq_id = r.Int64();
      c.start_position = r.Int();
      c.token_ids = r.Ints();
      c.block_table = r.Ints();
      c.sample = r.Int() != 0;
      c.sampling.temperature = r.Float();
      c.sampling.top_k = r.Int();
      c.sampling.top_p = r.Float();
      c.sampling.min_p = r.Float();
      c.sampling.seed = static_cast<uint64_t>(r.Int64());
      c.num_logprobs = r.Int();
    }
  }
  if (!r.ok() || !r.at_end()) {
    return absl::InvalidArgumentError(absl::StrCat("step plan: malformed (", words.size(), " words)"));
  }
  return plan;
}

std::vector<int32_t> EncodeStepOutput(const StepOutput& output) {
  Writer w;
  w.Int(kOutputMagic);
  w.Int64(output.step);
  w.Int(static_cast<int64_t>(output.tokens.size()));
  for (const SampledToken& t : output.tokens) {
    w.Int64(t.seq_id);
    w.Int(t.token);
    w.Int(static_cast<int64_t>(t.logprobs.size()));
    for (const auto& [id, logprob] : t.logprobs) {
      w.Int(id);
      w.Float(logprob);
    }
  }
  return w.Take();
}

absl::StatusOr<StepOutput> DecodeStepOutput(const std::vector<int32_t>& words) {
  Reader r(words);
  if (r.Int() != kOutputMagic) return absl::InvalidArgumentError("step output: bad magic");
  StepOutput output;
  output.step = r.Int64();
  output.tokens.resize(r.Count(4));
  for (SampledToken& t : output.tokens) {
    t.seq_id = r.Int64();
    t.token = r.Int();
    t.logprobs.resize(r.Count(2));
    for (auto& [id, logprob] : t.logprobs) {
      id = r.Int();
      logprob = r.Float();
    }
  }
  if (!r.ok() || !r.at_end()) {
    return absl::InvalidArgumentError(absl::StrCat("step output: malformed (", words.size(), " words)"));
  }
  return output;
}

}  // namespace lattice
