// The multi-rank driver and followers (see distributed_engine.h).
#include "worker/distributed_engine.h"

#include <deque>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace lattice {
namespace {

void SendWords(Communicator& comm, const std::vector<int32_t>& words, int dst, int size_tag, int tag) {
  Tensor size = Tensor::Empty(DType::kI32, {1});
  size.data<int32_t>()[0] = static_cast<int32_t>(words.size());
  comm.Send(size, dst, size_tag);
  Tensor payload = Tensor::Empty(DType::kI32, {static_cast<int64_t>(words.size())});
  std::copy(words.begin(), words.end(), payload.data<int32_t>());
  comm.Send(payload, dst, tag);
}

std::vector<int32_t> RecvWords(Communicator& comm, int src, int size_tag, int tag) {
  Tensor size = Tensor::Empty(DType::kI32, {1});
  comm.Recv(size, src, size_tag);
  const int32_t n = size.data<int32_t>()[0];
  LATTICE_CHECK(n >= 0);
  Tensor payload = Tensor::Empty(DType::kI32, {n});
  comm.Recv(payload, src, tag);
  return {payload.data<int32_t>(), payload.data<int32_t>() + n};
}

void BroadcastPlan(Communicator& world, const StepPlan& plan) {
  const std::vector<int32_t> words = EncodeStepPlan(plan);
  for (int r = 1; r < world.size(); ++r) SendWords(world, words, r, kTagPlanSize, kTagPlan);
}

RunnerPlacement PlacementFor(const RankLayout& layout, int rank, const RankComms& comms) {
  RunnerPlacement placement;
  placement.dp_rank = layout.Coords(rank).dp_rank;
  placement.tp = comms.tp;
  placement.ep = comms.ep;
  placement.pp = layout.config().pp > 1 ? comms.pp : nullptr;
  return placement;
}

// [first, end) layer ranges per stage.
std::vector<std::pair<int, int>> StageLayers(int64_t num_layers, int pp, const std::vector<int>& pp_layers) {
  std::vector<int> counts = pp_layers;
  if (counts.empty()) {
    // Even split; the remainder goes to the first stages (the last also runs the head).
    for (int s = 0; s < pp; ++s) counts.push_back(static_cast<int>(num_layers / pp + (s < num_layers % pp ? 1 : 0)));
  }
  std::vector<std::pair<int, int>> ranges;
  int first = 0;
  for (int c : counts) {
    ranges.emplace_back(first, first + c);
    first += c;
  }
  return ranges;
}

}  // namespace

absl::Status ValidateLayoutForModel(const ModelConfig& c, const ParallelConfig& p, const std::vector<int>& pp_layers) {
  const int tp = p.tp;
  if (tp > c.num_attention_heads) {
    return absl::InvalidArgumentError(
        absl::StrCat("tp ", tp, " is larger than the model's num_attention_heads ", c.num_attention_heads));
  }
  if (c.num_attention_heads % tp != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_attention_heads ", c.num_attention_heads, " is not divisible by tp ", tp));
  }
  if (c.num_key_value_heads % tp != 0 && tp % c.num_key_value_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat("num_key_value_heads ", c.num_key_value_heads,
                                                   " and tp ", tp, ": neither divides the other"));
  }
  auto divisible = [&](const char* field, int64_t value, int by, const char* name) -> absl::Status {
    if (value % by == 0) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat(field, " ", value, " is not divisible by ", name, " ", by));
  };
  const bool has_dense = c.num_experts == 0 ||
                         std::find(c.layer_is_moe.begin(), c.layer_is_moe.end(), false) != c.layer_is_moe.end();
  if (has_dense) {
    if (absl::Status s = divisible("intermediate_size", c.intermediate_size, tp, "tp"); !s.ok()) return s;
  }
  if (c.shared_expert_intermediate_size > 0) {
    if (absl::Status s = divisible("shared_expert_intermediate_size", c.shared_expert_intermediate_size, tp, "tp");
        !s.ok()) {
      return s;
    }
  }
  if (p.ep > 1) {
    if (c.num_experts == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("ep ", p.ep, " needs a mixture-of-experts model; ", c.architecture_name, " is dense"));
    }
    if (absl::Status s = divisible("num_experts", c.num_experts, p.ep, "ep"); !s.ok()) return s;
  } else if (c.num_experts > 0) {
    if (absl::Status s = divisible("moe_intermediate_size", c.moe_intermediate_size, tp, "tp"); !s.ok()) return s;
  }
  if (p.pp > c.num_hidden_layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("pp ", p.pp, " is larger than the model's num_hidden_layers ", c.num_hidden_layers));
  }
  if (!pp_layers.empty()) {
    if (static_cast<int>(pp_layers.size()) != p.pp) {
      return absl::InvalidArgumentError(
          absl::StrCat("--pp-layers lists ", pp_layers.size(), " stages but pp is ", p.pp));
    }
    for (int n : pp_layers) {
      if (n < 1) return absl::InvalidArgumentError("--pp-layers: every stage needs at least one layer");
    }
    const int64_t sum = std::accumulate(pp_layers.begin(), pp_layers.end(), int64_t{0});
    if (sum != c.num_hidden_layers) {
      return absl::InvalidArgumentError(absl::StrCat("--pp-layers ", absl::StrJoin(pp_layers, ","), " sums to ", sum,
                                                     " but the model has ", c.num_hidden_layers, " layers"));
    }
  }
  return absl::OkStatus();
}

