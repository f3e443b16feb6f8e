// `lattice worker` (see worker_command.h): flags to WorkerOptions, then RunWorker.
#include "cli/worker_command.h"

#include "cli/layout_flags.h"

#include <signal.h>

#include <chrono>
#include <cstdio>

#include "worker/worker_process.h"

namespace lattice {
namespace {

std::chrono::milliseconds Seconds(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000.0));
}

}  // namespace

void AddWorkerCommandFlags(CLI::App& app, WorkerCommandOptions& o) {
  app.add_option("--coordinator", o.coordinator,
                 "The coordinator's control-plane address, HOST:PORT")
      ->required();
  app.add_option("--rank", o.rank,
                 "This worker's rank (default: LWS_WORKER_INDEX, else RANK, else the coordinator "
                 "assigns one)")
      ->check(CLI::Range(-1, 1 << 20));
  app.add_option(
      "--kv-cache-memory", o.kv_cache_memory,
      "KV cache memory: bytes (512M, 2G) or a fraction of available memory (0.3), unless the "
      "coordinator sets it (default: 256M on cpu)");
  app.add_option("--device", o.device, "cpu, cuda or sim (a simulated GPU that runs no model)")
      ->check(CLI::IsMember({"cpu", "cuda", "sim"}));
  AddCudaFlags(app, o.dtype, o.load_format, o.gpu_memory_utilization, o.no_cuda_graphs);
  app.add_option("--sim-hardware", o.sim_hardware, "With --device sim: h100, h200, or a JSON file of parameters");
  app.add_option("--data-plane-host", o.data_plane_host,
                 "The address the other workers reach this one at for collectives");
  app.add_option("--connect-timeout", o.connect_timeout_s,
                 "Seconds to keep dialling the coordinator and the rendezvous store")
      ->check(CLI::Range(0.001, 86400.0));
  app.add_option("--heartbeat-interval", o.heartbeat_interval_s, "Seconds between heartbeats")
      ->check(CLI::Range(0.001, 3600.0));
}

int WorkerCommand(const WorkerCommandOptions& o) {
  WorkerOptions options;
  options.coordinator = o.coordinator;
  options.rank = o.rank;
  options.device = o.device;
  options.cuda.dtype = o.dtype;
  options.cuda.dummy_weights = o.load_format == "dummy";
  options.cuda.gpu_memory_utilization = o.gpu_memory_utilization;
  options.cuda.cuda_graphs = !o.no_cuda_graphs;
  options.sim_hardware = o.sim_hardware;
  options.data_plane_host = o.data_plane_host;
  options.connect_timeout = Seconds(o.connect_timeout_s);
  options.heartbeat_interval = Seconds(o.heartbeat_interval_s);
  if (!o.kv_cache_memory.empty()) {
    absl::StatusOr<int64_t> bytes = ParseKvCacheMemory(o.kv_cache_memory);
    if (!bytes.ok() || *bytes == 0) {
      std::fprintf(stderr, "lattice worker: --kv-cache-memory: %s\n",
                   bytes.ok() ? "must be positive" : std::string(bytes.status().message()).c_str());
      return 1;
    }
    options.kv_cache_memory_bytes = *bytes;
  }
  // A peer that died makes the data plane's next write fail: let it fail as an error
  // that names the group (gloo raises it) rather than kill the process silently.
  ::signal(SIGPIPE, SIG_IGN);
  // RunWorker prints its errors as they happen.
  return RunWorker(options).ok() ? 0 : 1;
}

}  // namespace lattice
