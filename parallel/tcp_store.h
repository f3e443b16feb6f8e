// The rendezvous store: a small key-value server over TCP that ranks use to find each
// other (gloo pair addresses, NCCL unique ids). Rank 0 hosts TcpStoreServer for now;
// later the coordinator will. Every rank talks to it through TcpStoreClient, which is
// also a gloo::rendezvous::Store so gloo contexts can connect through it.
//
// Keys are write-once in practice (a second set overwrites). get and wait block on the
// server until the key exists or the timeout passes. See store_wire.h for the format
// and its size caps.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "gloo/rendezvous/store.h"

namespace lattice {

struct TcpStoreServerOptions {
  std::string bind_address = "0.0.0.0";
  int port = 0;  // 0: an ephemeral port, see port()
  int max_connections = 4096;
};

// Serves set/get/wait/check on one background thread (poll(2), non-blocking sockets),
// so many clients cost no threads. Thread-safe: Start, port and Stop may be called
// from any thread.
class TcpStoreServer {
 public:
  static absl::StatusOr<std::unique_ptr<TcpStoreServer>> Start(
      const TcpStoreServerOptions& options);
  ~TcpStoreServer();
  TcpStoreServer(const TcpStoreServer&) = delete;
  TcpStoreServer& operator=(const TcpStoreServer&) = delete;

  int port() const { return port_; }
  // Closes every connection and joins the thread; idempotent. Blocked clients see the
  // connection close.
  void Stop();

 private:
  class Loop;
  TcpStoreServer(int listen_fd, int port);

  const int port_;
  std::unique_ptr<Loop> loop_;
  std::thread thread_;
  int wake_fds_[2] = {-1, -1};
  std::atomic<bool> stopped_{false};
};

struct TcpStoreClientOptions {
  // Connection attempts are retried until this passes, so clients may start first.
  std::chrono::milliseconds connect_timeout{60'000};
  // Default for get/wait (and for gloo's Store::wait without a timeout).
  std::chrono::milliseconds timeout{300'000};
};

// One connection to a TcpStoreServer. Thread-safe: requests are serialised, so a
// blocking get holds up the others on the same client.
class TcpStoreClient : public gloo::rendezvous::Store {
 public:
  static absl::StatusOr<std::unique_ptr<TcpStoreClient>> Connect(
      const std::string& host, int port, const TcpStoreClientOptions& options = {});
  ~TcpStoreClient() override;

  absl::Status Set(const std::string& key, std::string_view value);
  // DEADLINE_EXCEEDED naming the key and the timeout when it is not set in time.
  absl::StatusOr<std::string> Get(const std::string& key);
  absl::StatusOr<std::string> Get(const std::string& key, std::chrono::milliseconds timeout);
  absl::Status Wait(const std::vector<std::string>& keys, std::chrono::milliseconds timeout);
  // Whether every key is set now.
  absl::StatusOr<bool> Check(const std::vector<std::string>& keys);

  // gloo::rendezvous::Store. gloo's interface has no status, so failures throw
  // gloo::IoException with the same message; MakeGlooCommunicator turns that back
  // into a status.
  void set(const std::string& key, const std::vector<char>& data) override;
  std::vector<char> get(const std::string& key) override;
  void wait(const std::vector<std::string>& keys) override;
  void wait(const std::vector<std::string>& keys,
            const std::chrono::milliseconds& timeout) override;

  const std::string& address() const { return address_; }  // "host:port"

 private:
  TcpStoreClient(int fd, std::string address, const TcpStoreClientOptions& options);
  // Sends one request and reads its reply; `reply_wait` is how long the server may
  // take (its own timeout), plus a margin for the network.
  absl::StatusOr<std::string> RoundTrip(const std::string& frame,
                                        std::chrono::milliseconds reply_wait);
  absl::Status TimeoutError(std::string_view reply_rest, std::chrono::milliseconds timeout);

  const std::string address_;
  const TcpStoreClientOptions options_;
  absl::Mutex mu_;
  int fd_ ABSL_GUARDED_BY(mu_);
};

}  // namespace lattice
