// In-process engine (see engine.h).
#include "worker/engine.h"

#include "absl/strings/str_cat.h"

namespace lattice {

SchedulerOptions MakeSchedulerOptions(const ModelConfig& config, const EngineOptions& options, int32_t num_dp) {
  SchedulerOptions s;
  s.num_dp = num_dp;
  s.kv_cache = options.kv_cache;
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
      runner_(model, options.kv_cache, RunnerPlacement{0, solo_.get(), solo_.get(), nullptr}) {}

Engine::~Engine() = default;

absl::StatusOr<std::vector<GenerationResult>> Engine::Generate(const std::vector<GenerationRequest>& requests) {
  if (absl::Status status = ValidateAll(scheduler_, requests); !status.ok()) return status;
  scheduler_.Add(requests);
  while (scheduler_.HasUnfinished()) {
    const StepPlan plan = scheduler_.Schedule();
    // Validate() guarantees the oldest sequence fits the cache alone.
    LATTICE_CHECK_MSG(!plan.empty(), "no progress possible: KV cache too small");
    const StepOutput output = runner_.Execute(plan);
    scheduler_.Complete(plan, output.tokens);
  }
  return scheduler_.TakeResults();
}

}  // namespace lattice
