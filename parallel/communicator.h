// Communicator: the collectives and point-to-point operations one process group
// needs, behind one interface with three backends:
//   - threads: ranks are threads of one process (fast layer tests),
//   - gloo: ranks are processes talking TCP through Debian's libgloo (the CPU data plane),
//   - nccl: ranks are GPUs (compiled wherever nvcc exists).
// Every rank of the group must make the same collective calls in the same order.
// A communicator is used by one thread at a time. Tensors are contiguous; the CPU
// backends take host f32 or i32 tensors, NCCL takes device tensors. A failed peer
// is fatal (abort with the backend's message): the failure domain is the instance.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "kernels/tensor.h"

namespace lattice {

enum class ReduceOp { kSum, kMax };

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;  // rank within this group
  virtual int size() const = 0;
  virtual std::string_view backend() const = 0;

  // In place: `tensor` becomes the elementwise reduction of every rank's `tensor`.
  virtual void AllReduce(Tensor& tensor, ReduceOp op = ReduceOp::kSum) = 0;
  // out [size * in.dim(0), ...] = every rank's `in` concatenated along dim 0, in rank order.
  virtual void AllGather(const Tensor& in, Tensor& out) = 0;
  // in [size * n, ...]: this rank's out [n, ...] = the sum over ranks of rows [rank*n, (rank+1)*n).
  virtual void ReduceScatter(const Tensor& in, Tensor& out) = 0;
  // In place: every rank's `tensor` becomes root's.
  virtual void Broadcast(Tensor& tensor, int root) = 0;
  // Point to point; messages between one pair with one tag arrive in the order sent.
  // Send may return before the peer receives (buffered) but never reorders.
  virtual void Send(const Tensor& tensor, int dst, int tag = 0) = 0;
  virtual void Recv(Tensor& tensor, int src, int tag = 0) = 0;
  // Send to `dst` and receive from `src` as one step, so that a ring (every rank sends to
  // rank+1 and receives from rank-1) cannot deadlock on a backend whose Send waits for
  // the receiver (NCCL). The buffered backends simply Send, then Recv.
  virtual void SendRecv(const Tensor& send, int dst, Tensor& recv, int src, int tag = 0) {
    Send(send, dst, tag);
    Recv(recv, src, tag);
  }
  // Rows along dim 0: rows [sum(send_counts[:r]), +send_counts[r]) of `in` go to rank r;
  // `out` receives recv_counts[r] rows from rank r, in rank order. Row widths equal.
  virtual void AllToAllV(const Tensor& in, std::span<const int64_t> send_counts, Tensor& out,
                         std::span<const int64_t> recv_counts) = 0;
  virtual void Barrier() = 0;
};

// A communicator of one rank: every collective is the identity (copy where in != out).
std::unique_ptr<Communicator> MakeSoloCommunicator();

// `size` communicators whose ranks are threads of this process: call each rank's
// methods from its own thread. The returned objects share state and must outlive
// the threads that use them.
std::vector<std::unique_ptr<Communicator>> MakeThreadCommunicators(int size);
// The same, aborting with the rank and the operation when any wait (for the other ranks
// of a collective, or for a message) lasts longer than `timeout` (default 300 s).
std::vector<std::unique_ptr<Communicator>> MakeThreadCommunicators(
    int size, std::chrono::milliseconds timeout);

}  // namespace lattice
