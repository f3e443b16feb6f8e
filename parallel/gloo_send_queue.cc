// GlooSendQueue: the reaper thread and the bounded hand-off to it.
#include "parallel/gloo_send_queue.h"

#include <cstdio>

#include "absl/time/time.h"
#include "gloo/transport/unbound_buffer.h"
#include "base/check.h"

namespace lattice {
namespace {

// The reaper waits for a receiver as long as it takes: a message may legitimately sit
// unreceived while its receiver is busy. (gloo turns an expired wait into an error
// for the whole group, so this must never expire in practice.)
constexpr std::chrono::milliseconds kReaperWait = std::chrono::hours(24 * 365);

}  // namespace

GlooSendQueue::GlooSendQueue(std::string name, int rank, size_t max_bytes,
                             std::chrono::milliseconds drain_timeout)
    : name_(std::move(name)), rank_(rank), max_bytes_(max_bytes), drain_timeout_(drain_timeout) {
  reaper_ = std::thread([this] { Reap(); });
}

GlooSendQueue::~GlooSendQueue() {
  {
    absl::MutexLock lock(&mu_);
    auto drained = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return queue_.empty(); };
    mu_.AwaitWithTimeout(absl::Condition(&drained), absl::FromChrono(drain_timeout_));
    stopping_ = true;
    if (!queue_.empty()) {
      abandoned_ = true;
      std::fprintf(stderr, "gloo group '%s' rank %d: %zu sent messages were never received\n",
                   name_.c_str(), rank_, queue_.size());
      // Interrupt the reaper's wait on the oldest message.
      PendingSend& oldest = *queue_.front();
      oldest.header_buffer->abortWaitSend();
      if (oldest.data_buffer) oldest.data_buffer->abortWaitSend();
    }
  }
  reaper_.join();
}

void GlooSendQueue::Push(std::unique_ptr<PendingSend> send) {
  absl::MutexLock lock(&mu_);
  auto has_room = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return queue_.empty() || bytes_ < max_bytes_;
  };
  mu_.Await(absl::Condition(&has_room));
  bytes_ += send->bytes();
  queue_.push_back(std::move(send));
}

void GlooSendQueue::Reap() {
  for (;;) {
    PendingSend* oldest;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]()
                       ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !queue_.empty() || stopping_; };
      mu_.Await(absl::Condition(&ready));
      if (queue_.empty() || abandoned_) return;
      oldest = queue_.front().get();
    }
    // Only this thread pops, so `oldest` stays valid while unlocked.
    bool completed = true;
    try {
      completed = oldest->header_buffer->waitSend(kReaperWait);
      if (completed && oldest->data_buffer) completed = oldest->data_buffer->waitSend(kReaperWait);
    } catch (const std::exception& e) {
      absl::MutexLock lock(&mu_);
      // While the group shuts down, a peer that already left is no failure.
      if (stopping_) return;
      LATTICE_CHECK_MSG(false, "gloo Send failed in group '%s' (rank %d): %s", name_.c_str(), rank_,
                        e.what());
    }
    if (!completed) return;  // aborted by the destructor
    absl::MutexLock lock(&mu_);
    bytes_ -= oldest->bytes();
    queue_.pop_front();
  }
}

}  // namespace lattice
