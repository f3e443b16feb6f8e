// Encoding, decoding and blocking socket I/O for the TCP store's frames.
#include "parallel/store_wire.h"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace lattice::store_wire {

uint32_t ReadU32(const char* p) {
  const auto* b = reinterpret_cast<const unsigned char*>(p);
  return uint32_t{b[0]} | uint32_t{b[1]} << 8 | uint32_t{b[2]} << 16 | uint32_t{b[3]} << 24;
}

void Writer::U32(uint32_t v) {
  for (int i = 0; i < 4; ++i) out_.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

void Writer::Bytes(std::string_view v) {
  U32(static_cast<uint32_t>(v.size()));
  out_.append(v);
}

std::string Writer::Frame() const {
  Writer frame;
  frame.U32(static_cast<uint32_t>(out_.size()));
  return frame.out_ + out_;
}

bool Reader::U8(uint8_t* v) {
  if (in_.empty()) return false;
  *v = static_cast<uint8_t>(in_[0]);
  in_.remove_prefix(1);
  return true;
}

bool Reader::U32(uint32_t* v) {
  if (in_.size() < 4) return false;
  *v = ReadU32(in_.data());
  in_.remove_prefix(4);
  return true;
}

bool Reader::Bytes(std::string* v, size_t max_bytes) {
  uint32_t n;
  if (!U32(&n) || n > max_bytes || n > in_.size()) return false;
  v->assign(in_.data(), n);
  in_.remove_prefix(n);
  return true;
}

std::string EncodeRequest(const Request& request) {
  Writer w;
  w.U8(static_cast<uint8_t>(request.op));
  switch (request.op) {
    case Op::kSet:
      w.Bytes(request.keys.at(0));
      w.Bytes(request.value);
      break;
    case Op::kGet:
      w.Bytes(request.keys.at(0));
      w.U32(request.timeout_ms);
      break;
    case Op::kWait:
    case Op::kCheck:
      w.U32(static_cast<uint32_t>(request.keys.size()));
      for (const std::string& key : request.keys) w.Bytes(key);
      if (request.op == Op::kWait) w.U32(request.timeout_ms);
      break;
  }
  return w.Frame();
}

bool DecodeRequest(std::string_view payload, Request* request) {
  Reader r(payload);
  uint8_t op;
  if (!r.U8(&op)) return false;
  request->keys.clear();
  request->value.clear();
  request->timeout_ms = 0;
  switch (static_cast<Op>(op)) {
    case Op::kSet:
      request->keys.emplace_back();
      if (!r.Bytes(&request->keys[0], kMaxKeyBytes) || !r.Bytes(&request->value, kMaxValueBytes)) {
        return false;
      }
      break;
    case Op::kGet:
      request->keys.emplace_back();
      if (!r.Bytes(&request->keys[0], kMaxKeyBytes) || !r.U32(&request->timeout_ms)) return false;
      break;
    case Op::kWait:
    case Op::kCheck: {
      uint32_t n;
      if (!r.U32(&n) || n > kMaxKeys) return false;
      request->keys.resize(n);
      for (std::string& key : request->keys) {
        if (!r.Bytes(&key, kMaxKeyBytes)) return false;
      }
      if (static_cast<Op>(op) == Op::kWait && !r.U32(&request->timeout_ms)) return false;
      break;
    }
    default:
      return false;
  }
  request->op = static_cast<Op>(op);
  return r.AtEnd();
}

uint32_t ToTimeoutMs(std::chrono::milliseconds timeout) {
  return static_cast<uint32_t>(std::clamp<int64_t>(timeout.count(), 0, UINT32_MAX));
}

absl::Status SendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::UnavailableError(absl::StrCat("store send: ", std::strerror(errno)));
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

namespace {

absl::Status RecvExactly(int fd, std::chrono::steady_clock::time_point deadline, char* out,
                         size_t n) {
  while (n > 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return absl::DeadlineExceededError("store reply did not arrive in time");
    pollfd pfd{.fd = fd, .events = POLLIN, .revents = 0};
    const int ready = ::poll(&pfd, 1, static_cast<int>(std::min<int64_t>(left.count(), 1 << 30)));
    if (ready < 0 && errno != EINTR) {
      return absl::UnavailableError(absl::StrCat("store poll: ", std::strerror(errno)));
    }
    if (ready <= 0) continue;
    const ssize_t got = ::recv(fd, out, n, 0);
    if (got == 0) return absl::UnavailableError("store connection closed by the server");
    if (got < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return absl::UnavailableError(absl::StrCat("store recv: ", std::strerror(errno)));
    }
    out += got;
    n -= static_cast<size_t>(got);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status RecvFrame(int fd, std::chrono::steady_clock::time_point deadline,
                       std::string* payload) {
  char header[4];
  if (absl::Status s = RecvExactly(fd, deadline, header, 4); !s.ok()) return s;
  const uint32_t n = ReadU32(header);
  if (n > kMaxFrameBytes) {
    return absl::DataLossError(absl::StrCat("store reply of ", n, " bytes exceeds the cap"));
  }
  payload->resize(n);
  return RecvExactly(fd, deadline, payload->data(), n);
}

}  // namespace lattice::store_wire
