// TcpStoreClient: blocking request/reply over one TCP connection, with connection
// retries so that clients may start before the server.
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gloo/common/error.h"
#include "parallel/store_wire.h"
#include "parallel/tcp_store.h"

namespace lattice {

using store_wire::Op;
using Clock = std::chrono::steady_clock;

namespace {

// The server answers a get or wait when its timeout passes; allow this much more for
// the reply to travel before the connection is given up.
constexpr std::chrono::milliseconds kReplyMargin{10'000};

// One attempt: a connected socket, or the error of the last address tried.
int TryConnect(const std::string& host, int port, std::string* error) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found); rc != 0) {
    *error = ::gai_strerror(rc);
    return -1;
  }
  int fd = -1;
  for (addrinfo* a = found; a != nullptr && fd < 0; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    if (::connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
      *error = std::strerror(errno);
      ::close(fd);
      fd = -1;
    }
  }
  ::freeaddrinfo(found);
  if (fd >= 0) {
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  return fd;
}

std::string QuoteKeys(const std::vector<std::string>& keys) {
  return absl::StrJoin(keys, ", ", [](std::string* out, const std::string& k) {
    absl::StrAppend(out, "'", k, "'");
  });
}

}  // namespace

absl::StatusOr<std::unique_ptr<TcpStoreClient>> TcpStoreClient::Connect(
    const std::string& host, int port, const TcpStoreClientOptions& options) {
  if (port < 1 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("store port ", port, " is not in [1, 65535]"));
  }
  const auto deadline = Clock::now() + options.connect_timeout;
  std::string error;
  auto backoff = std::chrono::milliseconds(10);
  for (;;) {
    const int fd = TryConnect(host, port, &error);
    if (fd >= 0) {
      return std::unique_ptr<TcpStoreClient>(
          new TcpStoreClient(fd, absl::StrCat(host, ":", port), options));
    }
    if (Clock::now() + backoff > deadline) break;
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(200));
  }
  return absl::UnavailableError(absl::StrCat("cannot connect to the store at ", host, ":", port,
                                             " within ", options.connect_timeout.count(),
                                             " ms: ", error));
}

TcpStoreClient::TcpStoreClient(int fd, std::string address, const TcpStoreClientOptions& options)
    : address_(std::move(address)), options_(options), fd_(fd) {}

TcpStoreClient::~TcpStoreClient() {
  absl::MutexLock lock(&mu_);
  if (fd_ >= 0) ::close(fd_);
}

absl::StatusOr<std::string> TcpStoreClient::RoundTrip(const std::string& frame,
                                                      std::chrono::milliseconds reply_wait) {
  absl::MutexLock lock(&mu_);
  if (fd_ < 0) {
    return absl::UnavailableError(
        absl::StrCat("store connection to ", address_, " was lost earlier"));
  }
  std::string reply;
  absl::Status status = store_wire::SendAll(fd_, frame);
  if (status.ok())
    status = store_wire::RecvFrame(fd_, Clock::now() + reply_wait + kReplyMargin, &reply);
  if (status.ok() && reply.empty()) status = absl::DataLossError("empty store reply");
  if (!status.ok()) {
    // The stream may hold half a reply: never reuse it.
    ::close(fd_);
    fd_ = -1;
    return absl::Status(status.code(), absl::StrCat("store ", address_, ": ", status.message()));
  }
  return reply;
}

absl::Status TcpStoreClient::TimeoutError(std::string_view reply_rest,
                                          std::chrono::milliseconds timeout) {
  store_wire::Reader r(reply_rest);
  uint32_t n = 0;
  std::vector<std::string> missing;
  if (r.U32(&n) && n <= store_wire::kMaxKeys) {
    missing.resize(n);
    for (std::string& key : missing) r.Bytes(&key, store_wire::kMaxKeyBytes);
  }
  return absl::DeadlineExceededError(
      absl::StrCat("store key", missing.size() == 1 ? " " : "s ", QuoteKeys(missing),
                   missing.size() == 1 ? " was" : " were", " not set within ", timeout.count(),
                   " ms (store ", address_, ")"));
}

