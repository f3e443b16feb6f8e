// The offline engine (see offline_engine.h).
#include "cli/offline_engine.h"

#include <cstring>
#include <deque>

#include "absl/strings/str_cat.h"

namespace lattice {
namespace {

constexpr int kTagStepSize = 2;
constexpr int kTagStep = 3;
constexpr int kTagResultSize = 4;
constexpr int kTagResult = 5;

// A serialized proto as int32 words after its byte count (the communicators move
// f32 and i32 tensors).
void SendBytes(Communicator& comm, const std::string& bytes, int dst, int size_tag, int tag) {
  Tensor size = Tensor::Empty(DType::kI32, {1});
  size.data<int32_t>()[0] = static_cast<int32_t>(bytes.size());
  comm.Send(size, dst, size_tag);
  Tensor payload = Tensor::Zeros(DType::kI32, {static_cast<int64_t>((bytes.size() + 3) / 4)});
  std::memcpy(payload.raw_data(), bytes.data(), bytes.size());
  comm.Send(payload, dst, tag);
}

std::string RecvBytes(Communicator& comm, int src, int size_tag, int tag) {
  Tensor size = Tensor::Empty(DType::kI32, {1});
  comm.Recv(size, src, size_tag);
  const int32_t n = size.data<int32_t>()[0];
  LATTICE_CHECK(n >= 0);
  Tensor payload = Tensor::Empty(DType::kI32, {(n + 3) / 4});
  comm.Recv(payload, src, tag);
  return std::string(static_cast<const char*>(payload.raw_data()), n);
}

// An empty StepRequest with step -1 tells the followers to stop.
void SendStep(Communicator& world, const pb::StepRequest& step) {
  const std::string bytes = step.SerializeAsString();
  for (int r = 1; r < world.size(); ++r) SendBytes(world, bytes, r, kTagStepSize, kTagStep);
}

pb::StepRequest StopStep() {
  pb::StepRequest stop;
  stop.set_step(-1);
  return stop;
}

RunnerPlacement PlacementFor(const RankLayout& layout, const RankComms& comms) {
  return {comms.tp, comms.ep, layout.config().pp > 1 ? comms.pp : nullptr};
}

// Collects the scheduler's updates into per-request results; the token hook may end a
// request early, which cancels its sequence in `scheduler`.
class ResultCollector {
 public:
  ResultCollector(const std::vector<GenerationRequest>& requests, const TokenHook& hook)
      : results_(requests.size()), ended_(requests.size(), false), hook_(hook) {
    for (size_t i = 0; i < requests.size(); ++i) results_[i].prompt_ids = requests[i].prompt_ids;
  }
  void Track(int64_t seq_id, size_t index) { index_of_[seq_id] = index; }
  void Apply(const std::vector<SequenceUpdate>& updates, Scheduler& scheduler) {
    std::vector<SequenceUpdate> cancelled;
    for (const SequenceUpdate& u : updates) {
      const size_t index = index_of_.at(u.seq_id);
      if (ended_[index]) continue;  // ended by the hook: its cancellation is not news
      GenerationResult& r = results_[index];
      r.num_cached_tokens = u.num_cached_tokens;
      bool stopped = false;
      for (size_t t = 0; t < u.token_ids.size() && !stopped; ++t) {
        r.output_ids.push_back(u.token_ids[t]);
        if (t < u.logprobs.size()) r.logprobs.push_back(u.logprobs[t]);
        const bool stops_sequence = u.finish_reason == FinishReason::kStop && t + 1 == u.token_ids.size();
        stopped = hook_ && hook_(index, u.token_ids[t], static_cast<int32_t>(r.output_ids.size()), stops_sequence);
      }
      if (stopped) {
        r.finish_reason = FinishReason::kStop;
        ended_[index] = true;
        if (u.finish_reason == FinishReason::kNone) scheduler.Cancel(u.seq_id);
        continue;
      }
      if (u.finish_reason != FinishReason::kNone) r.finish_reason = u.finish_reason;
    }
    for (const SequenceUpdate& u : scheduler.TakeIdleCancellations()) {
      LATTICE_CHECK(ended_[index_of_.at(u.seq_id)]);
    }
  }
  std::vector<GenerationResult> Take() { return std::move(results_); }

