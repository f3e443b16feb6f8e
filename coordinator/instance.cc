// One model instance on the coordinator (see instance.h).
#include "coordinator/instance.h"

#include <algorithm>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "base/check.h"

namespace lattice {
namespace {

int64_t UnixMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

Instance::Instance(const InstanceOptions& options)
    : options_(options),
      num_dp_(std::max(options.parallel.dp(), 1)),
      num_micro_batches_(options.num_micro_batches > 0 ? options.num_micro_batches : std::max(options.parallel.pp(), 1)),
      workers_(static_cast<size_t>(std::max(options.parallel.tp(), 1)) * std::max(options.parallel.pp(), 1) *
               std::max(options.parallel.dp(), 1)) {
  thread_ = std::thread([this] { Loop(); });
}

Instance::~Instance() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    wake_.SignalAll();
  }
  thread_.join();
}

int32_t Instance::world_size() const { return static_cast<int32_t>(workers_.size()); }

absl::StatusOr<int32_t> Instance::Join(int32_t requested_rank, std::shared_ptr<WorkerChannel> channel) {
  absl::MutexLock lock(&mu_);
  const int32_t world = static_cast<int32_t>(workers_.size());
  if (assigned_) return absl::FailedPreconditionError(absl::StrCat("instance ", options_.id, " is complete"));
  int32_t rank = requested_rank;
  if (rank < 0) {
    rank = 0;
    while (rank < world && workers_[rank].channel != nullptr) ++rank;
    if (rank == world) return absl::ResourceExhaustedError(absl::StrCat("all ", world, " ranks are taken"));
  } else if (rank >= world) {
    return absl::InvalidArgumentError(absl::StrCat("rank ", rank, " is outside the world of ", world));
  } else if (workers_[rank].channel != nullptr) {
    return absl::AlreadyExistsError(absl::StrCat("rank ", rank, " is already registered"));
  }
  workers_[rank].channel = std::move(channel);
  workers_[rank].last_seen = std::chrono::steady_clock::now();
  const bool all = std::all_of(workers_.begin(), workers_.end(), [](const Worker& w) { return w.channel != nullptr; });
  if (all) {
    assigned_ = true;
    for (int32_t r = 0; r < world; ++r) {
      pb::CoordinatorMessage message;
      pb::Assignment* a = message.mutable_assignment();
      a->set_rank(r);
      a->set_world_size(world);
      *a->mutable_parallel() = options_.parallel;
      a->mutable_pp_layers()->Add(options_.pp_layers.begin(), options_.pp_layers.end());
      a->set_model_dir(options_.model_dir);
      a->set_store_host(options_.store_host);
      a->set_store_port(options_.store_port);
      a->set_run_id(options_.run_id);
      a->set_block_size(options_.block_size);
      a->set_kv_cache_memory_bytes(options_.kv_cache_memory_bytes);
      a->set_max_num_batched_tokens(options_.max_num_batched_tokens);
      a->set_max_num_seqs(options_.max_num_seqs);
      a->set_max_model_len(options_.max_model_len);
      a->set_launch_rank(options_.first_launch_rank + r);
      a->set_instance(options_.id);
      workers_[r].channel->Send(message);
    }
  }
  return rank;
}

void Instance::MaybeConfigure() {
  if (scheduler_ != nullptr || failed_) return;
  if (!std::all_of(workers_.begin(), workers_.end(), [](const Worker& w) { return w.loaded; })) return;
  int32_t num_blocks = workers_[0].max_num_blocks;
  for (const Worker& w : workers_) num_blocks = std::min(num_blocks, w.max_num_blocks);
  if (num_blocks < 2) {
    FailAll(absl::ResourceExhaustedError(
        absl::StrCat("instance ", options_.id, ": the workers' KV memory holds ", num_blocks, " blocks; at least 2 needed")));
    return;
  }
  SchedulerOptions s;
  s.num_dp = num_dp_;
  s.num_blocks = num_blocks;
  s.block_size = options_.block_size;
  s.enable_prefix_caching = options_.enable_prefix_caching;
  s.max_num_batched_tokens = options_.max_num_batched_tokens;
  s.max_num_seqs = options_.max_num_seqs;
  s.max_model_len = options_.max_model_len > 0 ? std::min(options_.max_model_len, model_->max_model_len())
                                               : model_->max_model_len();
  s.vocab_size = model_->vocab_size();
  s.eos_token_ids.assign(model_->eos_token_ids().begin(), model_->eos_token_ids().end());
  scheduler_ = std::make_unique<Scheduler>(s);
  pb::CoordinatorMessage message;
  message.mutable_cache_config()->set_num_blocks(num_blocks);
  message.mutable_cache_config()->set_block_size(options_.block_size);
  Broadcast(message);
  wake_.SignalAll();
}