absl::Status TcpStoreClient::Set(const std::string& key, std::string_view value) {
  if (key.size() > store_wire::kMaxKeyBytes || value.size() > store_wire::kMaxValueBytes) {
    return absl::InvalidArgumentError(absl::StrCat("store key '", key.substr(0, 64), "' (",
                                                   key.size(), " bytes) or its value (",
                                                   value.size(), " bytes) exceeds the cap"));
  }
  store_wire::Request request{
      .op = Op::kSet, .keys = {key}, .value = std::string(value), .timeout_ms = 0};
  absl::StatusOr<std::string> reply = RoundTrip(store_wire::EncodeRequest(request), {});
  if (!reply.ok()) return reply.status();
  return absl::OkStatus();
}

absl::StatusOr<std::string> TcpStoreClient::Get(const std::string& key) {
  return Get(key, options_.timeout);
}

absl::StatusOr<std::string> TcpStoreClient::Get(const std::string& key,
                                                std::chrono::milliseconds timeout) {
  if (key.size() > store_wire::kMaxKeyBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("store key of ", key.size(), " bytes exceeds the cap"));
  }
  store_wire::Request request{
      .op = Op::kGet, .keys = {key}, .value = {}, .timeout_ms = store_wire::ToTimeoutMs(timeout)};
  absl::StatusOr<std::string> reply = RoundTrip(store_wire::EncodeRequest(request), timeout);
  if (!reply.ok()) return reply.status();
  const auto status = static_cast<store_wire::Status>((*reply)[0]);
  if (status == store_wire::Status::kTimeout)
    return TimeoutError(std::string_view(*reply).substr(1), timeout);
  store_wire::Reader r(std::string_view(*reply).substr(1));
  std::string value;
  if (status != store_wire::Status::kOk || !r.Bytes(&value, store_wire::kMaxValueBytes)) {
    return absl::DataLossError(absl::StrCat("malformed store reply to get '", key, "'"));
  }
  return value;
}

absl::Status TcpStoreClient::Wait(const std::vector<std::string>& keys,
                                  std::chrono::milliseconds timeout) {
  if (keys.size() > store_wire::kMaxKeys) {
    return absl::InvalidArgumentError(
        absl::StrCat("waiting for ", keys.size(), " store keys exceeds the cap"));
  }
  store_wire::Request request{
      .op = Op::kWait, .keys = keys, .value = {}, .timeout_ms = store_wire::ToTimeoutMs(timeout)};
  absl::StatusOr<std::string> reply = RoundTrip(store_wire::EncodeRequest(request), timeout);
  if (!reply.ok()) return reply.status();
  const auto status = static_cast<store_wire::Status>((*reply)[0]);
  if (status == store_wire::Status::kTimeout)
    return TimeoutError(std::string_view(*reply).substr(1), timeout);
  return absl::OkStatus();
}

absl::StatusOr<bool> TcpStoreClient::Check(const std::vector<std::string>& keys) {
  if (keys.size() > store_wire::kMaxKeys) {
    return absl::InvalidArgumentError(
        absl::StrCat("checking ", keys.size(), " store keys exceeds the cap"));
  }
  store_wire::Request request{.op = Op::kCheck, .keys = keys, .value = {}, .timeout_ms = 0};
  absl::StatusOr<std::string> reply = RoundTrip(store_wire::EncodeRequest(request), {});
  if (!reply.ok()) return reply.status();
  if (reply->size() != 2) return absl::DataLossError("malformed store reply to check");
  return (*reply)[1] != 0;
}

namespace {

template <typename T>
T OrThrow(absl::StatusOr<T> value) {
  if (!value.ok()) throw ::gloo::IoException(std::string(value.status().ToString()));
  return *std::move(value);
}

void OrThrow(const absl::Status& status) {
  if (!status.ok()) throw ::gloo::IoException(std::string(status.ToString()));
}

}  // namespace

void TcpStoreClient::set(const std::string& key, const std::vector<char>& data) {
  OrThrow(Set(key, std::string_view(data.data(), data.size())));
}

std::vector<char> TcpStoreClient::get(const std::string& key) {
  const std::string value = OrThrow(Get(key, options_.timeout));
  return std::vector<char>(value.begin(), value.end());
}

void TcpStoreClient::wait(const std::vector<std::string>& keys) { wait(keys, options_.timeout); }

void TcpStoreClient::wait(const std::vector<std::string>& keys,
                          const std::chrono::milliseconds& timeout) {
  OrThrow(Wait(keys, timeout));
}

}  // namespace lattice
