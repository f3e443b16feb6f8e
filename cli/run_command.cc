// `lattice run` (see run_command.h): one rank in-process, or several ranks as
// processes (started here, by mpirun, or by another launcher) over gloo, on CPUs or on
// one GPU each (NCCL inside the model).
#include "cli/run_command.h"

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "gloo/rendezvous/prefix_store.h"
#include "cli/int_list.h"
#include "cli/launch.h"
#include "cli/offline_engine.h"
#include "cli/result_json.h"
#include "coordinator/text_service.h"
#include "parallel/bootstrap.h"
#include "parallel/process_groups.h"
#include "worker/device_model.h"
#include "worker/layout.h"
#include "worker/model.h"
#include "worker/model_config.h"

namespace lattice {
namespace {

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "lattice run: %s\n", std::string(status.message()).c_str());
  return 2;
}

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The output text of each request (`lattice run` with a tokenizer): the token hook
// feeds it token by token on rank 0, stop strings end requests there.
struct RunTexts {
  std::vector<v1::GenerateRequest> requests;
  std::vector<std::unique_ptr<OutputText>> outputs;
  std::vector<std::string> texts;
  std::vector<std::string> stop_strings;
  absl::Status error;

  bool OnToken(size_t index, int32_t token, int32_t num_output_tokens, bool stops_sequence) {
    if (!error.ok()) return false;
    auto piece = outputs[index]->Push(token, num_output_tokens, stops_sequence);
    if (!piece.ok()) {
      error = piece.status();
      return false;
    }
    texts[index] += piece->text;
    if (!piece->stop_string) return false;
    stop_strings[index] = *piece->stop_string;
    return true;
  }
  // After the run: what the detokenizers held back (which may complete a stop string).
  absl::Status Finish(std::vector<GenerationResult>& results) {
    for (size_t i = 0; i < outputs.size() && error.ok(); ++i) {
      if (!stop_strings[i].empty()) continue;
      auto rest = outputs[i]->Finish();
      if (!rest.ok()) return rest.status();
      texts[i] += rest->text;
      if (rest->stop_string) {
        stop_strings[i] = *rest->stop_string;
        results[i].finish_reason = FinishReason::kStop;
      }
    }
    return error;
  }
};

void PrintResults(const RunCommandOptions& o, const std::vector<GenerationResult>& results, const SchedulerStats& stats,
                  int32_t num_blocks, const RunTexts* texts) {
  std::fprintf(stderr, "lattice run: steps=%lld preemptions=%lld max_step_tokens=%lld kv_blocks=%d\n",
               static_cast<long long>(stats.num_steps), static_cast<long long>(stats.num_preemptions),
               static_cast<long long>(stats.max_tokens_in_step), num_blocks);
  for (size_t i = 0; i < results.size(); ++i) {
    const GenerationResult& result = results[i];
    if (o.json) {
      nlohmann::json j = ResultToJson(result.prompt_ids, result.output_ids, result.logprobs, result.finish_reason);
      if (texts != nullptr) AddTextToJson(texts->texts[i], texts->stop_strings[i], j);
      std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    } else {
      std::cout << ResultToText(texts != nullptr ? texts->requests[i] : v1::GenerateRequest(), result.prompt_ids,
                                result.output_ids, result.finish_reason,
                                texts != nullptr ? &texts->texts[i] : nullptr)
                << (texts != nullptr ? "" : "\n");
    }
  }
  std::cout.flush();
}

void WriteTrace(const std::string& path, int rank, const std::vector<TraceEvent>& trace) {
  std::ofstream out(absl::StrCat(path, ".rank", rank, ".jsonl"));
  for (const TraceEvent& e : trace) {
    out << nlohmann::json{{"rank", rank},       {"step", e.step},         {"micro_batch", e.micro_batch},
                          {"stage", e.stage},   {"begin_ns", e.begin_ns}, {"end_ns", e.end_ns},
                          {"tokens", e.num_tokens}}
               .dump()
        << "\n";
  }
}