void Instance::OnWorkerMessage(int32_t rank, const pb::WorkerMessage& message) {
  absl::MutexLock lock(&mu_);
  Worker& worker = workers_[rank];
  worker.last_seen = std::chrono::steady_clock::now();
  switch (message.kind_case()) {
    case pb::WorkerMessage::kLoaded:
      worker.loaded = true;
      worker.max_num_blocks = message.loaded().max_num_blocks();
      if (!model_) model_ = message.loaded().model();
      MaybeConfigure();
      break;
    case pb::WorkerMessage::kStepResult: {
      const pb::StepResult& result = message.step_result();
      for (InFlight& f : in_flight_) {
        if (f.step.step() == result.step()) {
          f.results.push_back(result);
          wake_.SignalAll();
          break;
        }
      }
      break;
    }
    case pb::WorkerMessage::kError:
      worker.failed = true;
      FailAll(absl::UnavailableError(absl::StrCat("instance ", options_.id, ": worker ", rank,
                                                  " failed: ", message.error().message())));
      break;
    case pb::WorkerMessage::kHeartbeat:
    case pb::WorkerMessage::kRegister:
    case pb::WorkerMessage::KIND_NOT_SET:
      break;
  }
}

void Instance::OnWorkerGone(int32_t rank) {
  absl::MutexLock lock(&mu_);
  workers_[rank].channel.reset();
  if (stopping_) return;
  workers_[rank].failed = true;
  FailAll(absl::UnavailableError(absl::StrCat("instance ", options_.id, ": worker ", rank, " disconnected")));
}

void Instance::FailAll(const absl::Status& status) {
  if (failed_) return;
  failed_ = true;
  for (auto& [seq, sink] : sinks_) sink->OnFailed(status);
  sinks_.clear();
  in_flight_.clear();
  // The remaining workers cannot go on without the failed one. Closing their streams
  // (rather than an orderly Shutdown, whose barrier would wait on the lost peer) makes
  // them exit at once.
  for (Worker& w : workers_) {
    if (w.channel) w.channel->Close();
  }
  wake_.SignalAll();
}

void Instance::Broadcast(const pb::CoordinatorMessage& message) {
  for (Worker& w : workers_) {
    if (w.channel) w.channel->Send(message);
  }
}

int32_t Instance::load() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int32_t>(sinks_.size());
}

bool Instance::ready() const {
  absl::MutexLock lock(&mu_);
  return scheduler_ != nullptr;
}

bool Instance::healthy() const {
  absl::MutexLock lock(&mu_);
  return scheduler_ != nullptr && !failed_ && !stopping_;
}

std::optional<pb::ModelSummary> Instance::model() const {
  absl::MutexLock lock(&mu_);
  return model_;
}

absl::StatusOr<int64_t> Instance::Submit(SequenceRequest request, std::shared_ptr<RequestSink> sink) {
  absl::MutexLock lock(&mu_);
  if (scheduler_ == nullptr || failed_ || stopping_) {
    return absl::UnavailableError(absl::StrCat("instance ", options_.id, " is not serving"));
  }
  if (absl::Status status = scheduler_->Validate(request); !status.ok()) return status;
  const SchedulerStats stats = scheduler_->stats();
  if (stats.num_waiting >= options_.max_queued_requests) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the queue holds ", stats.num_waiting, " requests, its limit; retry later"));
  }
  const int64_t seq_id = scheduler_->Add(std::move(request));
  sinks_.emplace(seq_id, std::move(sink));
  wake_.SignalAll();
  return seq_id;
}

void Instance::Cancel(int64_t seq_id) {
  absl::MutexLock lock(&mu_);
  if (scheduler_ == nullptr || !sinks_.contains(seq_id)) return;
  scheduler_->Cancel(seq_id);
  Dispatch(scheduler_->TakeIdleCancellations());
  wake_.SignalAll();
}

void Instance::Dispatch(const std::vector<SequenceUpdate>& updates) {
  for (const SequenceUpdate& u : updates) {
    auto it = sinks_.find(u.seq_id);
    if (it == sinks_.end()) continue;
    it->second->OnUpdate(u);
    if (u.finish_reason != FinishReason::kNone) sinks_.erase(it);
  }
}

