// Instance: one model instance (the workers of one layout) as the coordinator sees
// it. It gathers its workers as they register, assigns their ranks, sizes the KV
// cache from what each can hold, and then runs the scheduler thread: the only thread
// that touches the Scheduler. That thread takes new requests and cancellations from
// an inbox, keeps up to `num_micro_batches` steps in flight (sending each StepRequest
// to every worker in the same order), completes the oldest step once every DP rank's
// StepResult is in, and hands each sequence's updates to its sink.
//
// Threads: gRPC threads call Join/OnWorkerMessage/OnWorkerGone (worker links) and
// Submit/Cancel/Status (API); the scheduler thread schedules and completes steps.
// All of them hold one mutex while they touch the Scheduler: its work per call is
// small (no tensors), and one lock keeps submission, cancellation and completion
// simply ordered. Sinks are called under that lock and must only queue.
#pragma once

#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/scheduler.h"
#include "lattice/internal/v1/control.pb.h"
#include "lattice/v1/lattice.pb.h"

namespace lattice {

// Where an instance sends control messages to one worker (a stream to it).
class WorkerChannel {
 public:
  virtual ~WorkerChannel() = default;
  // Queues a message; never blocks. Ignored once the stream is gone.
  virtual void Send(const pb::CoordinatorMessage& message) = 0;
  // Ends the stream (the worker exits).
  virtual void Close() = 0;
};

// Receives one request's progress. Called on the scheduler thread; must not block.
class RequestSink {
 public:
  virtual ~RequestSink() = default;
  virtual void OnUpdate(const SequenceUpdate& update) = 0;
  // The request cannot finish (its instance failed): the status says why.
  virtual void OnFailed(const absl::Status& status) = 0;
};

struct InstanceOptions {
  int32_t id = 0;
  int32_t first_launch_rank = 0;  // launch rank of this instance's rank 0
  pb::ParallelConfig parallel;
  std::vector<int32_t> pp_layers;
  std::string model_dir;
  std::string store_host;
  int32_t store_port = 0;
  std::string run_id;
  int32_t block_size = 16;
  int64_t kv_cache_memory_bytes = 0;  // 0: each worker's own setting
  bool enable_prefix_caching = true;
  int32_t max_num_batched_tokens = 2048;
  int32_t max_num_seqs = 256;
  int32_t num_micro_batches = 0;  // 0: pp
  int32_t max_queued_requests = 4096;
  int64_t max_model_len = 0;      // 0: the model's
  std::chrono::milliseconds worker_timeout{15000};
  std::chrono::milliseconds heartbeat_interval{1000};
};

class Instance {
 public:
  explicit Instance(const InstanceOptions& options);
  ~Instance();

  int32_t world_size() const;
  // A worker registered: its rank (the requested one, or the lowest free). Errors:
  // the rank is taken or out of range, or the instance is full.
  absl::StatusOr<int32_t> Join(int32_t requested_rank, std::shared_ptr<WorkerChannel> channel);
  void OnWorkerMessage(int32_t rank, const pb::WorkerMessage& message);
  void OnWorkerGone(int32_t rank);

  // Sequences submitted and not finished (the router's measure of load).
  int32_t load() const;
  int32_t block_size() const { return options_.block_size; }
  bool ready() const;    // every worker loaded, cache configured
  bool healthy() const;  // ready and no worker failed or went silent
  // The model as the workers reported it; empty until ready.
  std::optional<pb::ModelSummary> model() const;

  // Validates (INVALID_ARGUMENT / RESOURCE_EXHAUSTED naming the problem; UNAVAILABLE
  // when unhealthy or the queue is full) and queues the request; returns its id.
  absl::StatusOr<int64_t> Submit(SequenceRequest request, std::shared_ptr<RequestSink> sink);
  void Cancel(int64_t seq_id);

  v1::InstanceStatus Status() const;
  // Sends Shutdown to every worker and stops the scheduler thread.
  void Shutdown(const std::string& reason);

 private:
  struct Worker {
    std::shared_ptr<WorkerChannel> channel;
    bool loaded = false;
    bool failed = false;
    int32_t max_num_blocks = 0;
    std::chrono::steady_clock::time_point last_seen;
  };
  struct InFlight {
    pb::StepRequest step;
    std::vector<pb::StepResult> results;
  };

  void Loop();
  void Broadcast(const pb::CoordinatorMessage& message) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FailAll(const absl::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MaybeConfigure() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Dispatch(const std::vector<SequenceUpdate>& updates) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const InstanceOptions options_;
  const int32_t num_dp_;
  const int32_t num_micro_batches_;

  mutable absl::Mutex mu_;
  absl::CondVar wake_;
  std::vector<Worker> workers_ ABSL_GUARDED_BY(mu_);
  bool assigned_ ABSL_GUARDED_BY(mu_) = false;
  bool failed_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<pb::ModelSummary> model_ ABSL_GUARDED_BY(mu_);
  // Created once every worker has loaded; used by the scheduler thread (and Validate).
  std::unique_ptr<Scheduler> scheduler_ ABSL_GUARDED_BY(mu_);
  std::deque<InFlight> in_flight_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<int64_t, std::shared_ptr<RequestSink>> sinks_ ABSL_GUARDED_BY(mu_);
  int32_t micro_batch_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t overlapped_steps_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t scheduled_sequences_ ABSL_GUARDED_BY(mu_) = 0;
  std::chrono::steady_clock::duration scheduler_busy_ ABSL_GUARDED_BY(mu_){};
  std::thread thread_;
};

}  // namespace lattice
