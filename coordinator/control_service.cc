// The worker control plane, coordinator side (see control_service.h).
#include "coordinator/control_service.h"

#include <deque>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace lattice {
namespace {

class WorkerStream;

// What the instance holds: it outlives the reactor, and forgets it once it is done.
class StreamChannel : public WorkerChannel {
 public:
  explicit StreamChannel(WorkerStream* stream) : stream_(stream) {}
  void Send(const pb::CoordinatorMessage& message) override;
  void Close() override;
  void Detach() {
    absl::MutexLock lock(&mu_);
    stream_ = nullptr;
  }

 private:
  absl::Mutex mu_;
  WorkerStream* stream_ ABSL_GUARDED_BY(mu_);
};

class WorkerStream : public grpc::ServerBidiReactor<pb::WorkerMessage, pb::CoordinatorMessage> {
 public:
  explicit WorkerStream(const std::vector<Instance*>& instances)
      : instances_(instances), channel_(std::make_shared<StreamChannel>(this)) {
    StartRead(&incoming_);
  }

  void Send(const pb::CoordinatorMessage& message) {
    absl::MutexLock lock(&mu_);
    if (finished_) return;
    outgoing_.push_back(message);
    if (outgoing_.size() == 1) StartWrite(&outgoing_.front());
  }

  void Close() {
    absl::MutexLock lock(&mu_);
    FinishLocked(grpc::Status::OK);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      Close();
      return;
    }
    if (rank_ < 0) {
      if (incoming_.kind_case() != pb::WorkerMessage::kRegister) {
        absl::MutexLock lock(&mu_);
        FinishLocked(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "the first message must be Register"));
        return;
      }
      absl::Status joined = Join(incoming_.register_().rank());
      if (!joined.ok()) {
        absl::MutexLock lock(&mu_);
        FinishLocked(grpc::Status(static_cast<grpc::StatusCode>(joined.code()), std::string(joined.message())));
        return;
      }
    } else {
      instance_->OnWorkerMessage(rank_, incoming_);
    }
    StartRead(&incoming_);
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    outgoing_.pop_front();
    if (!ok) {
      FinishLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE, "write to the worker failed"));
      return;
    }
    if (!outgoing_.empty()) {
      StartWrite(&outgoing_.front());
    } else if (finish_pending_) {
      Finish(pending_status_);
    }
  }

  void OnDone() override {
    channel_->Detach();
    if (rank_ >= 0) instance_->OnWorkerGone(rank_);
    delete this;
  }

 private:
  absl::Status Join(int32_t launch_rank) {
    const int32_t world = instances_[0]->world_size();
    if (launch_rank >= 0) {
      const size_t index = static_cast<size_t>(launch_rank / world);
      if (index >= instances_.size()) {
        return absl::InvalidArgumentError(absl::StrCat("rank ", launch_rank, " is outside the launch of ",
                                                       instances_.size() * world, " workers"));
      }
      absl::StatusOr<int32_t> rank = instances_[index]->Join(launch_rank % world, channel_);
      if (!rank.ok()) return rank.status();
      instance_ = instances_[index];
      rank_ = *rank;
      return absl::OkStatus();
    }
    absl::Status last = absl::ResourceExhaustedError("no instance has room");
    for (Instance* instance : instances_) {
      absl::StatusOr<int32_t> rank = instance->Join(-1, channel_);
      if (rank.ok()) {
        instance_ = instance;
        rank_ = *rank;
        return absl::OkStatus();
      }
      last = rank.status();
    }
    return last;
  }

  // Finishes after the queued writes drain (gRPC allows one operation at a time).
  void FinishLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    finished_ = true;
    if (outgoing_.empty()) {
      Finish(status);
    } else {
      finish_pending_ = true;
      pending_status_ = status;
    }
  }

  const std::vector<Instance*>& instances_;
  Instance* instance_ = nullptr;  // set by Register
  std::shared_ptr<StreamChannel> channel_;
  pb::WorkerMessage incoming_;
  int32_t rank_ = -1;
  absl::Mutex mu_;
  std::deque<pb::CoordinatorMessage> outgoing_ ABSL_GUARDED_BY(mu_);
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_pending_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status pending_status_ ABSL_GUARDED_BY(mu_);
};

void StreamChannel::Send(const pb::CoordinatorMessage& message) {
  absl::MutexLock lock(&mu_);
  if (stream_ != nullptr) stream_->Send(message);
}

void StreamChannel::Close() {
  absl::MutexLock lock(&mu_);
  if (stream_ != nullptr) stream_->Close();
}

}  // namespace

grpc::ServerBidiReactor<pb::WorkerMessage, pb::CoordinatorMessage>* ControlService::Connect(
    grpc::CallbackServerContext*) {
  return new WorkerStream(instances_);
}

}  // namespace lattice