ModelShard ShardFor(const ModelConfig& config, const RankLayout& layout, int rank, const std::vector<int>& pp_layers) {
  const RankCoords coords = layout.Coords(rank);
  const ParallelConfig& p = layout.config();
  ModelShard shard;
  shard.tp = {coords.tp_rank, p.tp};
  shard.ep = p.ep > 1 ? Shard{coords.ep_rank, p.ep} : Shard{};
  const auto ranges = StageLayers(config.num_hidden_layers, p.pp, pp_layers);
  shard.first_layer = ranges[coords.pp_rank].first;
  shard.end_layer = ranges[coords.pp_rank].second;
  return shard;
}

absl::StatusOr<DriverResult> RunDriver(const DecoderModel& model, const RankLayout& layout, const RankComms& comms,
                                       const DistributedOptions& options,
                                       const std::vector<GenerationRequest>& requests,
                                       std::vector<TraceEvent>* trace) {
  const ParallelConfig& p = layout.config();
  Scheduler scheduler(MakeSchedulerOptions(model.config(), options.engine, p.dp));
  StepPlan stop;
  stop.stop = true;
  if (absl::Status status = ValidateAll(scheduler, requests); !status.ok()) {
    BroadcastPlan(*comms.world, stop);
    return status;
  }
  scheduler.Add(requests);
  ModelRunner runner(model, options.engine.kv_cache, PlacementFor(layout, 0, comms));
  const int num_micro_batches = options.num_micro_batches > 0 ? options.num_micro_batches : p.pp;

  std::deque<std::pair<StepPlan, StepOutput>> in_flight;
  int32_t micro_batch = 0;
  while (scheduler.HasUnfinished()) {
    while (static_cast<int>(in_flight.size()) < num_micro_batches) {
      StepPlan plan = scheduler.Schedule();
      if (plan.empty()) break;
      plan.micro_batch = micro_batch++ % num_micro_batches;
      BroadcastPlan(*comms.world, plan);
      StepOutput output = runner.Execute(plan);
      in_flight.emplace_back(std::move(plan), std::move(output));
    }
    // Validate() guarantees the oldest sequence fits a cache alone.
    LATTICE_CHECK_MSG(!in_flight.empty(), "no progress possible: KV cache too small");
    auto [plan, output] = std::move(in_flight.front());
    in_flight.pop_front();
    std::vector<SampledToken> tokens;
    for (int d = 0; d < p.dp; ++d) {
      const int sampler = layout.RankOf(p.pp - 1, d, 0);
      if (sampler == 0) {
        tokens.insert(tokens.end(), output.tokens.begin(), output.tokens.end());
        continue;
      }
      absl::StatusOr<StepOutput> remote =
          DecodeStepOutput(RecvWords(*comms.world, sampler, kTagOutputSize, kTagOutput));
      LATTICE_CHECK_MSG(remote.ok() && remote->step == plan.step, "rank %d sent a bad step output", sampler);
      tokens.insert(tokens.end(), remote->tokens.begin(), remote->tokens.end());
    }
    scheduler.Complete(plan, tokens);
  }
  BroadcastPlan(*comms.world, stop);
  if (trace) *trace = runner.trace();
  return DriverResult{scheduler.TakeResults(), scheduler.stats()};
}

absl::Status RunFollower(const DecoderModel& model, const RankLayout& layout, int rank, const RankComms& comms,
                         const DistributedOptions& options, std::vector<TraceEvent>* trace) {
  ModelRunner runner(model, options.engine.kv_cache, PlacementFor(layout, rank, comms));
  while (true) {
    absl::StatusOr<StepPlan> plan = DecodeStepPlan(RecvWords(*comms.world, 0, kTagPlanSize, kTagPlan));
    if (!plan.ok()) return plan.status();
    if (plan->stop) break;
    const StepOutput output = runner.Execute(*plan);
    if (runner.samples()) SendWords(*comms.world, EncodeStepOutput(output), 0, kTagOutputSize, kTagOutput);
  }
  if (trace) *trace = runner.trace();
  return absl::OkStatus();
}

}  // namespace lattice
