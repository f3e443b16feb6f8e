// `lattice serve` and `lattice coordinator` (see serve_command.h).
#include "cli/serve_command.h"

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cli/launch.h"
#include "coordinator/server.h"
#include "parallel/bootstrap.h"
#include "parallel/tcp_store.h"
#include "worker/layout.h"
#include "worker/model_config.h"
#include "worker/sim/cost_model.h"
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
  AddLayoutFlags(app, o.layout);
  app.add_option("--block-size", o.block_size, "KV cache block size in tokens")->check(CLI::Range(1, 1024));
  app.add_option("--kv-cache-memory", o.kv_cache_memory, "KV cache memory per worker: bytes (256M, 4G) or a fraction of available memory (0.3)");
  app.add_option("--max-num-batched-tokens", o.max_num_batched_tokens, "Token budget per step")
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--max-num-seqs", o.max_num_seqs, "Sequences per step")->check(CLI::Range(1, 1 << 20));
  app.add_flag("--no-prefix-caching", o.no_prefix_caching, "Disable the prefix cache");
  app.add_option("--max-queued-requests", o.max_queued_requests, "Queue bound (RESOURCE_EXHAUSTED past it)")
      ->check(CLI::Range(1, 1 << 24));
  app.add_option("--store-port", o.store_port, "Rendezvous store port (0: any free port)")
      ->check(CLI::Range(0, 65535));
  app.add_option("--store-host", o.store_host, "Address workers use to reach the store");
  app.add_option("--device", o.device,
                 "cpu, cuda, or sim (simulated GPUs that run no model: workers are threads of this process)")
      ->check(CLI::IsMember({"cpu", "cuda", "sim"}));
  AddCudaFlags(app, o.dtype, o.load_format, o.gpu_memory_utilization, o.no_cuda_graphs);
  app.add_option("--sim-hardware", o.sim_hardware, "With --device sim: h100, h200, or a JSON file of parameters");
  app.add_option("--tokenizer", o.tokenizer,
                 "Directory of tokenizer.json (+ tokenizer_config.json) or tokenizer.model (default: --model)");
  app.add_option("--chat-template", o.chat_template, "A Jinja file that replaces the model's chat template");
  app.add_option("--served-model-name", o.served_model_name, "The model's name in the API (default: --model's base name)");
}

namespace {

bool UnderMpirun() {
  return std::getenv("OMPI_COMM_WORLD_RANK") != nullptr || std::getenv("PMIX_RANK") != nullptr;
}

constexpr char kCoordinatorKey[] = "lattice/coordinator";

}  // namespace

