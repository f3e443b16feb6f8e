// The serving worker (see worker_process.h): the control-plane state machine
// Register -> Assignment -> Loaded -> CacheConfig -> StepRequest* -> Shutdown.
#include "worker/worker_process.h"

#include <fstream>

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <limits>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gloo/rendezvous/prefix_store.h"
#include "parallel/process_groups.h"
#include "parallel/tcp_store.h"
#include "worker/control_client.h"
#include "worker/kv_cache.h"
#include "worker/layout.h"
#include "worker/model.h"
#include "worker/model_config.h"
#include "worker/model_runner.h"
#include "worker/sequence_table.h"
#include "worker/sim/sim_stepper.h"

namespace lattice {
namespace {

// How long tearing down after a failure may take. Gloo waits for peers to receive
// what this rank sent, and after a failure they may be gone.
constexpr std::chrono::seconds kFailureTeardownGrace{10};
// How long the Shutdown barrier waits for the other ranks. Peers that are only
// behind by the steps they still hold arrive well within it; a hung one never does
// (a dead one fails the barrier at once).
constexpr std::chrono::seconds kShutdownBarrierGrace{60};

#define WORKER_RETURN_IF_ERROR(expr)                \
  do {                                              \
    if (absl::Status s = (expr); !s.ok()) return s; \
  } while (0)

// Ends the process with exit code 1, printing `why`, unless destroyed within `grace`:
// bounds waits on peers that may be gone.
class ExitTimer {
 public:
  ExitTimer(std::chrono::milliseconds grace, std::string why)
      : thread_([this, grace, why = std::move(why)] {
          if (done_.WaitForNotificationWithTimeout(absl::FromChrono(grace))) return;
          std::fprintf(stderr, "lattice worker: %s; exiting\n", why.c_str());
          std::fflush(stderr);
          std::_Exit(1);
        }) {}
  ~ExitTimer() {
    done_.Notify();
    thread_.join();
  }

 private:
  absl::Notification done_;
  std::thread thread_;
};

std::string KindName(const pb::CoordinatorMessage& message) {
  const auto* field = pb::CoordinatorMessage::descriptor()->FindFieldByNumber(message.kind_case());
  return field != nullptr ? field->name() : "an empty message";
}

std::string HostName() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0) return "unknown";
  return name;
}

// One rank's serving state. Members are declared in construction order, so they are
// destroyed runner first and store last.
class Worker {
 public:
  Worker(const WorkerOptions& options, int registered_rank, ControlClient& client)
      : options_(options), registered_rank_(registered_rank), client_(client) {}

  // Returns OK after Shutdown; otherwise the first error.
  absl::Status Run();
  int rank() const { return rank_ >= 0 ? rank_ : registered_rank_; }

 private:
  // The next message that is not a heartbeat (the coordinator's heartbeats need no
  // answer: the worker never times out on its own). UNAVAILABLE when the stream ends.
  absl::StatusOr<pb::CoordinatorMessage> Next(const char* waiting_for);
  absl::Status Load(const pb::Assignment& assignment);
  absl::Status LoadOnGpu(const pb::Assignment& assignment, const ModelConfig& config, const RankLayout& layout,
                         const ModelShard& shard);
  absl::Status LoadSimulated(const pb::Assignment& assignment, const ModelConfig& config, const RankLayout& layout,
                             const std::vector<int>& pp_layers);
  absl::Status AllocateCache(const pb::CacheConfig& cache);
  absl::Status Serve();
  absl::Status ServeSimulated();
  absl::Status Leave(const pb::Shutdown& shutdown);
  absl::Status Send(const pb::WorkerMessage& message, const char* what);

  const WorkerOptions& options_;
  const int registered_rank_;
  ControlClient& client_;
  int rank_ = -1;
  int32_t block_size_ = 0;
  int64_t kv_cache_memory_bytes_ = 0;
  int32_t max_num_blocks_ = 0;
  int64_t num_steps_executed_ = 0;
  pb::ModelSummary summary_;
  std::unique_ptr<TcpStoreClient> store_;
  std::unique_ptr<gloo::rendezvous::PrefixStore> run_store_;
  ProcessGroups groups_;
  std::unique_ptr<DecoderModel> model_;          // cpu
  std::unique_ptr<DeviceModel> device_model_;    // cuda
  std::unique_ptr<gloo::rendezvous::PrefixStore> nccl_store_;
  std::optional<SequenceTable> table_;
  std::unique_ptr<ModelRunner> runner_;
  // sim: the cost model until the cache is sized, then (on answering ranks) the stepper.
  bool simulated_ = false;
  bool answers_ = false;
  std::optional<sim::CostModel> cost_model_;
  int64_t vocab_size_ = 0;
  std::unique_ptr<sim::SimStepper> stepper_;
};

