// One rank's execution of a step (see model_runner.h).
#include "worker/model_runner.h"

#include <time.h>

#include <cstring>

namespace lattice {
namespace {

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

}  // namespace

ModelRunner::ModelRunner(const DecoderModel& model, const KvCacheOptions& kv_cache,
                         const RunnerPlacement& placement)
    : model_(&model), placement_(placement), block_size_(kv_cache.block_size),
      pp_rank_(placement.pp ? placement.pp->rank() : 0) {
  LATTICE_CHECK(placement.tp != nullptr && placement.ep != nullptr);
  kv_cache_.emplace(model.kv_cache_shape(), kv_cache);
}

ModelRunner::ModelRunner(DeviceModel& model, int32_t block_size, int32_t pp_rank)
    : device_(&model), block_size_(block_size), pp_rank_(pp_rank) {}

bool ModelRunner::samples() const {
  if (device_ != nullptr) return device_->samples();
  return model_->is_last_stage() && placement_.tp->rank() == 0;
}

ForwardBatch ModelRunner::BuildBatch(const std::vector<ScheduledChunk>& chunks) const {
  const int32_t block_size = block_size_;
  ForwardBatch batch;
  size_t max_blocks = 0;
  for (const ScheduledChunk& c : chunks) max_blocks = std::max(max_blocks, c.block_table.size());
  batch.max_blocks_per_seq = static_cast<int32_t>(max_blocks);
  batch.query_start_loc.push_back(0);
  for (const ScheduledChunk& c : chunks) {
    for (size_t i = 0; i < c.token_ids.size(); ++i) {
      const int64_t position = c.start_position + static_cast<int64_t>(i);
      batch.token_ids.push_back(c.token_ids[i]);
      batch.positions.push_back(static_cast<int32_t>(position));
      batch.slot_mapping.push_back(SlotFor(c.block_table, block_size, position));
    }
    batch.query_start_loc.push_back(batch.num_tokens());
    batch.seq_lens.push_back(c.start_position + static_cast<int32_t>(c.token_ids.size()));
    batch.block_tables.insert(batch.block_tables.end(), c.block_table.begin(), c.block_table.end());
    batch.block_tables.resize(batch.block_tables.size() + max_blocks - c.block_table.size(), -1);
    if (c.sample) batch.logits_indices.push_back(batch.num_tokens() - 1);
  }
  return batch;
}

std::vector<SampledToken> ModelRunner::Execute(int64_t step, int32_t micro_batch,
                                               const std::vector<ScheduledChunk>& chunks) {
  TraceEvent event;
  event.step = step;
  event.micro_batch = micro_batch;
  event.stage = pp_rank_;
  const ForwardBatch batch = BuildBatch(chunks);
  event.num_tokens = batch.num_tokens();
  if (device_ != nullptr) {
    event.begin_ns = NowNs();
    std::vector<SampledToken> output = ExecuteOnDevice(batch, chunks);
    event.end_ns = NowNs();
    trace_.push_back(event);
    return output;
  }
  const DecoderModel& model = *model_;
  const int64_t tokens = batch.num_tokens(), hidden = model.config().hidden_size;

  HiddenStates in;
  if (!model.is_first_stage() && tokens > 0) {
    Tensor both = Tensor::Empty(DType::kF32, {2 * tokens, hidden});
    placement_.pp->Recv(both, placement_.pp->rank() - 1, kTagHiddenStates);
    in.hidden = both.Slice(0, tokens).Clone();
    in.residual = both.Slice(tokens, 2 * tokens).Clone();
  } else if (!model.is_first_stage()) {
    in.hidden = Tensor::Empty(DType::kF32, {0, hidden});
    in.residual = Tensor::Empty(DType::kF32, {0, hidden});
  }
  event.begin_ns = NowNs();
  HiddenStates out = model.ForwardLayers(batch, *kv_cache_, *placement_.tp, *placement_.ep, std::move(in));

  std::vector<SampledToken> output;
  if (!model.is_last_stage()) {
    event.end_ns = NowNs();
    if (tokens > 0) {
      Tensor both = Tensor::Empty(DType::kF32, {2 * tokens, hidden});
      std::memcpy(both.raw_data(), out.hidden.raw_data(), out.hidden.nbytes());
      std::memcpy(both.Slice(tokens, 2 * tokens).raw_data(), out.residual.raw_data(), out.residual.nbytes());
      placement_.pp->Send(both, placement_.pp->rank() + 1, kTagHiddenStates);
    }
    trace_.push_back(event);
    return output;
  }

  const Tensor logits = model.ComputeLogits(batch, out, *placement_.tp);
  if (samples()) {
    const int64_t vocab = model.config().vocab_size;
    std::vector<float> logprobs(vocab), adjusted;
    size_t row = 0;
    for (const ScheduledChunk& c : chunks) {
      if (!c.sample) continue;
      const std::span<const float> row_logits(logits.data<float>() + row * vocab, vocab);
      ++row;
      SampledToken sampled;
      sampled.seq_id = c.seq_id;
      // The position of the token being generated seeds its draw.
      const int64_t position = c.start_position + static_cast<int64_t>(c.token_ids.size());
      if (c.adjustments.empty()) {
        sampled.token = cpu::Sample(row_logits, c.sampling, position);
      } else {
        adjusted.assign(row_logits.begin(), row_logits.end());
        cpu::ApplyLogitAdjustments(adjusted, c.penalties, c.adjustments);
        sampled.token = cpu::Sample(adjusted, c.sampling, position);
      }
      // Logprobs of the raw row (vLLM's default), whatever the adjustments did.
      if (c.num_logprobs > 0) {
        cpu::LogSoftmax(row_logits, logprobs);
        sampled.logprobs = cpu::TopK(logprobs, c.num_logprobs);
      }
      output.push_back(std::move(sampled));
    }
  }
  event.end_ns = NowNs();
  trace_.push_back(event);
  return output;
}

std::vector<SampledToken> ModelRunner::ExecuteOnDevice(const ForwardBatch& batch,
                                                       const std::vector<ScheduledChunk>& chunks) {
  std::vector<SamplingRow> rows;
  for (const ScheduledChunk& c : chunks) {
    if (!c.sample) continue;
    SamplingRow row;
    row.params = c.sampling;
    // The position of the token being generated seeds its draw.
    row.position = c.start_position + static_cast<int64_t>(c.token_ids.size());
    row.num_logprobs = c.num_logprobs;
    row.penalties = c.penalties;
    row.adjustments = c.adjustments;
    rows.push_back(row);
  }
  if (!device_->is_last_stage()) rows.clear();
  const std::vector<DeviceSample> samples = device_->Execute(batch, rows);
  std::vector<SampledToken> output;
  size_t i = 0;
  for (const ScheduledChunk& c : chunks) {
    if (!c.sample || i >= samples.size()) continue;
    SampledToken sampled;
    sampled.seq_id = c.seq_id;
    sampled.token = samples[i].token;
    sampled.logprobs = samples[i].logprobs;
    ++i;
    output.push_back(std::move(sampled));
  }
  return output;
}

}  // namespace lattice
