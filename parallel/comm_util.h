// Internal helpers shared by the communicator backends: argument checks that abort
// with the operation's name (a shape mismatch between ranks is a programming error),
// elementwise reductions, and a mailbox for messages a rank sends to itself.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <span>
#include <vector>

#include "kernels/tensor.h"
#include "parallel/communicator.h"

namespace lattice::comm_internal {

// Bytes of one dim-0 row (the whole tensor for a 0-d tensor).
size_t RowBytes(const Tensor& t);

// The CPU backends' tensors: defined, on the host.
void CheckHost(const Tensor& t, const char* op);
// Reductions on the CPU backends: f32 or i32.
void CheckReducible(const Tensor& t, const char* op);
// out [size * in.dim(0), ...rest of in] with in's dtype.
void CheckAllGather(const Tensor& in, const Tensor& out, int size);
// in [size * out.dim(0), ...rest of out] with out's dtype.
void CheckReduceScatter(const Tensor& in, const Tensor& out, int size);
// Counts non-negative, one per rank, summing to the row counts of in and out.
void CheckAllToAllV(const Tensor& in, std::span<const int64_t> send_counts, const Tensor& out,
                    std::span<const int64_t> recv_counts, int size);
void CheckPeer(int peer, int size, const char* op);

// acc[i] = acc[i] op x[i] for n elements of `dtype` (f32 or i32).
void ReduceInto(DType dtype, ReduceOp op, void* acc, const void* x, int64_t n);

// Prefix sums of counts, scaled to bytes: offsets[r] = bytes before rank r's rows.
std::vector<size_t> ByteOffsets(std::span<const int64_t> counts, size_t row_bytes);

// FIFO per tag of messages a rank sent to itself (not thread-safe; one owner).
class SelfMailbox {
 public:
  void Push(const Tensor& tensor, int tag);
  // Pops the oldest message for `tag` into `tensor`; aborts when there is none (the
  // receive would wait forever) or when its byte size differs.
  void Pop(Tensor& tensor, int tag, const char* backend);

 private:
  std::map<int, std::deque<std::vector<char>>> queues_;
};

}  // namespace lattice::comm_internal