absl::StatusOr<pb::CoordinatorMessage> Worker::Next(const char* waiting_for) {
  pb::CoordinatorMessage message;
  while (client_.Read(&message)) {
    if (!message.has_heartbeat()) return message;
  }
  return absl::UnavailableError(absl::StrCat(
      "the coordinator ended the control stream while this worker waited for ", waiting_for));
}

absl::Status Worker::Send(const pb::WorkerMessage& message, const char* what) {
  if (client_.Write(message)) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat("the control stream broke sending ", what));
}

absl::Status Unexpected(const pb::CoordinatorMessage& message, const char* waiting_for) {
  return absl::FailedPreconditionError(absl::StrCat("protocol error: the coordinator sent ",
                                                    KindName(message),
                                                    " while this worker waited for ", waiting_for));
}

absl::Status Worker::Run() {
  absl::StatusOr<pb::CoordinatorMessage> message = Next("an Assignment");
  if (!message.ok()) return message.status();
  if (message->has_shutdown()) return Leave(message->shutdown());
  if (!message->has_assignment()) return Unexpected(*message, "an Assignment");
  WORKER_RETURN_IF_ERROR(Load(message->assignment()));
  pb::WorkerMessage loaded;
  loaded.mutable_loaded()->set_rank(rank_);
  loaded.mutable_loaded()->set_max_num_blocks(max_num_blocks_);
  *loaded.mutable_loaded()->mutable_model() = summary_;
  WORKER_RETURN_IF_ERROR(Send(loaded, "Loaded"));

  message = Next("a CacheConfig");
  if (!message.ok()) return message.status();
  if (message->has_shutdown()) return Leave(message->shutdown());
  if (!message->has_cache_config()) return Unexpected(*message, "a CacheConfig");
  WORKER_RETURN_IF_ERROR(AllocateCache(message->cache_config()));
  return Serve();
}

