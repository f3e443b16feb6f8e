// TcpStoreServer: one thread runs a poll(2) loop over the listening socket, a wake-up
// pipe and every client connection. Requests that must wait (get, wait) park their
// connection until a set satisfies them or their deadline passes; nothing blocks the
// loop. A malformed request closes only its own connection.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <list>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "parallel/store_wire.h"
#include "parallel/tcp_store.h"

namespace lattice {

using store_wire::Op;
using Clock = std::chrono::steady_clock;

namespace {

void SetNonBlocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }

// Stop reading from a client whose replies pile up unread.
constexpr size_t kMaxPendingOutput = 2 * static_cast<size_t>(store_wire::kMaxFrameBytes);

struct Connection {
  int fd = -1;
  std::string in;   // received, not yet parsed
  std::string out;  // replies not yet written
  bool parked = false;
  store_wire::Request request;  // the parked request
  Clock::time_point deadline;
  bool dead = false;
};

}  // namespace

class TcpStoreServer::Loop {
 public:
  Loop(int listen_fd, int wake_fd, int max_connections)
      : listen_fd_(listen_fd), wake_fd_(wake_fd), max_connections_(max_connections) {}

  ~Loop() {
    for (Connection& c : connections_) ::close(c.fd);
    ::close(listen_fd_);
  }

  void Run() {
    std::vector<pollfd> fds;
    std::vector<Connection*> owners;
    for (;;) {
      fds.clear();
      owners.clear();
      fds.push_back({wake_fd_, POLLIN, 0});
      fds.push_back({listen_fd_, POLLIN, 0});
      for (Connection& c : connections_) {
        short events = 0;
        if (!c.parked && c.out.size() < kMaxPendingOutput) events |= POLLIN;
        if (!c.out.empty()) events |= POLLOUT;
        fds.push_back({c.fd, events, 0});
        owners.push_back(&c);
      }
      if (::poll(fds.data(), fds.size(), PollTimeoutMs()) < 0 && errno != EINTR) return;
      if (fds[0].revents != 0) return;  // Stop() wrote to the pipe
      if (fds[1].revents & POLLIN) Accept();
      for (size_t i = 0; i < owners.size(); ++i) {
        Connection& c = *owners[i];
        if (fds[i + 2].revents & (POLLIN | POLLHUP | POLLERR)) Read(c);
        if (!c.dead) Process(c);
        if (!c.dead && !c.out.empty()) Write(c);
      }
      ResolveParked();
      connections_.remove_if([](const Connection& c) {
        if (c.dead) ::close(c.fd);
        return c.dead;
      });
    }
  }

 private:
  // Until the nearest parked deadline (rounded up), or forever when nothing is parked.
  int PollTimeoutMs() const {
    const auto now = Clock::now();
    int64_t timeout = -1;
    for (const Connection& c : connections_) {
      if (!c.parked) continue;
      const int64_t left = std::max<int64_t>(
          0, std::chrono::duration_cast<std::chrono::milliseconds>(c.deadline - now).count() + 1);
      if (timeout < 0 || left < timeout) timeout = left;
    }
    return static_cast<int>(std::min<int64_t>(timeout, 1 << 30));
  }