// The GPU model's options from the command's flags.
DeviceModelOptions DeviceOptionsFor(const RunCommandOptions& o) {
  DeviceModelOptions d;
  d.model_dir = o.model_dir;
  d.dummy_weights = o.load_format == "dummy";
  d.dtype = o.dtype;
  d.max_num_tokens = o.max_num_batched_tokens;
  d.max_num_seqs = o.max_num_seqs;
  d.max_model_len = o.max_model_len;
  d.block_size = o.block_size;
  d.gpu_memory_utilization = o.gpu_memory_utilization;
  d.num_kv_blocks = o.num_kv_blocks > 0 ? o.num_kv_blocks + 1 : 0;  // plus the null block
  d.cuda_graphs = !o.no_cuda_graphs;
  return d;
}

// One rank of a multi-rank run: join the process groups, load the shard (on the CPU or
// this rank's GPU), drive or follow.
int RunRank(const RunCommandOptions& o, const LaunchInfo& launch, const RankLayout& layout,
            const ModelConfig& config, const DistributedOptions& options,
            const std::vector<GenerationRequest>& requests, const RunDone& done) {
  absl::StatusOr<std::unique_ptr<TcpStoreClient>> store = ConnectStore(launch);
  if (!store.ok()) return Fail(store.status());
  absl::StatusOr<ProcessGroups> groups = MakeGlooProcessGroups(layout, launch.rank, **store);
  if (!groups.ok()) return Fail(groups.status());
  const RankComms comms{groups->world.get(), groups->tp.get(), groups->pp.get(), groups->ep.get()};
  const ModelShard shard = ShardFor(config, layout, launch.rank, options.pp_layers);
  DistributedOptions run_options = options;
  std::unique_ptr<gloo::rendezvous::PrefixStore> nccl_store;  // outlives the model's groups
  std::unique_ptr<DecoderModel> cpu_model;
  std::unique_ptr<DeviceModel> gpu_model;
  if (o.device == "cuda") {
    // One GPU per rank (this node's rank-th), NCCL groups beside the gloo ones, their ids
    // under their own prefix of the store. Every rank builds its model together (the
    // groups and the pool's profiling step are collective).
    nccl_store = std::make_unique<gloo::rendezvous::PrefixStore>("nccl", **store);
    DeviceModelOptions d = DeviceOptionsFor(o);
    d.gpu = launch.local_rank;
    absl::StatusOr<std::unique_ptr<DeviceModel>> model =
        MakeCudaModelForRank(config, d, layout, launch.rank, shard, *nccl_store);
    if (!model.ok()) return Fail(model.status());
    gpu_model = *std::move(model);
    // Each pool is sized on its own GPU (stages hold different layers): the scheduler
    // hands out blocks that every rank has, the smallest pool's.
    Tensor blocks = Tensor::Empty(DType::kI32, {1});
    blocks.data<int32_t>()[0] = -gpu_model->num_kv_blocks();
    comms.world->AllReduce(blocks, ReduceOp::kMax);
    run_options.engine.num_kv_blocks = -blocks.data<int32_t>()[0] - 1;  // less the null block
  } else {
    absl::StatusOr<std::unique_ptr<DecoderModel>> model = DecoderModel::Load(o.model_dir, config, shard);
    if (!model.ok()) return Fail(model.status());
    cpu_model = *std::move(model);
  }
  std::vector<TraceEvent> trace;
  int code = 0;
  if (launch.rank == 0) {
    const auto start = std::chrono::steady_clock::now();
    absl::StatusOr<DriverResult> driven =
        gpu_model ? RunDriver(*gpu_model, layout, comms, run_options, requests, &trace)
                  : RunDriver(*cpu_model, layout, comms, run_options, requests, &trace);
    if (!driven.ok()) {
      code = Fail(driven.status());
    } else {
      done({.results = driven->results,
            .stats = driven->stats,
            .num_kv_blocks = run_options.engine.num_kv_blocks,
            .elapsed_s = SecondsSince(start)});
    }
  } else if (absl::Status status = gpu_model ? RunFollower(*gpu_model, layout, launch.rank, comms, run_options, &trace)
                                             : RunFollower(*cpu_model, layout, launch.rank, comms, run_options, &trace);
             !status.ok()) {
    code = Fail(status);
  }
  if (!o.trace_path.empty()) WriteTrace(o.trace_path, launch.rank, trace);
  // Leave together: nobody tears down its connections while a peer still reads.
  groups->world->Barrier();
  return code;
}

}  // namespace

