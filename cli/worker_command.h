// `lattice worker`: one worker process of the serving path (worker/worker_process.h).
// It dials the coordinator, which tells it everything else (its place in the layout,
// the model, the rendezvous store), so a launcher (Kubernetes, mpirun, a script) only
// needs to pass the coordinator's address.
#pragma once

#include <CLI/CLI.hpp>
#include <optional>
#include <string>

namespace lattice {

struct WorkerCommandOptions {
  std::string coordinator;      // HOST:PORT
  std::optional<int> rank;      // unset: LWS_WORKER_INDEX, RANK, else assigned
  std::string kv_cache_memory;  // "512M", "2G"; empty: the device's default
  std::string device = "cpu";
  std::string dtype = "auto";
  std::string load_format = "auto";
  double gpu_memory_utilization = 0.9;
  bool no_cuda_graphs = false;
  std::string sim_hardware = "h200";
  std::string data_plane_host = "127.0.0.1";
  double connect_timeout_s = 60.0;
  double heartbeat_interval_s = 1.0;
};

void AddWorkerCommandFlags(CLI::App& app, WorkerCommandOptions& options);
// Returns the process exit code: 0 after the coordinator's Shutdown, 1 on any failure
// (printed to stderr as it happens).
int WorkerCommand(const WorkerCommandOptions& options);

}  // namespace lattice