int ServeCommand(const ServeOptions& o, bool spawn_workers) {
  // Everything checkable is checked before any process starts or weight loads.
  absl::StatusOr<ModelConfig> config = LoadModelConfig(o.model_dir);
  if (!config.ok()) return Fail(config.status());
  absl::StatusOr<CheckedLayout> checked = CheckLayout(o.layout, *config);
  if (!checked.ok()) return Fail(checked.status());
  const ParallelConfig parallel = o.layout.parallel();
  const std::vector<int32_t> pp_layers(checked->pp_layers.begin(), checked->pp_layers.end());
  absl::StatusOr<int64_t> kv_bytes = ParseKvCacheMemory(o.kv_cache_memory);
  if (!kv_bytes.ok()) return Fail(kv_bytes.status());
  if (o.device == "sim") {
    if (absl::StatusOr<sim::Hardware> h = sim::LoadHardware(o.sim_hardware); !h.ok()) return Fail(h.status());
  }
  const sigset_t stop_signals = BlockStopSignals();  // before any thread starts

  // Under mpirun every process runs this command: rank 0 is the coordinator and a
  // worker, every other rank a worker. MPI gives the ranks and carries the store's
  // address; the store then carries the coordinator's.
  std::optional<LaunchInfo> mpi;
  if (spawn_workers && UnderMpirun()) {
    absl::StatusOr<LaunchInfo> launch = DiscoverLaunch({});
    if (!launch.ok()) return Fail(launch.status());
    if (launch->world_size != parallel.world_size()) {
      return Fail(absl::InvalidArgumentError(absl::StrCat("mpirun started ", launch->world_size, " ranks but ",
                                                          parallel.ToString(), " needs ", parallel.world_size())));
    }
    mpi = *std::move(launch);
    if (mpi->rank != 0) {
      absl::StatusOr<std::unique_ptr<TcpStoreClient>> client = ConnectStore(*mpi);
      if (!client.ok()) return Fail(client.status());
      absl::StatusOr<std::string> coordinator = (*client)->Get(kCoordinatorKey);
      if (!coordinator.ok()) return Fail(coordinator.status());
      WorkerOptions worker;
      worker.coordinator = *coordinator;
      worker.rank = mpi->rank;
      worker.kv_cache_memory_bytes = *kv_bytes;
      worker.device = o.device;
      worker.cuda.dtype = o.dtype;
      worker.cuda.dummy_weights = o.load_format == "dummy";
      worker.cuda.gpu_memory_utilization = o.gpu_memory_utilization;
      worker.cuda.cuda_graphs = !o.no_cuda_graphs;
      worker.sim_hardware = o.sim_hardware;
      worker.data_plane_host = mpi->store_host == "127.0.0.1" ? "127.0.0.1" : LocalHostAddress();
      const absl::Status status = RunWorker(worker);
      FinalizeLaunch(*mpi);
      return status.ok() ? 0 : 1;
    }
  }

  std::shared_ptr<TcpStoreServer> store;
  if (mpi) {
    store = mpi->store_server;
  } else {
    absl::StatusOr<std::unique_ptr<TcpStoreServer>> started =
        TcpStoreServer::Start({.bind_address = spawn_workers ? "127.0.0.1" : "0.0.0.0", .port = o.store_port});
    if (!started.ok()) return Fail(started.status());
    store = std::move(*started);
  }
  CoordinatorOptions options;
  options.listen_address = absl::StrCat(o.host, ":", o.port);
  InstanceOptions& instance = options.instance;
  // A dense model's DP ranks are independent instances behind the router; an MoE
  // model's are one instance whose DP ranks share the experts and step together.
  const bool independent = config->num_experts == 0 && o.layout.dp > 1;
  options.num_instances = independent ? o.layout.dp : 1;
  instance.parallel.set_tp(o.layout.tp);
  instance.parallel.set_pp(o.layout.pp);
  instance.parallel.set_dp(independent ? 1 : o.layout.dp);
  instance.parallel.set_ep(o.layout.ep);
  options.api.parallel.set_tp(o.layout.tp);
  options.api.parallel.set_pp(o.layout.pp);
  options.api.parallel.set_dp(o.layout.dp);
  options.api.parallel.set_ep(o.layout.ep);
  options.api.model_name = o.served_model_name.empty()
                               ? std::filesystem::path(o.model_dir).lexically_normal().filename().string()
                               : o.served_model_name;
  if (options.api.model_name.empty()) {
    options.api.model_name = std::filesystem::path(o.model_dir).lexically_normal().parent_path().filename().string();
  }
  options.text.tokenizer_dir = o.tokenizer.empty() ? o.model_dir : o.tokenizer;
  options.text.chat_template_file = o.chat_template;
  instance.pp_layers = pp_layers;
  instance.model_dir = o.model_dir;
  instance.store_host = !o.store_host.empty() ? o.store_host
                        : mpi                   ? mpi->store_host
                        : spawn_workers         ? "127.0.0.1"
                                                : LocalHostAddress();
  instance.store_port = store->port();
  instance.run_id = absl::StrCat("run-", getpid(), "-", std::random_device{}());
  instance.block_size = o.block_size;
  instance.enable_prefix_caching = !o.no_prefix_caching;
  instance.max_num_batched_tokens = o.max_num_batched_tokens;
  instance.max_num_seqs = o.max_num_seqs;
  instance.num_micro_batches = o.layout.num_micro_batches;
  instance.max_queued_requests = o.max_queued_requests;
  absl::StatusOr<std::unique_ptr<CoordinatorServer>> server = CoordinatorServer::Start(options);
  if (!server.ok()) return Fail(server.status());
  const int port = (*server)->port();
  // Tests and scripts read this line for the port.
  std::fprintf(stdout, "lattice serve: listening on %s:%d\n", o.host.c_str(), port);
  std::fflush(stdout);

  std::unique_ptr<LocalLauncher> workers;
  std::thread own_worker;
  std::vector<std::thread> sim_workers;
  if (mpi) {
    absl::StatusOr<std::unique_ptr<TcpStoreClient>> client = ConnectStore(*mpi);
    if (!client.ok()) return Fail(client.status());
    const std::string address =
        absl::StrCat(mpi->store_host == "127.0.0.1" ? "127.0.0.1" : LocalHostAddress(), ":", port);
    if (absl::Status s = (*client)->Set(kCoordinatorKey, address); !s.ok()) return Fail(s);
    own_worker = std::thread([&, port] {
      WorkerOptions worker;
      worker.coordinator = absl::StrCat("127.0.0.1:", port);
      worker.rank = 0;
      worker.kv_cache_memory_bytes = *kv_bytes;
      worker.device = o.device;
      worker.cuda.dtype = o.dtype;
      worker.cuda.dummy_weights = o.load_format == "dummy";
      worker.cuda.gpu_memory_utilization = o.gpu_memory_utilization;
      worker.cuda.cuda_graphs = !o.no_cuda_graphs;
      worker.sim_hardware = o.sim_hardware;
      worker.data_plane_host = mpi->store_host == "127.0.0.1" ? "127.0.0.1" : LocalHostAddress();
      RunWorker(worker).IgnoreError();  // its errors reach the coordinator and stderr
    });
  } else if (spawn_workers && o.device == "sim") {
    // Simulated workers run no model: one thread each (plus its heartbeats) is enough,
    // so hundreds of them fit in this process.
    for (int rank = 0; rank < parallel.world_size(); ++rank) {
      sim_workers.emplace_back([&, rank, port] {
        WorkerOptions worker;
        worker.coordinator = absl::StrCat("127.0.0.1:", port);
        worker.rank = rank;
        worker.device = "sim";
        worker.sim_hardware = o.sim_hardware;
        worker.cuda.dtype = o.dtype;
        worker.cuda.gpu_memory_utilization = o.gpu_memory_utilization;
        RunWorker(worker).IgnoreError();  // its errors reach the coordinator and stderr
      });
    }
  } else if (spawn_workers) {
    absl::StatusOr<std::unique_ptr<LocalLauncher>> started =
        LocalLauncher::Start(0, parallel.world_size(), [&](int rank) {
          std::vector<std::string> argv{"lattice", "worker", "--coordinator", absl::StrCat("127.0.0.1:", port),
                                          "--rank", std::to_string(rank), "--kv-cache-memory", o.kv_cache_memory,
                                          "--device", o.device, "--dtype", o.dtype, "--load-format",
                                          o.load_format, "--gpu-memory-utilization",
                                          absl::StrCat(o.gpu_memory_utilization)};
          if (o.no_cuda_graphs) argv.push_back("--no-cuda-graphs");
          return argv;
        });
    if (!started.ok()) return Fail(started.status());
    workers = *std::move(started);
  }

  int signal = 0;
  sigwait(&stop_signals, &signal);
  std::fprintf(stderr, "lattice serve: signal %d, shutting down\n", signal);
  (*server)->Shutdown("the server received a stop signal");
  if (workers) workers->Wait();
  if (own_worker.joinable()) own_worker.join();
  for (std::thread& t : sim_workers) t.join();
  server->reset();
  store->Stop();
  if (mpi) FinalizeLaunch(*mpi);
  return 0;
}

}  // namespace lattice