 private:
  std::vector<GenerationResult> results_;
  std::vector<bool> ended_;
  const TokenHook& hook_;
  absl::flat_hash_map<int64_t, size_t> index_of_;
};

}  // namespace

pb::SamplingParams DefaultSampling() {
  pb::SamplingParams s;
  s.set_top_p(1.0f);
  return s;
}

SchedulerOptions MakeSchedulerOptions(const ModelConfig& config, const EngineOptions& options, int32_t num_dp) {
  SchedulerOptions s;
  s.num_dp = num_dp;
  s.num_blocks = options.num_kv_blocks + 1;  // plus the null block
  s.block_size = options.block_size;
  s.enable_prefix_caching = options.enable_prefix_caching;
  s.max_num_batched_tokens = options.max_num_batched_tokens;
  s.max_num_seqs = options.max_num_seqs;
  s.max_model_len = options.max_model_len > 0 ? options.max_model_len : DefaultMaxModelLen(config);
  s.vocab_size = config.vocab_size;
  s.eos_token_ids = config.eos_token_ids;
  return s;
}

absl::Status ValidateAll(const Scheduler& scheduler, const std::vector<GenerationRequest>& requests) {
  for (size_t i = 0; i < requests.size(); ++i) {
    if (absl::Status status = scheduler.Validate(requests[i]); !status.ok()) {
      return absl::Status(status.code(), absl::StrCat("request ", i, ": ", status.message()));
    }
  }
  return absl::OkStatus();
}

Engine::Engine(const DecoderModel& model, const EngineOptions& options)
    : solo_(MakeSoloCommunicator()),
      scheduler_(MakeSchedulerOptions(model.config(), options, 1)),
      table_(0, options.block_size, options.num_kv_blocks + 1),
      runner_(model, {.num_blocks = options.num_kv_blocks + 1, .block_size = options.block_size},
              RunnerPlacement{solo_.get(), solo_.get(), nullptr}),
      token_hook_(options.token_hook) {}

namespace {
EngineOptions WithBlocks(EngineOptions options, int32_t num_kv_blocks) {
  options.num_kv_blocks = num_kv_blocks;
  return options;
}
}  // namespace

// The pool's block 0 is the scheduler's null block, never handed out.
Engine::Engine(DeviceModel& model, EngineOptions options)
    : solo_(MakeSoloCommunicator()),
      scheduler_(MakeSchedulerOptions(model.config(), WithBlocks(options, model.num_kv_blocks() - 1), 1)),
      table_(0, options.block_size, model.num_kv_blocks()),
      runner_(model, options.block_size, 0),
      token_hook_(options.token_hook) {}

Engine::~Engine() = default;

absl::StatusOr<std::vector<GenerationResult>> Engine::Generate(const std::vector<GenerationRequest>& requests) {
  if (absl::Status status = ValidateAll(scheduler_, requests); !status.ok()) return status;
  ResultCollector collector(requests, token_hook_);
  for (size_t i = 0; i < requests.size(); ++i) collector.Track(scheduler_.Add(requests[i]), i);
  while (scheduler_.HasUnfinished()) {
    const std::optional<pb::StepRequest> step = scheduler_.Schedule();
    // Validate() guarantees the oldest sequence fits the cache alone.
    LATTICE_CHECK_MSG(step.has_value(), "no progress possible: KV cache too small");
    absl::StatusOr<std::vector<ScheduledChunk>> chunks = table_.Apply(*step);
    LATTICE_CHECK_MSG(chunks.ok(), "%s", std::string(chunks.status().message()).c_str());
    const std::vector<SampledToken> tokens = runner_.Execute(step->step(), step->micro_batch(), *chunks);
    collector.Apply(scheduler_.Complete(*step, {table_.MakeResult(step->step(), tokens)}), scheduler_);
  }
  return collector.Take();
}

namespace {

// Rank 0's loop, on a runner of either kind of model.
absl::StatusOr<DriverResult> Drive(ModelRunner& runner, const ModelConfig& config, const RankLayout& layout,
                                   const RankComms& comms, const DistributedOptions& options,
                                   const std::vector<GenerationRequest>& requests, std::vector<TraceEvent>* trace) {
  const ParallelConfig& p = layout.config();
  Scheduler scheduler(MakeSchedulerOptions(config, options.engine, p.dp));
  if (absl::Status status = ValidateAll(scheduler, requests); !status.ok()) {
    SendStep(*comms.world, StopStep());
    return status;
  }
  ResultCollector collector(requests, options.engine.token_hook);
  for (size_t i = 0; i < requests.size(); ++i) collector.Track(scheduler.Add(requests[i]), i);
  SequenceTable table(0, options.engine.block_size, options.engine.num_kv_blocks + 1);
  const int num_micro_batches = options.num_micro_batches > 0 ? options.num_micro_batches : p.pp;

  std::deque<std::pair<pb::StepRequest, std::vector<SampledToken>>> in_flight;
  int32_t micro_batch = 0;
  while (scheduler.HasUnfinished()) {
    while (static_cast<int>(in_flight.size()) < num_micro_batches) {
      std::optional<pb::StepRequest> step = scheduler.Schedule();
      if (!step) break;
      step->set_micro_batch(micro_batch++ % num_micro_batches);
      SendStep(*comms.world, *step);
      absl::StatusOr<std::vector<ScheduledChunk>> chunks = table.Apply(*step);
      LATTICE_CHECK_MSG(chunks.ok(), "%s", std::string(chunks.status().message()).c_str());
      std::vector<SampledToken> tokens = runner.Execute(step->step(), step->micro_batch(), *chunks);
      in_flight.emplace_back(*std::move(step), std::move(tokens));
    }
    // Validate() guarantees the oldest sequence fits a cache alone.
    LATTICE_CHECK_MSG(!in_flight.empty(), "no progress possible: KV cache too small");
    auto [step, own_tokens] = std::move(in_flight.front());
    in_flight.pop_front();
    std::vector<pb::StepResult> results;
    for (int d = 0; d < p.dp; ++d) {
      const int sampler = layout.RankOf(p.pp - 1, d, 0);
      if (sampler == 0) {
        results.push_back(table.MakeResult(step.step(), own_tokens));
        continue;
      }
      pb::StepResult remote;
      LATTICE_CHECK_MSG(remote.ParseFromString(RecvBytes(*comms.world, sampler, kTagResultSize, kTagResult)) &&
                            remote.step() == step.step(),
                        "rank %d sent a bad step result", sampler);
      results.push_back(std::move(remote));
    }
    collector.Apply(scheduler.Complete(step, results), scheduler);
  }
  SendStep(*comms.world, StopStep());
  if (trace) *trace = runner.trace();
  return DriverResult{collector.Take(), scheduler.stats()};
}

// Every other rank's loop.
absl::Status Follow(ModelRunner& runner, const RankLayout& layout, int rank, const RankComms& comms,
                    const DistributedOptions& options, std::vector<TraceEvent>* trace) {
  SequenceTable table(layout.Coords(rank).dp_rank, options.engine.block_size, options.engine.num_kv_blocks + 1);
  while (true) {
    pb::StepRequest step;
    if (!step.ParseFromString(RecvBytes(*comms.world, 0, kTagStepSize, kTagStep))) {
      return absl::DataLossError("rank 0 sent a step request that does not parse");
    }
    if (step.step() < 0) break;
    absl::StatusOr<std::vector<ScheduledChunk>> chunks = table.Apply(step);
    if (!chunks.ok()) return chunks.status();
    const std::vector<SampledToken> tokens = runner.Execute(step.step(), step.micro_batch(), *chunks);
    if (runner.samples()) {
      SendBytes(*comms.world, table.MakeResult(step.step(), tokens).SerializeAsString(), 0, kTagResultSize,
                kTagResult);
    }
  }
  if (trace) *trace = runner.trace();
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<DriverResult> RunDriver(const DecoderModel& model, const RankLayout& layout, const RankComms& comms,
                                       const DistributedOptions& options,
                                       const std::vector<GenerationRequest>& requests,
                                       std::vector<TraceEvent>* trace) {
  ModelRunner runner(model, {.num_blocks = options.engine.num_kv_blocks + 1, .block_size = options.engine.block_size},
                     PlacementFor(layout, comms));
  return Drive(runner, model.config(), layout, comms, options, requests, trace);
}

absl::StatusOr<DriverResult> RunDriver(DeviceModel& model, const RankLayout& layout, const RankComms& comms,
                                       const DistributedOptions& options,
                                       const std::vector<GenerationRequest>& requests,
                                       std::vector<TraceEvent>* trace) {
  ModelRunner runner(model, options.engine.block_size, layout.Coords(0).pp_rank);
  return Drive(runner, model.config(), layout, comms, options, requests, trace);
}

absl::Status RunFollower(const DecoderModel& model, const RankLayout& layout, int rank, const RankComms& comms,
                         const DistributedOptions& options, std::vector<TraceEvent>* trace) {
  ModelRunner runner(model, {.num_blocks = options.engine.num_kv_blocks + 1, .block_size = options.engine.block_size},
                     PlacementFor(layout, comms));
  return Follow(runner, layout, rank, comms, options, trace);
}

absl::Status RunFollower(DeviceModel& model, const RankLayout& layout, int rank, const RankComms& comms,
                         const DistributedOptions& options, std::vector<TraceEvent>* trace) {
  ModelRunner runner(model, options.engine.block_size, layout.Coords(rank).pp_rank);
  return Follow(runner, layout, rank, comms, options, trace);
}

}  // namespace lattice