absl::Status Worker::Load(const pb::Assignment& a) {
  rank_ = a.rank();
  if (rank_ < 0 || rank_ >= a.world_size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the assignment's rank ", rank_, " is outside its world of ", a.world_size()));
  }
  // The launcher's rank encodes placement (TP groups inside a node): never override it.
  if (registered_rank_ >= 0 && a.launch_rank() != registered_rank_) {
    return absl::FailedPreconditionError(absl::StrCat("the coordinator assigned launch rank ", a.launch_rank(),
                                                      " to a worker launched as rank ", registered_rank_));
  }
  if (a.block_size() <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("the assignment's block_size is ", a.block_size()));
  }
  block_size_ = a.block_size();
  const ParallelConfig parallel{.tp = a.parallel().tp(),
                                .pp = a.parallel().pp(),
                                .dp = a.parallel().dp(),
                                .ep = a.parallel().ep()};
  absl::StatusOr<RankLayout> layout = RankLayout::Create(a.world_size(), parallel);
  if (!layout.ok()) return layout.status();
  absl::StatusOr<ModelConfig> config = LoadModelConfig(a.model_dir());
  if (!config.ok()) return config.status();
  const std::vector<int> pp_layers(a.pp_layers().begin(), a.pp_layers().end());
  WORKER_RETURN_IF_ERROR(ValidateLayoutForModel(*config, parallel, pp_layers));
  summary_.set_architecture(config->architecture_name);
  summary_.set_vocab_size(config->vocab_size);
  summary_.set_max_model_len(DefaultMaxModelLen(*config));
  summary_.mutable_eos_token_ids()->Add(config->eos_token_ids.begin(), config->eos_token_ids.end());
  summary_.set_num_hidden_layers(static_cast<int32_t>(config->num_hidden_layers));
  summary_.set_hidden_size(config->hidden_size);
  if (options_.device == "sim") return LoadSimulated(a, *config, *layout, pp_layers);

  // Groups first, then weights: every rank joins right after its assignment, so a
  // slow load on one rank cannot run out a peer's rendezvous timeout.
  absl::StatusOr<std::unique_ptr<TcpStoreClient>> store = TcpStoreClient::Connect(
      a.store_host(), a.store_port(), {.connect_timeout = options_.connect_timeout});
  if (!store.ok()) return store.status();
  store_ = *std::move(store);
  // Keys under the run id: a restarted group never meets its predecessor's keys.
  run_store_ = std::make_unique<gloo::rendezvous::PrefixStore>(a.run_id(), *store_);
  GlooOptions gloo;
  gloo.hostname = options_.data_plane_host;
  absl::StatusOr<ProcessGroups> groups = MakeGlooProcessGroups(*layout, rank_, *run_store_, gloo);
  if (!groups.ok()) return groups.status();
  groups_ = *std::move(groups);

  const ModelShard shard = ShardFor(*config, *layout, rank_, pp_layers);
  if (options_.device == "cuda") return LoadOnGpu(a, *config, *layout, shard);
  absl::StatusOr<std::unique_ptr<DecoderModel>> model =
      DecoderModel::Load(a.model_dir(), *config, shard);
  if (!model.ok()) return model.status();
  model_ = *std::move(model);

  kv_cache_memory_bytes_ = a.kv_cache_memory_bytes() > 0        ? a.kv_cache_memory_bytes()
                           : options_.kv_cache_memory_bytes > 0 ? options_.kv_cache_memory_bytes
                                                                : kDefaultCpuKvCacheMemoryBytes;
  const int64_t bytes_per_block =
      static_cast<int64_t>(KvCache::BytesPerBlock(model_->kv_cache_shape(), block_size_));
  const int64_t blocks = std::min<int64_t>(kv_cache_memory_bytes_ / bytes_per_block,
                                           std::numeric_limits<int32_t>::max());
  // The count includes the null block 0, which the coordinator never hands out.
  if (blocks < 2) {
    return absl::ResourceExhaustedError(absl::StrCat(
        kv_cache_memory_bytes_, " bytes of KV cache memory hold ", blocks, " blocks of ",
        bytes_per_block, " bytes; a worker needs at least 2 (the null block and one)"));
  }
  max_num_blocks_ = static_cast<int32_t>(blocks);
  const int end_layer =
      shard.end_layer < 0 ? static_cast<int>(config->num_hidden_layers) : shard.end_layer;
  std::fprintf(
      stderr,
      "lattice worker: rank %d of %d (%s) loaded layers [%d, %d) of %s; %d KV blocks of %d tokens "
      "fit in %lld bytes\n",
      rank_, a.world_size(), parallel.ToString().c_str(), shard.first_layer, end_layer,
      a.model_dir().c_str(), max_num_blocks_, block_size_,
      static_cast<long long>(kv_cache_memory_bytes_));
  return absl::OkStatus();
}

absl::Status Worker::LoadOnGpu(const pb::Assignment& a, const ModelConfig& config, const RankLayout& layout,
                               const ModelShard& shard) {
  DeviceModelOptions d = options_.cuda;
  d.model_dir = a.model_dir();
  d.max_num_tokens = a.max_num_batched_tokens() > 0 ? a.max_num_batched_tokens() : d.max_num_tokens;
  d.max_num_seqs = a.max_num_seqs() > 0 ? a.max_num_seqs() : d.max_num_seqs;
  const int64_t model_len = DefaultMaxModelLen(config);
  d.max_model_len = static_cast<int32_t>(a.max_model_len() > 0 ? std::min(a.max_model_len(), model_len) : model_len);
  d.block_size = block_size_;
  d.gpu = a.launch_rank();
  absl::StatusOr<std::unique_ptr<DeviceModel>> model;
  if (a.world_size() == 1) {
    model = MakeCudaModel(config, d);
  } else {
    // NCCL groups beside the gloo ones, their ids under their own prefix.
    nccl_store_ = std::make_unique<gloo::rendezvous::PrefixStore>("nccl", *run_store_);
    model = MakeCudaModelForRank(config, d, layout, rank_, shard, *nccl_store_);
  }
  if (!model.ok()) return model.status();
  device_model_ = *std::move(model);
  // The pool is sized on the GPU (--gpu-memory-utilization); block 0 is the null block.
  max_num_blocks_ = device_model_->num_kv_blocks();
  std::fprintf(stderr, "lattice worker: rank %d loaded %s on the GPU; %d KV blocks of %d tokens\n", rank_,
               a.model_dir().c_str(), max_num_blocks_, block_size_);
  return absl::OkStatus();
}

