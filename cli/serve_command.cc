// `lattice serve` and `lattice coordinator` (see serve_command.h).
#include "cli/serve_command.h"

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cli/launch.h"
#include "coordinator/server.h"
#include "parallel/bootstrap.h"
#include "parallel/tcp_store.h"
#include "worker/layout.h"
#include "worker/model_config.h"
#include "worker/worker_process.h"

namespace lattice {
namespace {

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "lattice serve: %s\n", std::string(status.message()).c_str());
  return 2;
}

sigset_t BlockStopSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return set;
}

}  // namespace

void AddServeFlags(CLI::App& app, ServeOptions& o) {
  app.add_option("--model", o.model_dir, "Model directory (config.json + safetensors)")->required();
  app.add_option("--host", o.host, "Address to listen on");
  app.add_option("--port", o.port, "gRPC port (0: any free port)")->check(CLI::Range(0, 65535));
  app.add_option("--tp", o.tp, "Tensor-parallel size")->check(CLI::Range(1, 1024));
  app.add_option("--pp", o.pp, "Pipeline-parallel size")->check(CLI::Range(1, 1024));
  app.add_option("--dp", o.dp, "Data-parallel size")->check(CLI::Range(1, 1024));
  app.add_option("--ep", o.ep, "Expert-parallel size (1, or dp * tp)")->check(CLI::Range(1, 1 << 20));
  app.add_option("--pp-layers", o.pp_layers, "Layers per pipeline stage, e.g. 3,5");
  app.add_option("--num-micro-batches", o.num_micro_batches, "Steps in flight (default: pp)")
      ->check(CLI::Range(0, 1024));
  app.add_option("--block-size", o.block_size, "KV cache block size in tokens")->check(CLI::Range(1, 1024));
  app.add_option("--kv-cache-memory", o.kv_cache_memory, "KV cache memory per worker (e.g. 256M, 4G)");
  app.add_option("--max-num-batched-tokens", o.max_num_batched_tokens, "Token budget per step")
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--max-num-seqs", o.max_num_seqs, "Sequences per step")->check(CLI::Range(1, 1 << 20));
  app.add_flag("--no-prefix-caching", o.no_prefix_caching, "Disable the prefix cache");
  app.add_option("--max-queued-requests", o.max_queued_requests, "Queue bound (RESOURCE_EXHAUSTED past it)")
      ->check(CLI::Range(1, 1 << 24));
  app.add_option("--store-port", o.store_port, "Rendezvous store port (0: any free port)")
      ->check(CLI::Range(0, 65535));
  app.add_option("--store-host", o.store_host, "Address workers use to reach the store");
  app.add_option("--device", o.device, "cpu or cuda");
}

int ServeCommand(const ServeOptions& o, bool spawn_workers) {
  // Everything checkable is checked before any process starts or weight loads.
  absl::StatusOr<ModelConfig> config = LoadModelConfig(o.model_dir);
  if (!config.ok()) return Fail(config.status());
  const ParallelConfig parallel{.tp = o.tp, .pp = o.pp, .dp = o.dp, .ep = o.ep};
  absl::StatusOr<RankLayout> layout = RankLayout::Create(parallel.world_size(), parallel);
  if (!layout.ok()) return Fail(layout.status());
  std::vector<int32_t> pp_layers;
  for (absl::string_view part : absl::StrSplit(o.pp_layers, ',', absl::SkipEmpty())) {
    int value = 0;
    if (!absl::SimpleAtoi(part, &value)) {
      return Fail(absl::InvalidArgumentError(absl::StrCat("--pp-layers: '", std::string(part), "' is not a number")));
    }
    pp_layers.push_back(value);
  }
  if (absl::Status s = ValidateLayoutForModel(*config, parallel, {pp_layers.begin(), pp_layers.end()}); !s.ok()) {
    return Fail(s);
  }
  absl::StatusOr<int64_t> kv_bytes = ParseByteSize(o.kv_cache_memory);
  if (!kv_bytes.ok()) return Fail(kv_bytes.status());
  const sigset_t stop_signals = BlockStopSignals();  // before any thread starts

  absl::StatusOr<std::unique_ptr<TcpStoreServer>> store =
      TcpStoreServer::Start({.bind_address = spawn_workers ? "127.0.0.1" : "0.0.0.0", .port = o.store_port});
  if (!store.ok()) return Fail(store.status());
  CoordinatorOptions options;
  options.listen_address = absl::StrCat(o.host, ":", o.port);
  InstanceOptions& instance = options.instance;
  instance.parallel.set_tp(o.tp);
  instance.parallel.set_pp(o.pp);
  instance.parallel.set_dp(o.dp);
  instance.parallel.set_ep(o.ep);
  instance.pp_layers = pp_layers;
  instance.model_dir = o.model_dir;
  instance.store_host = !o.store_host.empty() ? o.store_host : spawn_workers ? "127.0.0.1" : LocalHostAddress();
  instance.store_port = (*store)->port();
  instance.run_id = absl::StrCat("run-", getpid(), "-", std::random_device{}());
  instance.block_size = o.block_size;
  instance.enable_prefix_caching = !o.no_prefix_caching;
  instance.max_num_batched_tokens = o.max_num_batched_tokens;
  instance.max_num_seqs = o.max_num_seqs;
  instance.num_micro_batches = o.num_micro_batches;
  instance.max_queued_requests = o.max_queued_requests;
  absl::StatusOr<std::unique_ptr<CoordinatorServer>> server = CoordinatorServer::Start(options);
  if (!server.ok()) return Fail(server.status());
  const int port = (*server)->port();
  // Tests and scripts read this line for the port.
  std::fprintf(stdout, "lattice serve: listening on %s:%d\n", o.host.c_str(), port);
  std::fflush(stdout);

  std::unique_ptr<LocalLauncher> workers;
  if (spawn_workers) {
    absl::StatusOr<std::unique_ptr<LocalLauncher>> started =
        LocalLauncher::Start(0, parallel.world_size(), [&](int rank) {
          return std::vector<std::string>{"lattice", "worker", "--coordinator", absl::StrCat("127.0.0.1:", port),
                                          "--rank", std::to_string(rank), "--kv-cache-memory", o.kv_cache_memory,
                                          "--device", o.device};
        });
    if (!started.ok()) return Fail(started.status());
    workers = *std::move(started);
  }

  int signal = 0;
  sigwait(&stop_signals, &signal);
  std::fprintf(stderr, "lattice serve: signal %d, shutting down\n", signal);
  (*server)->Shutdown("the server received a stop signal");
  if (workers) workers->Wait();
  server->reset();
  (*store)->Stop();
  return 0;
}

}  // namespace lattice
