// GlooSendQueue: what makes gloo's Send buffered. gloo's TCP transport moves a message
// only once the receiver has posted the matching recv, so a Send that waited for its
// completion would deadlock a ring of Send-then-Recv. Instead Send copies the tensor,
// posts the gloo send and hands the copy to this queue; one reaper thread (owned by the
// queue, started with it) waits for the oldest send to complete and frees its copy.
//
// The queue holds at most `max_bytes` of copies (a single larger message is let
// through alone); past that, Push blocks until the reaper frees space.
#pragma once

#include <chrono>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace gloo::transport {
class UnboundBuffer;
}  // namespace gloo::transport

namespace lattice {

// A copy on its way to a receiver that may not have asked for it yet.
struct PendingSend {
  uint64_t header[2] = {0, 0};  // magic, byte size
  std::vector<char> data;
  std::unique_ptr<gloo::transport::UnboundBuffer> header_buffer;
  std::unique_ptr<gloo::transport::UnboundBuffer> data_buffer;  // null for an empty message
  size_t bytes() const { return data.size(); }
};

class GlooSendQueue {
 public:
  // `name` and `rank` label error messages; `drain_timeout` bounds how long the
  // destructor waits for receivers before giving up on their messages.
  GlooSendQueue(std::string name, int rank, size_t max_bytes,
                std::chrono::milliseconds drain_timeout);
  // Waits up to drain_timeout for the queue to empty, reports the messages nobody
  // received to stderr, and stops the reaper.
  ~GlooSendQueue();

  // Called by the communicator's user thread after posting the gloo sends.
  void Push(std::unique_ptr<PendingSend> send);

 private:
  void Reap();

  const std::string name_;
  const int rank_;
  const size_t max_bytes_;
  const std::chrono::milliseconds drain_timeout_;
  absl::Mutex mu_;
  std::deque<std::unique_ptr<PendingSend>> queue_ ABSL_GUARDED_BY(mu_);
  size_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool abandoned_ ABSL_GUARDED_BY(mu_) = false;  // stopping with messages never received
  std::thread reaper_;
};

}  // namespace lattice