absl::Status Worker::LoadSimulated(const pb::Assignment& a, const ModelConfig& config, const RankLayout& layout,
                                   const std::vector<int>& pp_layers) {
  absl::StatusOr<sim::Hardware> hardware = sim::LoadHardware(options_.sim_hardware);
  if (!hardware.ok()) return hardware.status();
  const std::string& dtype = options_.cuda.dtype;
  const int dtype_bytes = dtype == "float32" || (dtype == "auto" && config.dtype == DType::kF32) ? 4 : 2;
  groups_.coords = layout.Coords(rank_);
  const int stage = groups_.coords.pp_rank;
  cost_model_.emplace(config, layout, pp_layers, *hardware, dtype_bytes);
  const int64_t blocks = std::min<int64_t>(
      cost_model_->KvBlocksPerGpu(stage, block_size_, options_.cuda.gpu_memory_utilization),
      std::numeric_limits<int32_t>::max());
  if (blocks < 2) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "stage ", stage, "'s shard of ", a.model_dir(), " holds ", cost_model_->WeightBytesPerGpu(stage),
        " bytes of weights per GPU, which leave no room for a KV cache on a simulated ", hardware->name, " (",
        static_cast<int64_t>(hardware->memory_bytes), " bytes at utilization ",
        options_.cuda.gpu_memory_utilization, ")"));
  }
  max_num_blocks_ = static_cast<int32_t>(blocks);
  simulated_ = true;
  answers_ = stage == layout.config().pp - 1 && groups_.coords.tp_rank == 0;
  vocab_size_ = config.vocab_size;
  if (answers_ && (registered_rank_ < 8 || groups_.coords.dp_rank == 0)) {
    std::fprintf(stderr, "lattice worker: rank %d simulates %s on %s; %d KV blocks of %d tokens\n", rank_,
                 a.model_dir().c_str(), hardware->name.c_str(), max_num_blocks_, block_size_);
  }
  return absl::OkStatus();
}

absl::Status Worker::AllocateCache(const pb::CacheConfig& cache) {
  // max_num_blocks was computed for the assignment's block size.
  if (cache.block_size() != block_size_) {
    return absl::InvalidArgumentError(absl::StrCat("CacheConfig.block_size ", cache.block_size(),
                                                   " differs from the assignment's ", block_size_));
  }
  if (cache.num_blocks() < 2 || cache.num_blocks() > max_num_blocks_) {
    return absl::InvalidArgumentError(absl::StrCat("CacheConfig.num_blocks ", cache.num_blocks(),
                                                   " is outside [2, ", max_num_blocks_,
                                                   "] (what this worker holds)"));
  }
  if (simulated_) {
    if (answers_) {
      stepper_ = std::make_unique<sim::SimStepper>(*std::move(cost_model_), groups_.coords.dp_rank, block_size_,
                                                   cache.num_blocks(), vocab_size_);
    }
    return absl::OkStatus();
  }
  table_.emplace(groups_.coords.dp_rank, block_size_, cache.num_blocks());
  if (device_model_) {
    runner_ = std::make_unique<ModelRunner>(*device_model_, block_size_, groups_.coords.pp_rank);
    return absl::OkStatus();
  }
  const bool pipelined = groups_.pp->size() > 1;
  runner_ = std::make_unique<ModelRunner>(
      *model_, KvCacheOptions{.num_blocks = cache.num_blocks(), .block_size = block_size_},
      RunnerPlacement{.tp = groups_.tp.get(),
                      .ep = groups_.ep.get(),
                      .pp = pipelined ? groups_.pp.get() : nullptr});
  return absl::OkStatus();
}

absl::Status Worker::Serve() {
  if (simulated_) return ServeSimulated();
  while (true) {
    absl::StatusOr<pb::CoordinatorMessage> message = Next("a StepRequest");
    if (!message.ok()) return message.status();
    if (message->has_shutdown()) return Leave(message->shutdown());
    if (!message->has_step()) return Unexpected(*message, "a StepRequest");
    const pb::StepRequest& step = message->step();
    absl::StatusOr<std::vector<ScheduledChunk>> chunks = table_->Apply(step);
    if (!chunks.ok()) return chunks.status();
    const std::vector<SampledToken> tokens =
        runner_->Execute(step.step(), step.micro_batch(), *chunks);
    ++num_steps_executed_;
    if (!runner_->samples()) continue;
    pb::WorkerMessage result;
    *result.mutable_step_result() = table_->MakeResult(step.step(), tokens);
    WORKER_RETURN_IF_ERROR(Send(result, "a StepResult"));
  }
}

