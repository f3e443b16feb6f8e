// The worker process of the serving path (`lattice worker`): one rank of a model
// instance, driven by the coordinator over the control plane
// (proto/lattice/internal/v1/control.proto). It dials the coordinator, registers,
// receives its place in the layout, joins its process groups through the rendezvous
// store, loads its shard, reports how many KV blocks fit, allocates the cache the
// coordinator settles on, then executes every StepRequest in arrival order and returns
// a StepResult where it samples, until Shutdown.
//
// With `--device sim` it runs no model and joins no process group: the rank that
// answers for a DP rank prices each step with the simulated device's cost model
// (worker/sim/) and sends the result when the simulated stages would finish; the
// other ranks only read the steps. Many simulated workers fit in one process.
//
// Threads: RunWorker's caller (the main thread) reads the stream and runs every step
// (steps run strictly in arrival order: pipeline sends and TP collectives depend on
// every worker executing the same sequence); one heartbeat thread (control_client.h);
// gloo's own threads.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/device_model.h"

namespace lattice {

// KV cache memory of a CPU worker when neither the assignment nor the flag says.
inline constexpr int64_t kDefaultCpuKvCacheMemoryBytes = int64_t{256} << 20;

struct WorkerOptions {
  std::string coordinator;  // host:port of WorkerControl
  // The launcher's rank; unset: see DiscoverWorkerRank.
  std::optional<int> rank;
  // 0: the device's default (kDefaultCpuKvCacheMemoryBytes on the CPU). The
  // assignment's kv_cache_memory_bytes wins when it is positive.
  int64_t kv_cache_memory_bytes = 0;
  std::string device = "cpu";
  // With device "cuda": dtype, dummy weights, memory utilisation, graphs (the
  // assignment supplies the model and the scheduler's limits).
  DeviceModelOptions cuda;
  // With device "sim": the simulated GPU ("h100", "h200" or a JSON file, see
  // worker/sim/cost_model.h); cuda.gpu_memory_utilization and cuda.dtype apply.
  std::string sim_hardware = "h200";
  // The address this worker's data-plane (gloo) peers reach it at.
  std::string data_plane_host = "127.0.0.1";
  std::chrono::milliseconds connect_timeout{60'000};
  std::chrono::milliseconds heartbeat_interval{1'000};
};

// Runs one worker until the coordinator sends Shutdown (OK) or something fails: a bad
// assignment, a load error, a step the worker's SequenceTable rejects, a protocol
// violation (each also sent to the coordinator as WorkerError while the stream is
// up), or the stream ending. Every error is also logged to stderr as it happens,
// before the (bounded) tear-down, so callers need not print it again.
absl::Status RunWorker(const WorkerOptions& options);

// "4096", "512K", "512M", "2G", "1T" (binary multiples; "Ki"/"KiB"/"KB" and the like
// mean the same, any case). INVALID_ARGUMENT for anything else, negatives and
// overflow.
absl::StatusOr<int64_t> ParseByteSize(std::string_view text);

// --kv-cache-memory: a byte size (ParseByteSize), or a fraction written with a
// decimal point ("0.3") of the memory available on this machine now (MemAvailable).
absl::StatusOr<int64_t> ParseKvCacheMemory(std::string_view text);

// The rank a worker registers with: `flag` (--rank) if set, else LWS_WORKER_INDEX,
// else RANK, else -1 (the coordinator assigns one); an empty variable counts as unset.
// INVALID_ARGUMENT naming the
// flag or variable when the value is not a non-negative integer.
absl::StatusOr<int> DiscoverWorkerRank(std::optional<int> flag);

}  // namespace lattice
