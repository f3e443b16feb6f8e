// ControlClient: the worker's end of the control plane (WorkerControl/Connect, one
// bidirectional gRPC stream to the coordinator) and its heartbeat thread.
//
// Threads: the worker's main thread owns the client and is the only reader (Read,
// Close). Writes come from the main thread (Loaded, StepResult, WorkerError) and the
// heartbeat thread, serialised by a mutex, since gRPC allows one reader and one writer
// at a time on a stream.
//
// The worker never times out on its own clock, but it must not outlive the
// coordinator's stream: if a heartbeat cannot be written (the stream is gone) and the
// main thread does not stop the heartbeats within a grace period (it is stuck in a
// step's collective or in a load, where it cannot notice), the heartbeat thread ends
// the process with exit code 1.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/grpcpp.h"
#include "lattice/internal/v1/control.grpc.pb.h"

namespace lattice {

namespace pb = ::lattice::internal::v1;

class ControlClient {
 public:
  // Dials `target` ("host:port"), retrying until `connect_timeout` passes (the
  // coordinator may start after its workers), opens the stream and sends `hello` (the
  // Register). DEADLINE_EXCEEDED when the coordinator cannot be reached in time.
  static absl::StatusOr<std::unique_ptr<ControlClient>> Connect(
      const std::string& target, std::chrono::milliseconds connect_timeout,
      const pb::WorkerMessage& hello);
  // Closes the stream if Close was not called (cancelling it first).
  ~ControlClient();
  ControlClient(const ControlClient&) = delete;
  ControlClient& operator=(const ControlClient&) = delete;

  // Main thread. The next message; false once the stream has ended or broken.
  bool Read(pb::CoordinatorMessage* message);
  // Any thread. False (and broken() from then on) when the stream is gone.
  bool Write(const pb::WorkerMessage& message);

  // Main thread. Sends Heartbeat{sent_unix_ms} every `interval` from a background
  // thread until StopHeartbeats (or Close).
  void StartHeartbeats(std::chrono::milliseconds interval);
  void StopHeartbeats();

  // Whether the coordinator's side of the stream is gone (a read saw its end or a
  // write failed): nothing more can be told to the coordinator.
  bool broken() const { return broken_.load(); }

  // Main thread, once. Stops the heartbeats, half-closes, reads whatever the
  // coordinator still sends until it ends the call (cancelling it after a grace
  // period) and returns the call's status.
  absl::Status Close();

  const std::string& target() const { return target_; }

 private:
  ControlClient(std::string target, std::shared_ptr<grpc::Channel> channel);
  void HeartbeatLoop(std::chrono::milliseconds interval);

  const std::string target_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<pb::WorkerControl::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<pb::WorkerMessage, pb::CoordinatorMessage>> stream_;
  std::atomic<bool> broken_{false};
  bool read_done_ = false;  // main thread only
  bool closed_ = false;     // main thread only

  absl::Mutex write_mu_;
  bool writes_done_ ABSL_GUARDED_BY(write_mu_) = false;

  absl::Mutex heartbeat_mu_;
  bool heartbeat_stop_ ABSL_GUARDED_BY(heartbeat_mu_) = false;
  std::thread heartbeat_thread_;
};

}  // namespace lattice
