// Argument checks, reductions and the self-mailbox shared by the communicator backends.
#include "parallel/comm_util.h"

#include <algorithm>
#include <cstring>

#include "base/check.h"

namespace lattice::comm_internal {

size_t RowBytes(const Tensor& t) {
  if (t.ndim() == 0) return t.nbytes();
  const Shape row(t.shape().begin() + 1, t.shape().end());
  return static_cast<size_t>(ShapeNumel(row)) * DTypeSize(t.dtype());
}

void CheckHost(const Tensor& t, const char* op) {
  LATTICE_CHECK_MSG(t.defined(), "%s: undefined tensor", op);
  LATTICE_CHECK_MSG(t.device() == Device::kCpu, "%s: the CPU communicators take host tensors", op);
}

void CheckReducible(const Tensor& t, const char* op) {
  CheckHost(t, op);
  LATTICE_CHECK_MSG(t.dtype() == DType::kF32 || t.dtype() == DType::kI32,
                    "%s: reductions on the CPU communicators take f32 or i32, got %s", op,
                    t.DebugString().c_str());
}

namespace {

bool SameTrailing(const Tensor& a, const Tensor& b) {
  return a.ndim() == b.ndim() && a.ndim() >= 1 &&
         std::equal(a.shape().begin() + 1, a.shape().end(), b.shape().begin() + 1);
}

}  // namespace

void CheckAllGather(const Tensor& in, const Tensor& out, int size) {
  LATTICE_CHECK_MSG(in.defined() && out.defined(), "AllGather: undefined tensor");
  LATTICE_CHECK_MSG(
      in.dtype() == out.dtype() && SameTrailing(in, out) && out.dim(0) == size * in.dim(0),
      "AllGather over %d ranks: in %s, out %s (want out [%d * in.dim(0), ...])", size,
      in.DebugString().c_str(), out.DebugString().c_str(), size);
}

void CheckReduceScatter(const Tensor& in, const Tensor& out, int size) {
  LATTICE_CHECK_MSG(in.defined() && out.defined(), "ReduceScatter: undefined tensor");
  LATTICE_CHECK_MSG(
      in.dtype() == out.dtype() && SameTrailing(in, out) && in.dim(0) == size * out.dim(0),
      "ReduceScatter over %d ranks: in %s, out %s (want in [%d * out.dim(0), ...])", size,
      in.DebugString().c_str(), out.DebugString().c_str(), size);
}

void CheckAllToAllV(const Tensor& in, std::span<const int64_t> send_counts, const Tensor& out,
                    std::span<const int64_t> recv_counts, int size) {
  LATTICE_CHECK_MSG(in.defined() && out.defined(), "AllToAllV: undefined tensor");
  LATTICE_CHECK_MSG(
      static_cast<int>(send_counts.size()) == size && static_cast<int>(recv_counts.size()) == size,
      "AllToAllV over %d ranks: %zu send counts, %zu recv counts", size, send_counts.size(),
      recv_counts.size());
  LATTICE_CHECK_MSG(in.dtype() == out.dtype() && SameTrailing(in, out),
                    "AllToAllV: in %s and out %s differ in dtype or row shape",
                    in.DebugString().c_str(), out.DebugString().c_str());
  int64_t sent = 0, received = 0;
  for (int r = 0; r < size; ++r) {
    LATTICE_CHECK_MSG(send_counts[r] >= 0 && recv_counts[r] >= 0,
                      "AllToAllV: negative count for rank %d", r);
    sent += send_counts[r];
    received += recv_counts[r];
  }
  LATTICE_CHECK_MSG(sent == in.dim(0) && received == out.dim(0),
                    "AllToAllV: send counts sum to %lld rows (in has %lld), recv counts to "
                    "%lld (out has %lld)",
                    static_cast<long long>(sent), static_cast<long long>(in.dim(0)),
                    static_cast<long long>(received), static_cast<long long>(out.dim(0)));
}

void CheckPeer(int peer, int size, const char* op) {
  LATTICE_CHECK_MSG(peer >= 0 && peer < size, "%s: peer %d outside a group of %d", op, peer, size);
}

namespace {

template <typename T>
void ReduceTyped(ReduceOp op, T* acc, const T* x, int64_t n) {
  if (op == ReduceOp::kSum) {
    for (int64_t i = 0; i < n; ++i) acc[i] += x[i];
  } else {
    for (int64_t i = 0; i < n; ++i) acc[i] = std::max(acc[i], x[i]);
  }
}

}  // namespace

void ReduceInto(DType dtype, ReduceOp op, void* acc, const void* x, int64_t n) {
  switch (dtype) {
    case DType::kF32:
      ReduceTyped(op, static_cast<float*>(acc), static_cast<const float*>(x), n);
      return;
    case DType::kI32:
      ReduceTyped(op, static_cast<int32_t*>(acc), static_cast<const int32_t*>(x), n);
      return;
    default:
      LATTICE_CHECK_MSG(false, "ReduceInto: dtype %s is not reducible on the CPU",
                        std::string(DTypeName(dtype)).c_str());
  }
}

std::vector<size_t> ByteOffsets(std::span<const int64_t> counts, size_t row_bytes) {
  std::vector<size_t> offsets(counts.size() + 1, 0);
  for (size_t r = 0; r < counts.size(); ++r) {
    offsets[r + 1] = offsets[r] + static_cast<size_t>(counts[r]) * row_bytes;
  }
  return offsets;
}

void SelfMailbox::Push(const Tensor& tensor, int tag) {
  const char* data = static_cast<const char*>(tensor.raw_data());
  queues_[tag].emplace_back(data, data + tensor.nbytes());
}

void SelfMailbox::Pop(Tensor& tensor, int tag, const char* backend) {
  auto it = queues_.find(tag);
  LATTICE_CHECK_MSG(it != queues_.end() && !it->second.empty(),
                    "%s Recv from self, tag %d: no message was sent (it would wait forever)",
                    backend, tag);
  std::vector<char> message = std::move(it->second.front());
  it->second.pop_front();
  LATTICE_CHECK_MSG(message.size() == tensor.nbytes(),
                    "%s Recv from self, tag %d: message of %zu bytes into %s (%zu bytes)", backend,
                    tag, message.size(), tensor.DebugString().c_str(), tensor.nbytes());
  std::memcpy(tensor.raw_data(), message.data(), message.size());
}

}  // namespace lattice::comm_internal
