// The offline engine behind `lattice run`: the coordinator's Scheduler and the
// workers' SequenceTable + ModelRunner joined in-process, without a server.
//   - Engine: one rank, one thread.
//   - RunDriver / RunFollower: several ranks (threads in tests, processes in
//     `lattice run --tp ...`), on CPU models or GPU ones. Rank 0 runs the scheduler, sends each StepRequest to
//     every rank over the world communicator, executes its own share and collects
//     the StepResults of each DP rank's last stage; with pipeline parallelism it keeps
//     up to `num_micro_batches` steps in flight so the stages overlap.
// The serving path runs the same Scheduler and SequenceTable behind gRPC.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/scheduler.h"
#include "parallel/communicator.h"
#include "parallel/rank_layout.h"
#include "worker/model.h"
#include "worker/model_runner.h"
#include "worker/sequence_table.h"

namespace lattice {

// A request of `lattice run`: the coordinator's SequenceRequest.
using GenerationRequest = SequenceRequest;

// Sampling defaults: greedy, top_p 1 (the proto's zero would mean "nothing kept").
pb::SamplingParams DefaultSampling();

struct GenerationResult {
  std::vector<int32_t> prompt_ids;
  std::vector<int32_t> output_ids;
  std::vector<TokenLogprobs> logprobs;  // one per output token when requested
  FinishReason finish_reason = FinishReason::kNone;
  int32_t num_cached_tokens = 0;
};

// Called on the driver for every output token, in order: (request index, token id, the
// request's output tokens so far with this one, whether it is the eos or stop token that
// ends the request). Returning true ends the request after this token (finish reason
// stop, e.g. a stop string in its text): later tokens are dropped and its sequence is
// cancelled.
using TokenHook =
    std::function<bool(size_t index, int32_t token, int32_t num_output_tokens, bool stops_sequence)>;

struct EngineOptions {
  int32_t num_kv_blocks = 0;  // per DP rank, not counting the null block
  int32_t block_size = 16;
  bool enable_prefix_caching = true;
  int32_t max_num_batched_tokens = 2048;
  int32_t max_num_seqs = 256;
  int64_t max_model_len = 0;  // 0: from the config
  TokenHook token_hook;       // optional
};

// The scheduler options for a model under `options` with `num_dp` DP ranks.
SchedulerOptions MakeSchedulerOptions(const ModelConfig& config, const EngineOptions& options, int32_t num_dp);
// Checks every request, naming the first bad one ("request 3: ...").
absl::Status ValidateAll(const Scheduler& scheduler, const std::vector<GenerationRequest>& requests);

class Engine {
 public:
  Engine(const DecoderModel& model, const EngineOptions& options);
  // On a device model (the GPU): its pool sets the number of KV blocks.
  Engine(DeviceModel& model, EngineOptions options);
  ~Engine();

  absl::Status Validate(const GenerationRequest& request) const { return scheduler_.Validate(request); }
  // Generates for every request (validated first, all or nothing); results in input order.
  absl::StatusOr<std::vector<GenerationResult>> Generate(const std::vector<GenerationRequest>& requests);

  SchedulerStats stats() const { return scheduler_.stats(); }
  int32_t num_used_blocks() const { return scheduler_.num_used_blocks(0); }

 private:
  std::unique_ptr<Communicator> solo_;
  Scheduler scheduler_;
  SequenceTable table_;
  ModelRunner runner_;
  TokenHook token_hook_;
};

// The communicators of one rank (owned elsewhere). Size-1 groups may be solo.
struct RankComms {
  Communicator* world = nullptr;
  Communicator* tp = nullptr;
  Communicator* pp = nullptr;
  Communicator* ep = nullptr;
};

struct DistributedOptions {
  EngineOptions engine;
  int32_t num_micro_batches = 0;  // steps in flight; 0: the PP size
  std::vector<int> pp_layers;     // layers per stage; empty: even split
};

struct DriverResult {
  std::vector<GenerationResult> results;
  SchedulerStats stats;
};

// Rank 0. Validates every request first (a bad one stops every rank and is returned).
absl::StatusOr<DriverResult> RunDriver(const DecoderModel& model, const RankLayout& layout, const RankComms& comms,
                                       const DistributedOptions& options,
                                       const std::vector<GenerationRequest>& requests,
                                       std::vector<TraceEvent>* trace = nullptr);

// Every rank but 0, until the driver's stop message.
absl::Status RunFollower(const DecoderModel& model, const RankLayout& layout, int rank, const RankComms& comms,
                         const DistributedOptions& options, std::vector<TraceEvent>* trace = nullptr);

// The same on device models (one GPU per rank, their TP/PP/EP traffic on the device's
// own groups; `comms.world` carries the steps and results). Each rank's pool is sized
// on its GPU: options.engine.num_kv_blocks must fit every rank's (the smallest pool,
// less the null block).
absl::StatusOr<DriverResult> RunDriver(DeviceModel& model, const RankLayout& layout, const RankComms& comms,
                                       const DistributedOptions& options,
                                       const std::vector<GenerationRequest>& requests,
                                       std::vector<TraceEvent>* trace = nullptr);
absl::Status RunFollower(DeviceModel& model, const RankLayout& layout, int rank, const RankComms& comms,
                         const DistributedOptions& options, std::vector<TraceEvent>* trace = nullptr);

}  // namespace lattice