void AddRunCommandFlags(CLI::App& app, RunCommandOptions& o) {
  AddTextFlags(app, o.text);
  app.add_option("--tokenizer", o.tokenizer, "Directory of the tokenizer files (default: --model)");
  app.add_option("--chat-template", o.chat_template, "A Jinja file that replaces the model's chat template");
  app.add_option("--max-tokens", o.max_tokens, "Tokens to generate per prompt");
  app.add_option("--temperature", o.temperature, "Sampling temperature (0: greedy)");
  app.add_option("--top-p", o.top_p, "Nucleus sampling mass (1: off)");
  app.add_option("--top-k", o.top_k, "Keep the k most likely tokens (0 or -1: off)");
  app.add_option("--min-p", o.min_p, "Drop tokens below min_p times the top probability (0: off)");
  app.add_option("--seed", o.seed, "Per-request sampling seed (each prompt uses it)");
  AddSamplingControlFlags(app, o.sampling_controls);
  app.add_option("--logprobs", o.logprobs, "Top-k logprobs to return per output token");
  app.add_flag("--ignore-eos", o.ignore_eos, "Do not stop at the end-of-sequence token");
  app.add_flag("--json", o.json, "One JSON object per prompt, one per line");
  AddRunEngineFlags(app, o);
}

void AddRunEngineFlags(CLI::App& app, RunCommandOptions& o) {
  app.add_option("--model", o.model_dir, "Model directory (config.json + safetensors)")->required();
  app.add_option("--block-size", o.block_size, "KV cache block size in tokens")->check(CLI::Range(1, 1024));
  app.add_option("--num-kv-blocks", o.num_kv_blocks, "KV cache blocks per DP rank (0: enough for every prompt)");
  app.add_option("--max-num-batched-tokens", o.max_num_batched_tokens, "Token budget per step")
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--max-num-seqs", o.max_num_seqs, "Sequences per step")->check(CLI::Range(1, 1 << 20));
  app.add_option("--max-model-len", o.max_model_len, "Longest sequence (0: the config's)");
  app.add_option("--device", o.device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  AddCudaFlags(app, o.dtype, o.load_format, o.gpu_memory_utilization, o.no_cuda_graphs);
  AddLayoutFlags(app, o.layout);
  app.add_option("--rank", o.rank, "This process's rank (set by a launcher)");
  app.add_option("--world-size", o.world_size, "Number of ranks (set by a launcher)");
  app.add_option("--store-host", o.store_host, "Rendezvous store host (rank 0 hosts it)");
  app.add_option("--store-port", o.store_port, "Rendezvous store port");
  app.add_option("--trace", o.trace_path, "Write each rank's step trace to PATH.rankN.jsonl");
}

int RunCommand(const RunCommandOptions& o, const std::vector<std::string>& argv) {
  absl::StatusOr<std::vector<v1::GenerateRequest>> prompts = BuildPromptRequests(o.text);
  if (!prompts.ok()) return Fail(prompts.status());
  // The coordinator's text layer, in-process: the same checks, encodings and output text.
  TextServiceOptions text_options;
  text_options.tokenizer_dir = o.tokenizer.empty() ? o.model_dir : o.tokenizer;
  text_options.chat_template_file = o.chat_template;
  text_options.num_threads = 1;
  absl::StatusOr<std::unique_ptr<TextService>> text = TextService::Create(text_options);
  if (!text.ok()) return Fail(text.status());
  std::unique_ptr<RunTexts> texts;
  if ((*text)->has_tokenizer()) texts = std::make_unique<RunTexts>();
  std::vector<GenerationRequest> requests;
  for (size_t i = 0; i < prompts->size(); ++i) {
    const v1::GenerateRequest& prompt = (*prompts)[i];
    if (absl::Status status = (*text)->CheckRequest(prompt); !status.ok()) {
      return Fail(absl::Status(status.code(), absl::StrCat("prompt ", i, ": ", status.message())));
    }
    absl::StatusOr<std::vector<int32_t>> ids = (*text)->PromptIds(prompt);
    if (!ids.ok()) return Fail(absl::Status(ids.status().code(), absl::StrCat("prompt ", i, ": ", ids.status().message())));
    GenerationRequest request;
    request.prompt_ids = *std::move(ids);
    request.max_tokens = o.max_tokens;
    request.ignore_eos = o.ignore_eos;
    request.num_logprobs = o.logprobs;
    request.sampling.set_temperature(o.temperature);
    request.sampling.set_top_k(o.top_k);
    request.sampling.set_top_p(o.top_p);
    request.sampling.set_min_p(o.min_p);
    request.sampling.set_seed(o.seed);
    if (absl::Status status = SetSamplingControls(o.sampling_controls, request.sampling); !status.ok()) {
      return Fail(status);
    }
    if (texts != nullptr) {
      v1::GenerateRequest with_sampling = prompt;
      with_sampling.mutable_sampling()->set_min_tokens(request.sampling.min_tokens());
      texts->outputs.push_back(
          std::make_unique<OutputText>(*(*text)->tokenizer(), request.prompt_ids, with_sampling));
      texts->requests.push_back(std::move(with_sampling));
    }
    requests.push_back(std::move(request));
  }
  if (texts != nullptr) {
    texts->texts.resize(requests.size());
    texts->stop_strings.resize(requests.size());
  }
  TokenHook hook;
  if (texts != nullptr) {
    hook = [&texts](size_t index, int32_t token, int32_t n, bool stops) {
      return texts->OnToken(index, token, n, stops);
    };
  }
  int code = 0;
  const int run_code = RunGeneration(
      o, argv, requests,
      [&](const RunOutcome& outcome) {
        std::vector<GenerationResult> results = outcome.results;
        if (texts != nullptr) {
          if (absl::Status status = texts->Finish(results); !status.ok()) {
            code = Fail(status);
            return;
          }
        }
        PrintResults(o, results, outcome.stats, outcome.num_kv_blocks, texts.get());
      },
      hook);
  return run_code != 0 ? run_code : code;
}

int RunGeneration(const RunCommandOptions& o, const std::vector<std::string>& argv,
                  const std::vector<GenerationRequest>& requests, const RunDone& done, const TokenHook& token_hook) {
  // Everything that can be wrong with the command is reported before any weight
  // loads and before any other rank starts.
  absl::StatusOr<ModelConfig> config = LoadModelConfig(o.model_dir);
  if (!config.ok()) return Fail(config.status());
  absl::StatusOr<CheckedLayout> checked = CheckLayout(o.layout, *config);
  if (!checked.ok()) return Fail(checked.status());
  const ParallelConfig parallel = o.layout.parallel();
  const RankLayout& layout = checked->layout;
  DistributedOptions options;
  options.pp_layers = checked->pp_layers;
  // Requests go to DP ranks round-robin; size each rank's cache for what it gets.
  std::vector<int64_t> blocks_per_dp(o.layout.dp, 0);
  for (size_t i = 0; i < requests.size(); ++i) {
    blocks_per_dp[i % o.layout.dp] += NumBlocksFor(
        static_cast<int64_t>(requests[i].prompt_ids.size()) + std::max(requests[i].max_tokens, 0), o.block_size);
  }
  options.engine.block_size = o.block_size;
  options.engine.num_kv_blocks =
      o.num_kv_blocks > 0
          ? o.num_kv_blocks
          : static_cast<int32_t>(std::max<int64_t>(*std::max_element(blocks_per_dp.begin(), blocks_per_dp.end()), 1));
  options.engine.max_num_batched_tokens = o.max_num_batched_tokens;
  options.engine.max_num_seqs = o.max_num_seqs;
  options.engine.max_model_len = o.max_model_len;
  options.num_micro_batches = o.layout.num_micro_batches;
  options.engine.token_hook = token_hook;
  {
    const Scheduler check(MakeSchedulerOptions(*config, options.engine, o.layout.dp));
    if (absl::Status status = ValidateAll(check, requests); !status.ok()) return Fail(status);
  }

  LaunchFlags flags;
  flags.rank = o.rank;
  flags.world_size = o.world_size;
  flags.store_host = o.store_host;
  flags.store_port = o.store_port;
  const bool launched_elsewhere = o.rank.has_value() || std::getenv("OMPI_COMM_WORLD_RANK") != nullptr ||
                                  std::getenv("PMIX_RANK") != nullptr || std::getenv("RANK") != nullptr ||
                                  std::getenv("LWS_WORKER_INDEX") != nullptr;
  if (o.device == "cuda" && parallel.world_size() == 1 && !launched_elsewhere) {
    absl::StatusOr<std::unique_ptr<DeviceModel>> model = MakeCudaModel(*config, DeviceOptionsFor(o));
    if (!model.ok()) return Fail(model.status());
    Engine engine(**model, options.engine);
    const auto start = std::chrono::steady_clock::now();
    absl::StatusOr<std::vector<GenerationResult>> results = engine.Generate(requests);
    if (!results.ok()) return Fail(results.status());
    done({.results = *std::move(results),
          .stats = engine.stats(),
          .num_kv_blocks = (*model)->num_kv_blocks() - 1,
          .elapsed_s = SecondsSince(start)});
    return 0;
  }
  if (o.load_format == "dummy" && o.device != "cuda") {
    return Fail(absl::InvalidArgumentError("--load-format dummy needs --device cuda"));
  }
  if (parallel.world_size() == 1 && !launched_elsewhere) {
    absl::StatusOr<std::unique_ptr<DecoderModel>> model = DecoderModel::Load(o.model_dir, *config);
    if (!model.ok()) return Fail(model.status());
    Engine engine(**model, options.engine);
    const auto start = std::chrono::steady_clock::now();
    absl::StatusOr<std::vector<GenerationResult>> results = engine.Generate(requests);
    if (!results.ok()) return Fail(results.status());
    done({.results = *std::move(results),
          .stats = engine.stats(),
          .num_kv_blocks = options.engine.num_kv_blocks,
          .elapsed_s = SecondsSince(start)});
    return 0;
  }

  absl::StatusOr<LaunchInfo> launch;
  std::unique_ptr<LocalLauncher> launcher;
  if (launched_elsewhere) {
    launch = DiscoverLaunch(flags);
    if (!launch.ok()) return Fail(launch.status());
    if (launch->world_size != parallel.world_size()) {
      return Fail(absl::InvalidArgumentError(absl::StrCat("the launcher started ", launch->world_size,
                                                          " ranks but ", parallel.ToString(), " needs ",
                                                          parallel.world_size())));
    }
  } else {
    // This process is rank 0 of a run it starts itself: host the store on a free
    // loopback port, then start the other ranks.
    absl::StatusOr<std::unique_ptr<TcpStoreServer>> server =
        TcpStoreServer::Start({.bind_address = "127.0.0.1", .port = 0});
    if (!server.ok()) return Fail(server.status());
    LaunchInfo info;
    info.world_size = parallel.world_size();
    info.store_host = "127.0.0.1";
    info.store_port = (*server)->port();
    info.source = "lattice run";
    info.store_server = std::shared_ptr<TcpStoreServer>(std::move(*server));
    launch = std::move(info);
    absl::StatusOr<std::unique_ptr<LocalLauncher>> started =
        LocalLauncher::StartRanks(argv, parallel.world_size(), "127.0.0.1", launch->store_port);
    if (!started.ok()) return Fail(started.status());
    launcher = *std::move(started);
  }
  const int code = RunRank(o, *launch, layout, *config, options, requests, done);
  if (launcher) {
    if (code != 0) launcher->Kill();
    launcher->Wait();
  }
  FinalizeLaunch(*launch);
  return code;
}

}  // namespace lattice