absl::Status Worker::ServeSimulated() {
  // Results leave in order, each once its simulated stages finish: the last stage's
  // clock never runs backwards, so a queue in step order is also in due order.
  struct Due {
    sim::SimStepper::Clock::time_point at;
    pb::WorkerMessage message;
  };
  std::mutex mu;
  std::condition_variable queued;
  std::deque<Due> queue;
  bool stop = false;
  bool broken = false;
  std::thread sender([&] {
    while (true) {
      Due next;
      {
        std::unique_lock lock(mu);
        queued.wait(lock, [&] { return stop || !queue.empty(); });
        if (queue.empty()) return;
        next = std::move(queue.front());
        queue.pop_front();
      }
      std::this_thread::sleep_until(next.at);
      if (!client_.Write(next.message)) {
        std::lock_guard lock(mu);
        broken = true;
        return;
      }
    }
  });
  absl::Status status = absl::OkStatus();
  while (status.ok()) {
    absl::StatusOr<pb::CoordinatorMessage> message = Next("a StepRequest");
    if (!message.ok()) {
      status = message.status();
    } else if (message->has_shutdown()) {
      status = Leave(message->shutdown());
      break;
    } else if (!message->has_step()) {
      status = Unexpected(*message, "a StepRequest");
    } else if (stepper_ != nullptr) {
      absl::StatusOr<sim::SimStepper::Outcome> outcome =
          stepper_->Step(message->step(), sim::SimStepper::Clock::now());
      if (!outcome.ok()) {
        status = outcome.status();
        break;
      }
      Due due{.at = outcome->due, .message = {}};
      *due.message.mutable_step_result() = std::move(outcome->result);
      std::lock_guard lock(mu);
      if (broken) status = absl::UnavailableError("the control stream broke sending a StepResult");
      queue.push_back(std::move(due));
      queued.notify_one();
    }
    ++num_steps_executed_;
  }
  {
    std::lock_guard lock(mu);
    stop = true;
    if (!status.ok()) queue.clear();
  }
  queued.notify_one();
  sender.join();
  return status;
}

absl::Status Worker::Leave(const pb::Shutdown& shutdown) {
  std::fprintf(stderr, "lattice worker: rank %d shutting down%s%s\n", rank(),
               shutdown.reason().empty() ? "" : ": ", shutdown.reason().c_str());
  // Nothing is left to report, and the coordinator may close the stream while the
  // barrier below waits for slower peers: that must not end the process.
  client_.StopHeartbeats();
  // Leave together: a peer may still be receiving what this rank sent last. Before
  // the first step nothing has crossed the data plane (each rank loads its shard from
  // the checkpoint alone), so a Shutdown then (also the coordinator's answer to a peer
  // that failed to load, which would never reach the barrier) needs none.
  if (num_steps_executed_ > 0 && !simulated_) {
    ExitTimer bound(kShutdownBarrierGrace,
                    absl::StrCat("the other ranks did not reach the shutdown barrier within ",
                                 kShutdownBarrierGrace.count(), " s (one of them failed?)"));
    groups_.world->Barrier();
  }
  return absl::OkStatus();
}

// Logs an error as it happens (the tear-down after it may take a while).
absl::Status Fail(int rank, const absl::Status& status) {
  const std::string who = rank >= 0 ? absl::StrCat(" (rank ", rank, ")") : "";
  std::fprintf(stderr, "lattice worker%s: %s\n", who.c_str(), status.ToString().c_str());
  std::fflush(stderr);
  return status;
}

}  // namespace

