// The worker's control stream and heartbeats (see control_client.h).
#include "worker/control_client.h"

#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "base/limits.h"

namespace lattice {
namespace {

// How long a stuck main thread may keep the process alive after the stream is gone.
constexpr std::chrono::seconds kStreamLossGrace{10};
// How long Close waits for the coordinator to end the call after our half-close.
constexpr std::chrono::seconds kCloseGrace{5};
// Pause between attempts when the coordinator is reachable but refuses the stream
// (UNAVAILABLE: its service is not up yet).
constexpr std::chrono::milliseconds kRetryPause{200};

absl::Status FromGrpc(const grpc::Status& status) {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

grpc::ChannelArguments ChannelArgs() {
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(kMaxControlMessageBytes);
  args.SetMaxReceiveMessageSize(kMaxControlMessageBytes);
  // Redial a coordinator that is not up yet every second at most, rather than with
  // gRPC's default backoff of up to two minutes: workers usually start first.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  return args;
}

int64_t UnixMillisNow() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

ControlClient::ControlClient(std::string target, std::shared_ptr<grpc::Channel> channel)
    : target_(std::move(target)),
      channel_(std::move(channel)),
      stub_(pb::WorkerControl::NewStub(channel_)) {}

absl::StatusOr<std::unique_ptr<ControlClient>> ControlClient::Connect(
    const std::string& target, std::chrono::milliseconds connect_timeout,
    const pb::WorkerMessage& hello) {
  const auto deadline = std::chrono::system_clock::now() + connect_timeout;
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), ChannelArgs());
  absl::Status last = absl::OkStatus();
  while (true) {
    if (!channel->WaitForConnected(deadline)) {
      return absl::DeadlineExceededError(
          absl::StrCat("could not reach the coordinator at ", target, " within ",
                       absl::FormatDuration(absl::FromChrono(connect_timeout)),
                       last.ok() ? "" : absl::StrCat(" (last attempt: ", last.ToString(), ")")));
    }
    // A ClientContext serves one call, so each attempt is a fresh client.
    std::unique_ptr<ControlClient> client(new ControlClient(target, channel));
    client->stream_ = client->stub_->Connect(&client->context_);
    if (client->Write(hello)) return client;
    last = client->Close();
    if (last.code() != absl::StatusCode::kUnavailable ||
        std::chrono::system_clock::now() >= deadline) {
      return absl::Status(last.code(),
                          absl::StrCat("the coordinator at ", target,
                                       " refused the control stream: ", last.message()));
    }
    std::this_thread::sleep_for(kRetryPause);
  }
}

ControlClient::~ControlClient() {
  if (!closed_) {
    context_.TryCancel();
    Close().IgnoreError();
  }
}

bool ControlClient::Read(pb::CoordinatorMessage* message) {
  if (read_done_) return false;
  if (stream_->Read(message)) return true;
  read_done_ = true;
  broken_ = true;
  return false;
}

bool ControlClient::Write(const pb::WorkerMessage& message) {
  absl::MutexLock lock(&write_mu_);
  if (writes_done_ || broken_) return false;
  if (stream_->Write(message)) return true;
  broken_ = true;
  return false;
}

void ControlClient::StartHeartbeats(std::chrono::milliseconds interval) {
  if (heartbeat_thread_.joinable()) return;
  heartbeat_thread_ = std::thread([this, interval] { HeartbeatLoop(interval); });
}

void ControlClient::StopHeartbeats() {
  {
    absl::MutexLock lock(&heartbeat_mu_);
    heartbeat_stop_ = true;
  }
  if (heartbeat_thread_.joinable()) heartbeat_thread_.join();
}

void ControlClient::HeartbeatLoop(std::chrono::milliseconds interval) {
  auto stopped_within = [this](std::chrono::milliseconds wait) {
    absl::MutexLock lock(&heartbeat_mu_);
    return heartbeat_mu_.AwaitWithTimeout(absl::Condition(&heartbeat_stop_),
                                          absl::FromChrono(wait));
  };
  while (!stopped_within(interval)) {
    pb::WorkerMessage message;
    message.mutable_heartbeat()->set_sent_unix_ms(UnixMillisNow());
    if (Write(message)) continue;
    // The stream is gone. The main thread notices on its next read and stops us; if
    // it does not in time it is inside a step or a load and would otherwise run on
    // (or wait on a peer's collective) with nobody left to report to.
    if (stopped_within(kStreamLossGrace)) return;
    std::fprintf(stderr,
                 "lattice worker: the control stream to %s is gone and the worker is busy in a "
                 "step or a load; "
                 "exiting\n",
                 target_.c_str());
    std::fflush(stderr);
    std::_Exit(1);
  }
}

absl::Status ControlClient::Close() {
  if (closed_) return absl::FailedPreconditionError("the control stream is already closed");
  StopHeartbeats();
  {
    absl::MutexLock lock(&write_mu_);
    if (!writes_done_) {
      writes_done_ = true;
      stream_->WritesDone();
    }
  }
  // The coordinator ends the call once it has read our half-close; one that does not
  // is cancelled, since Finish would wait for it forever.
  absl::Notification drained;
  std::thread canceller([this, &drained] {
    if (!drained.WaitForNotificationWithTimeout(absl::FromChrono(kCloseGrace)))
      context_.TryCancel();
  });
  pb::CoordinatorMessage ignored;
  while (Read(&ignored)) {
  }
  drained.Notify();
  canceller.join();
  closed_ = true;
  return FromGrpc(stream_->Finish());
}

}  // namespace lattice