  void Accept() {
    for (;;) {
      const int fd = ::accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) return;  // EAGAIN, or a transient error: try again on the next poll
      if (static_cast<int>(connections_.size()) >= max_connections_) {
        ::close(fd);
        continue;
      }
      SetNonBlocking(fd);
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      connections_.emplace_back().fd = fd;
    }
  }

  void Read(Connection& c) {
    char buffer[64 * 1024];
    for (;;) {
      const ssize_t n = ::recv(c.fd, buffer, sizeof(buffer), 0);
      if (n > 0) {
        c.in.append(buffer, static_cast<size_t>(n));
        // Never hold more than one frame plus one read of input.
        if (c.in.size() > store_wire::kMaxFrameBytes + 4 + sizeof(buffer)) break;
        continue;
      }
      if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) c.dead = true;
      if (n < 0 && errno == EINTR) continue;
      return;
    }
  }

  // Parses and serves complete frames until the connection parks or runs out of input.
  void Process(Connection& c) {
    while (!c.parked && !c.dead && c.in.size() >= 4) {
      const uint32_t n = store_wire::ReadU32(c.in.data());
      if (n > store_wire::kMaxFrameBytes) {
        c.dead = true;
        return;
      }
      if (c.in.size() < 4 + static_cast<size_t>(n)) return;
      const bool ok = store_wire::DecodeRequest(std::string_view(c.in).substr(4, n), &c.request);
      c.in.erase(0, 4 + static_cast<size_t>(n));
      if (!ok) {
        c.dead = true;
        return;
      }
      Serve(c);
    }
  }

  void Serve(Connection& c) {
    store_wire::Writer reply;
    switch (c.request.op) {
      case Op::kSet:
        data_[c.request.keys[0]] = std::move(c.request.value);
        reply.U8(static_cast<uint8_t>(store_wire::Status::kOk));
        break;
      case Op::kCheck:
        reply.U8(static_cast<uint8_t>(store_wire::Status::kOk));
        reply.U8(AllPresent(c.request.keys) ? 1 : 0);
        break;
      case Op::kGet:
      case Op::kWait:
        if (AllPresent(c.request.keys)) {
          Answer(c);
        } else {
          c.parked = true;
          c.deadline = Clock::now() + std::chrono::milliseconds(c.request.timeout_ms);
        }
        return;
    }
    c.out += reply.Frame();
  }

  // Replies to a get or wait whose keys are all present.
  void Answer(Connection& c) {
    store_wire::Writer reply;
    reply.U8(static_cast<uint8_t>(store_wire::Status::kOk));
    if (c.request.op == Op::kGet) reply.Bytes(data_[c.request.keys[0]]);
    c.out += reply.Frame();
    c.parked = false;
  }

  void ResolveParked() {
    const auto now = Clock::now();
    for (Connection& c : connections_) {
      if (!c.parked || c.dead) continue;
      if (AllPresent(c.request.keys)) {
        Answer(c);
      } else if (now >= c.deadline) {
        store_wire::Writer reply;
        reply.U8(static_cast<uint8_t>(store_wire::Status::kTimeout));
        std::vector<const std::string*> missing;
        for (const std::string& key : c.request.keys) {
          if (!data_.contains(key)) missing.push_back(&key);
        }
        reply.U32(static_cast<uint32_t>(missing.size()));
        for (const std::string* key : missing) reply.Bytes(*key);
        c.out += reply.Frame();
        c.parked = false;
      } else {
        continue;
      }
      // Serve what the client sent after the parked request, then flush.
      Process(c);
      if (!c.dead) Write(c);
    }
  }

  void Write(Connection& c) {
    while (!c.out.empty()) {
      const ssize_t n = ::send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
      if (n > 0) {
        c.out.erase(0, static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      c.dead = true;
      return;
    }
  }

  bool AllPresent(const std::vector<std::string>& keys) const {
    return std::all_of(keys.begin(), keys.end(),
                       [this](const std::string& k) { return data_.contains(k); });
  }

  const int listen_fd_;
  const int wake_fd_;
  const int max_connections_;
  std::list<Connection> connections_;
  std::unordered_map<std::string, std::string> data_;
};

absl::StatusOr<std::unique_ptr<TcpStoreServer>> TcpStoreServer::Start(
    const TcpStoreServerOptions& options) {
  if (options.port < 0 || options.port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("store port ", options.port, " is not in [0, 65535]"));
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(options.port);
  if (int rc = ::getaddrinfo(options.bind_address.c_str(), port.c_str(), &hints, &found); rc != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("store bind address '", options.bind_address, "': ", ::gai_strerror(rc)));
  }
  int fd = -1;
  std::string error = "no address";
  for (addrinfo* a = found; a != nullptr && fd < 0; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd, a->ai_addr, a->ai_addrlen) != 0 || ::listen(fd, 1024) != 0) {
      error = std::strerror(errno);
      ::close(fd);
      fd = -1;
    }
  }
  ::freeaddrinfo(found);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat("store cannot listen on ", options.bind_address, ":",
                                               options.port, ": ", error));
  }
  sockaddr_storage bound{};
  socklen_t len = sizeof(bound);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
  const int bound_port =
      ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                        : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  SetNonBlocking(fd);

  std::unique_ptr<TcpStoreServer> server(new TcpStoreServer(fd, bound_port));
  if (::pipe2(server->wake_fds_, O_CLOEXEC) != 0) {
    ::close(fd);
    return absl::InternalError(absl::StrCat("store pipe: ", std::strerror(errno)));
  }
  server->loop_ = std::make_unique<Loop>(fd, server->wake_fds_[0], options.max_connections);
  server->thread_ = std::thread([loop = server->loop_.get()] { loop->Run(); });
  return server;
}

TcpStoreServer::TcpStoreServer(int /*listen_fd*/, int port) : port_(port) {}

TcpStoreServer::~TcpStoreServer() { Stop(); }

void TcpStoreServer::Stop() {
  if (stopped_.exchange(true)) return;
  if (thread_.joinable()) {
    const char byte = 1;
    while (::write(wake_fds_[1], &byte, 1) < 0 && errno == EINTR) {
    }
    thread_.join();
  }
  loop_.reset();  // closes the listening socket and every connection
  for (int& fd : wake_fds_) {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
}

}  // namespace lattice