void Instance::Loop() {
  absl::MutexLock lock(&mu_);
  auto last_heartbeat = std::chrono::steady_clock::now();
  while (!stopping_) {
    const auto now = std::chrono::steady_clock::now();
    if (now - last_heartbeat >= options_.heartbeat_interval) {
      last_heartbeat = now;
      pb::CoordinatorMessage beat;
      beat.mutable_heartbeat()->set_sent_unix_ms(UnixMillis());
      Broadcast(beat);
      for (int32_t r = 0; r < static_cast<int32_t>(workers_.size()); ++r) {
        const Worker& w = workers_[r];
        if (w.channel && !failed_ && now - w.last_seen > options_.worker_timeout) {
          FailAll(absl::UnavailableError(absl::StrCat("instance ", options_.id, ": worker ", r, " went silent")));
        }
      }
    }
    if (scheduler_ != nullptr && !failed_) {
      const auto busy_since = std::chrono::steady_clock::now();
      // Complete the oldest step once every DP rank has reported.
      while (!in_flight_.empty() && static_cast<int32_t>(in_flight_.front().results.size()) >= num_dp_) {
        InFlight done = std::move(in_flight_.front());
        in_flight_.pop_front();
        Dispatch(scheduler_->Complete(done.step, done.results));
      }
      // Keep the pipeline full.
      while (static_cast<int32_t>(in_flight_.size()) < num_micro_batches_) {
        std::optional<pb::StepRequest> step = scheduler_->Schedule();
        if (!step) break;
        if (!in_flight_.empty()) ++overlapped_steps_;
        for (const pb::DpBatch& batch : step->dp()) scheduled_sequences_ += batch.sequences_size();
        step->set_micro_batch(micro_batch_++ % num_micro_batches_);
        pb::CoordinatorMessage message;
        *message.mutable_step() = *step;
        Broadcast(message);
        in_flight_.push_back({*std::move(step), {}});
      }
      scheduler_busy_ += std::chrono::steady_clock::now() - busy_since;
    }
    wake_.WaitWithTimeout(&mu_, absl::FromChrono(options_.heartbeat_interval));
  }
}

v1::InstanceStatus Instance::Status() const {
  absl::MutexLock lock(&mu_);
  v1::InstanceStatus status;
  status.set_instance(options_.id);
  status.set_healthy(scheduler_ != nullptr && !failed_ && !stopping_);
  const auto now = std::chrono::steady_clock::now();
  for (int32_t r = 0; r < static_cast<int32_t>(workers_.size()); ++r) {
    const Worker& w = workers_[r];
    v1::WorkerStatus* ws = status.add_workers();
    ws->set_rank(r);
    ws->set_healthy(w.channel != nullptr && !w.failed);
    ws->set_last_heartbeat_ms_ago(
        w.channel ? std::chrono::duration_cast<std::chrono::milliseconds>(now - w.last_seen).count() : -1);
  }
  if (scheduler_ != nullptr) {
    const SchedulerStats s = scheduler_->stats();
    status.set_num_waiting(s.num_waiting);
    status.set_num_running(s.num_running);
    status.set_kv_blocks_total(s.kv_blocks_total);
    status.set_kv_blocks_used(s.kv_blocks_used);
    status.set_kv_blocks_free(s.kv_blocks_total - s.kv_blocks_used);
    status.set_prefix_cache_queries(s.prefix_cache_queries);
    status.set_prefix_cache_hits(s.prefix_cache_hits);
    status.set_num_preemptions(s.num_preemptions);
    status.set_num_steps(s.num_steps);
    status.set_num_computed_tokens(s.num_computed_tokens);
  }
  status.set_num_overlapped_steps(overlapped_steps_);
  status.set_scheduler_busy_us(std::chrono::duration_cast<std::chrono::microseconds>(scheduler_busy_).count());
  status.set_num_scheduled_sequences(scheduled_sequences_);
  return status;
}

void Instance::Shutdown(const std::string& reason) {
  absl::MutexLock lock(&mu_);
  stopping_ = true;
  for (auto& [seq, sink] : sinks_) sink->OnFailed(absl::UnavailableError("the server is shutting down"));
  sinks_.clear();
  pb::CoordinatorMessage message;
  message.mutable_shutdown()->set_reason(reason);
  Broadcast(message);
  wake_.SignalAll();
}

}  // namespace lattice