absl::Status RunWorker(const WorkerOptions& options) {
  if (options.device != "cpu" && options.device != "cuda" && options.device != "sim") {
    return Fail(-1, absl::InvalidArgumentError(
                        absl::StrCat("--device ", options.device, ": expected cpu, cuda or sim")));
  }
  if (options.heartbeat_interval.count() <= 0 || options.kv_cache_memory_bytes < 0) {
    return Fail(-1, absl::InvalidArgumentError(
                        "the heartbeat interval must be positive and the KV memory not negative"));
  }
  absl::StatusOr<int> rank = DiscoverWorkerRank(options.rank);
  if (!rank.ok()) return Fail(-1, rank.status());

  pb::WorkerMessage hello;
  pb::Register& r = *hello.mutable_register_();
  r.set_rank(*rank);
  r.set_hostname(HostName());
  r.set_pid(static_cast<int32_t>(::getpid()));
  r.set_device(options.device);
  r.set_data_plane_host(options.data_plane_host);
  absl::StatusOr<std::unique_ptr<ControlClient>> client =
      ControlClient::Connect(options.coordinator, options.connect_timeout, hello);
  if (!client.ok()) return Fail(*rank, client.status());
  (*client)->StartHeartbeats(options.heartbeat_interval);
  const std::string as =
      *rank >= 0 ? absl::StrCat("as rank ", *rank) : "(the coordinator assigns the rank)";
  std::fprintf(stderr, "lattice worker: registered with %s %s\n", options.coordinator.c_str(),
               as.c_str());

  auto worker = std::make_unique<Worker>(options, *rank, **client);
  absl::Status status = worker->Run();
  if (status.ok()) {
    worker.reset();                    // after the barrier: every peer is done with this rank
    (*client)->Close().IgnoreError();  // a coordinator that hung up first is fine
    return absl::OkStatus();
  }
  if ((*client)->broken()) {
    const absl::Status call = (*client)->Close();
    // The call's own code says more (a rejected registration, a dead coordinator).
    status =
        absl::Status(call.ok() ? status.code() : call.code(),
                     absl::StrCat(status.message(), " (the call ended: ", call.ToString(), ")"));
  } else {
    pb::WorkerMessage error;
    error.mutable_error()->set_message(status.ToString());
    (*client)->Write(error);
    (*client)->Close().IgnoreError();
  }
  Fail(worker->rank(), status).IgnoreError();
  ExitTimer bound(kFailureTeardownGrace, "tear-down is waiting on peers that are gone");
  worker.reset();
  return status;
}

absl::StatusOr<int64_t> ParseByteSize(std::string_view text) {
  const char* begin = text.data();
  const char* end = begin + text.size();
  int64_t value = 0;
  const auto [rest, ec] = std::from_chars(begin, end, value);
  auto invalid = [&](const char* why) {
    return absl::InvalidArgumentError(absl::StrCat("byte size '", std::string(text), "': ", why));
  };
  if (ec == std::errc::result_out_of_range) return invalid("too large");
  if (ec != std::errc() || text.empty() || text.front() == '-') {
    return invalid("expected a non-negative integer with an optional unit (512M, 2G)");
  }
  std::string unit(rest, end);
  std::transform(unit.begin(), unit.end(), unit.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  int shift = -1;
  if (unit.empty() || unit == "b") shift = 0;
  const std::string_view letters = "kmgt";
  for (size_t i = 0; i < letters.size() && shift < 0; ++i) {
    const std::string l(1, letters[i]);
    if (unit == l || unit == l + "b" || unit == l + "i" || unit == l + "ib")
      shift = 10 * static_cast<int>(i + 1);
  }
  if (shift < 0) return invalid("unknown unit (expected B, K, M, G or T)");
  if (value > (std::numeric_limits<int64_t>::max() >> shift)) return invalid("too large");
  return value << shift;
}

absl::StatusOr<int> DiscoverWorkerRank(std::optional<int> flag) {
  if (flag.has_value()) {
    if (*flag < -1)
      return absl::InvalidArgumentError(absl::StrCat("--rank ", *flag, ": expected >= 0 (or -1)"));
    return *flag;
  }
  for (const char* name : {"LWS_WORKER_INDEX", "RANK"}) {
    const char* text = std::getenv(name);
    if (text == nullptr || text[0] == '\0') continue;  // empty is unset, as in bootstrap.h
    const std::string_view value(text);
    int rank = 0;
    const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), rank);
    if (value.empty() || ec != std::errc() || end != value.data() + value.size() || rank < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, "='", std::string(value), "' is not a rank (a non-negative integer)"));
    }
    return rank;
  }
  return -1;
}

}  // namespace lattice

namespace lattice {

absl::StatusOr<int64_t> ParseKvCacheMemory(std::string_view text) {
  if (text.find('.') == std::string_view::npos) return ParseByteSize(text);
  double fraction = 0;
  if (!absl::SimpleAtod(absl::string_view(text.data(), text.size()), &fraction) || !(fraction > 0 && fraction <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat("--kv-cache-memory '", std::string(text),
                                                   "' is neither a byte size nor a fraction in (0, 1]"));
  }
  std::ifstream meminfo("/proc/meminfo");
  std::string key, unit;
  int64_t kib = 0;
  while (meminfo >> key >> kib >> unit) {
    if (key == "MemAvailable:") return static_cast<int64_t>(fraction * static_cast<double>(kib) * 1024.0);
  }
  return absl::UnavailableError("--kv-cache-memory: MemAvailable is not in /proc/meminfo");
}

}  // namespace lattice
