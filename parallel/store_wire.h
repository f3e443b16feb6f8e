// The TCP store's wire format, shared by TcpStoreServer and TcpStoreClient.
//
// Every message is a frame: a little-endian u32 payload length, then the payload.
// Request payload: u8 op, then
//   kSet:   bytes key, bytes value
//   kGet:   bytes key, u32 timeout_ms         (the server waits for the key)
//   kWait:  u32 n, n x bytes key, u32 timeout_ms
//   kCheck: u32 n, n x bytes key
// where `bytes` is a u32 length then that many bytes. Reply payload: u8 status, then
//   kGet ok: bytes value;  kCheck ok: u8 all_present;
//   kTimeout (get, wait): u32 n, n x bytes key still missing.
// Sizes are capped (keys, values, key counts, frames); a request that breaks a cap or
// the format is malformed and the server drops that connection.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"

namespace lattice::store_wire {

constexpr size_t kMaxKeyBytes = 4096;
constexpr size_t kMaxValueBytes = 64 << 20;
constexpr uint32_t kMaxKeys = 4096;
constexpr uint32_t kMaxFrameBytes = kMaxValueBytes + (1 << 20);

enum class Op : uint8_t { kSet = 1, kGet = 2, kWait = 3, kCheck = 4 };
enum class Status : uint8_t { kOk = 0, kTimeout = 1 };

struct Request {
  Op op = Op::kSet;
  std::vector<std::string> keys;  // one for set and get
  std::string value;              // set
  uint32_t timeout_ms = 0;        // get, wait
};

// Appends fields to a payload; Frame() prefixes the length.
class Writer {
 public:
  void U8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void U32(uint32_t v);
  void Bytes(std::string_view v);
  const std::string& payload() const { return out_; }
  std::string Frame() const;

 private:
  std::string out_;
};

// Reads fields from a payload; every read fails (returns false) past the end.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool U8(uint8_t* v);
  bool U32(uint32_t* v);
  bool Bytes(std::string* v, size_t max_bytes);
  bool AtEnd() const { return in_.empty(); }

 private:
  std::string_view in_;
};

uint32_t ReadU32(const char* p);

std::string EncodeRequest(const Request& request);
// False when the payload is malformed: unknown op, a field past the end or over its
// cap, trailing bytes.
bool DecodeRequest(std::string_view payload, Request* request);

uint32_t ToTimeoutMs(std::chrono::milliseconds timeout);

// Blocking socket helpers for the client side. MSG_NOSIGNAL: a closed peer is an
// error, never SIGPIPE.
absl::Status SendAll(int fd, std::string_view data);
// Reads one frame's payload, failing when `deadline` passes first.
absl::Status RecvFrame(int fd, std::chrono::steady_clock::time_point deadline,
                       std::string* payload);

}  // namespace lattice::store_wire
