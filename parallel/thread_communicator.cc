// The in-process backend: ranks are threads sharing one ThreadGroup.
//
// A collective is two rendezvous: at the first every rank publishes pointers to its
// tensors; between the two each rank reads everyone's inputs and computes its own
// result (reductions in rank order, so every rank gets bit-identical values); after
// the second, when nobody reads any more, in-place results are written. Send copies
// into a FIFO per (src, dst, tag) and returns; Recv waits for the oldest message.
// Every rendezvous also checks that all ranks called the same operation with
// matching sizes, so a mismatched call aborts instead of corrupting memory.
#include <cstring>
#include <deque>
#include <map>
#include <string>
#include <tuple>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "parallel/comm_util.h"
#include "parallel/communicator.h"

namespace lattice {
namespace {

using namespace comm_internal;

constexpr std::chrono::milliseconds kDefaultTimeout{300'000};

// What one rank brings to a collective.
struct Contribution {
  const char* op = nullptr;  // static string naming the collective
  int64_t bytes = 0;         // must agree across ranks (per-op meaning)
  int root = -1;             // Broadcast
  DType dtype = DType::kF32;
  const Tensor* in = nullptr;
  std::span<const int64_t> send_counts;
  std::span<const int64_t> recv_counts;
};

class ThreadGroup {
 public:
  ThreadGroup(int size, std::chrono::milliseconds timeout)
      : size_(size), timeout_(absl::FromChrono(timeout)), slots_(size) {}

  int size() const { return size_; }

  // Publishes `c` and waits for every rank; afterwards all slots are readable until
  // the matching Depart.
  void Arrive(int rank, const Contribution& c) {
    absl::MutexLock lock(&mu_);
    slots_[rank] = c;
    WaitForAll(rank, c.op);
    CheckMatching(rank);
  }
  // Waits until every rank finished reading the slots.
  void Depart(int rank, const char* op) {
    absl::MutexLock lock(&mu_);
    WaitForAll(rank, op);
  }
  const Contribution& slot(int rank) const { return slots_[rank]; }  // between Arrive/Depart

  void Send(int src, int dst, int tag, const Tensor& tensor) {
    const char* data = static_cast<const char*>(tensor.raw_data());
    std::vector<char> message(data, data + tensor.nbytes());
    absl::MutexLock lock(&mu_);
    mailboxes_[{src, dst, tag}].push_back(std::move(message));
  }
  void Recv(int src, int dst, int tag, Tensor& tensor) {
    std::vector<char> message;
    {
      absl::MutexLock lock(&mu_);
      auto& queue = mailboxes_[{src, dst, tag}];
      auto ready = [&queue]() { return !queue.empty(); };
      if (!mu_.AwaitWithTimeout(absl::Condition(&ready), timeout_)) {
        LATTICE_CHECK_MSG(false, "thread communicator: rank %d waited %s in Recv from %d, tag %d",
                          dst, absl::FormatDuration(timeout_).c_str(), src, tag);
      }
      message = std::move(queue.front());
      queue.pop_front();
    }
    LATTICE_CHECK_MSG(message.size() == tensor.nbytes(),
                      "thread communicator: rank %d Recv from %d, tag %d: message of %zu bytes "
                      "into %s (%zu bytes)",
                      dst, src, tag, message.size(), tensor.DebugString().c_str(), tensor.nbytes());
    if (!message.empty()) std::memcpy(tensor.raw_data(), message.data(), message.size());
  }

 private:
  // A generation barrier: the last to arrive advances the generation.
  void WaitForAll(int rank, const char* op) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const int64_t generation = generation_;
    if (++arrived_ == size_) {
      arrived_ = 0;
      ++generation_;
      return;
    }
    auto advanced = [this, generation]()
                        ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return generation_ != generation; };
    if (!mu_.AwaitWithTimeout(absl::Condition(&advanced), timeout_)) {
      LATTICE_CHECK_MSG(false,
                        "thread communicator: rank %d waited %s in %s for the other ranks "
                        "(%d of %d arrived)",
                        rank, absl::FormatDuration(timeout_).c_str(), op, arrived_, size_);
    }
  }

  void CheckMatching(int rank) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const Contribution& mine = slots_[rank];
    for (int r = 0; r < size_; ++r) {
      const Contribution& other = slots_[r];
      LATTICE_CHECK_MSG(std::strcmp(mine.op, other.op) == 0,
                        "thread communicator: rank %d called %s while rank %d called %s", rank,
                        mine.op, r, other.op);
      LATTICE_CHECK_MSG(
          mine.bytes == other.bytes && mine.root == other.root && mine.dtype == other.dtype,
          "thread communicator: %s mismatch: rank %d has %lld bytes, root %d, %s; "
          "rank %d has %lld bytes, root %d, %s",
          mine.op, rank, static_cast<long long>(mine.bytes), mine.root,
          std::string(DTypeName(mine.dtype)).c_str(), r, static_cast<long long>(other.bytes),
          other.root, std::string(DTypeName(other.dtype)).c_str());
    }
  }

  const int size_;
  const absl::Duration timeout_;
  absl::Mutex mu_;
  int arrived_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  // Written under mu_ before the first rendezvous; read without it between the two.
  std::vector<Contribution> slots_;
  std::map<std::tuple<int, int, int>, std::deque<std::vector<char>>> mailboxes_
      ABSL_GUARDED_BY(mu_);
};

class ThreadCommunicator final : public Communicator {
 public:
  ThreadCommunicator(std::shared_ptr<ThreadGroup> group, int rank)
      : group_(std::move(group)), rank_(rank) {}

  int rank() const override { return rank_; }
  int size() const override { return group_->size(); }
  std::string_view backend() const override { return "threads"; }

  void AllReduce(Tensor& tensor, ReduceOp op) override {
    CheckReducible(tensor, "AllReduce");
    const Contribution c =
        Of(op == ReduceOp::kSum ? "AllReduce(sum)" : "AllReduce(max)", tensor, tensor.nbytes());
    group_->Arrive(rank_, c);
    Tensor result = Tensor::Empty(tensor.dtype(), tensor.shape());
    std::memcpy(result.raw_data(), group_->slot(0).in->raw_data(), tensor.nbytes());
    for (int r = 1; r < size(); ++r) {
      ReduceInto(tensor.dtype(), op, result.raw_data(), group_->slot(r).in->raw_data(),
                 tensor.numel());
    }
    group_->Depart(rank_, c.op);
    std::memcpy(tensor.raw_data(), result.raw_data(), tensor.nbytes());
  }

  void AllGather(const Tensor& in, Tensor& out) override {
    CheckHost(in, "AllGather");
    CheckHost(out, "AllGather");
    CheckAllGather(in, out, size());
    const Contribution c = Of("AllGather", in, in.nbytes());
    group_->Arrive(rank_, c);
    char* dst = static_cast<char*>(out.raw_data());
    for (int r = 0; r < size(); ++r) {
      if (in.nbytes() > 0)
        std::memcpy(dst + r * in.nbytes(), group_->slot(r).in->raw_data(), in.nbytes());
    }
    group_->Depart(rank_, c.op);
  }

  void ReduceScatter(const Tensor& in, Tensor& out) override {
    CheckReducible(in, "ReduceScatter");
    CheckHost(out, "ReduceScatter");
    CheckReduceScatter(in, out, size());
    const Contribution c = Of("ReduceScatter", in, in.nbytes());
    group_->Arrive(rank_, c);
    const size_t offset = rank_ * out.nbytes();
    Tensor result = Tensor::Empty(out.dtype(), out.shape());
    auto rows_of = [&](int r) {
      return static_cast<const char*>(group_->slot(r).in->raw_data()) + offset;
    };
    if (out.nbytes() > 0) std::memcpy(result.raw_data(), rows_of(0), out.nbytes());
    for (int r = 1; r < size(); ++r) {
      ReduceInto(out.dtype(), ReduceOp::kSum, result.raw_data(), rows_of(r), out.numel());
    }
    group_->Depart(rank_, c.op);
    if (out.nbytes() > 0) std::memcpy(out.raw_data(), result.raw_data(), out.nbytes());
  }

  void Broadcast(Tensor& tensor, int root) override {
    CheckHost(tensor, "Broadcast");
    CheckPeer(root, size(), "Broadcast root");
    Contribution c = Of("Broadcast", tensor, tensor.nbytes());
    c.root = root;
    group_->Arrive(rank_, c);
    // Only non-roots write, and only to their own tensor, which nobody reads.
    if (rank_ != root && tensor.nbytes() > 0) {
      std::memcpy(tensor.raw_data(), group_->slot(root).in->raw_data(), tensor.nbytes());
    }
    group_->Depart(rank_, c.op);
  }

  void Send(const Tensor& tensor, int dst, int tag) override {
    CheckHost(tensor, "Send");
    CheckPeer(dst, size(), "Send");
    group_->Send(rank_, dst, tag, tensor);
  }

  void Recv(Tensor& tensor, int src, int tag) override {
    CheckHost(tensor, "Recv");
    CheckPeer(src, size(), "Recv");
    group_->Recv(src, rank_, tag, tensor);
  }

  void AllToAllV(const Tensor& in, std::span<const int64_t> send_counts, Tensor& out,
                 std::span<const int64_t> recv_counts) override {
    CheckHost(in, "AllToAllV");
    CheckHost(out, "AllToAllV");
    CheckAllToAllV(in, send_counts, out, recv_counts, size());
    const size_t row = RowBytes(in);
    Contribution c = Of("AllToAllV", in, row);
    c.send_counts = send_counts;
    c.recv_counts = recv_counts;
    group_->Arrive(rank_, c);
    const std::vector<size_t> out_offsets = ByteOffsets(recv_counts, row);
    for (int r = 0; r < size(); ++r) {
      const Contribution& peer = group_->slot(r);
      LATTICE_CHECK_MSG(peer.send_counts[rank_] == recv_counts[r],
                        "AllToAllV: rank %d sends %lld rows to rank %d, which expects %lld", r,
                        static_cast<long long>(peer.send_counts[rank_]), rank_,
                        static_cast<long long>(recv_counts[r]));
      const std::vector<size_t> peer_offsets = ByteOffsets(peer.send_counts, row);
      const size_t bytes = peer_offsets[rank_ + 1] - peer_offsets[rank_];
      if (bytes > 0) {
        std::memcpy(static_cast<char*>(out.raw_data()) + out_offsets[r],
                    static_cast<const char*>(peer.in->raw_data()) + peer_offsets[rank_], bytes);
      }
    }
    group_->Depart(rank_, c.op);
  }

  void Barrier() override {
    Contribution c;
    c.op = "Barrier";
    group_->Arrive(rank_, c);
    group_->Depart(rank_, "Barrier");
  }

 private:
  static Contribution Of(const char* op, const Tensor& in, size_t bytes) {
    Contribution c;
    c.op = op;
    c.bytes = static_cast<int64_t>(bytes);
    c.dtype = in.dtype();
    c.in = &in;
    return c;
  }

  std::shared_ptr<ThreadGroup> group_;
  const int rank_;
};

}  // namespace

std::vector<std::unique_ptr<Communicator>> MakeThreadCommunicators(
    int size, std::chrono::milliseconds timeout) {
  LATTICE_CHECK_MSG(size >= 1, "MakeThreadCommunicators: size %d", size);
  auto group = std::make_shared<ThreadGroup>(size, timeout);
  std::vector<std::unique_ptr<Communicator>> comms;
  for (int r = 0; r < size; ++r) comms.push_back(std::make_unique<ThreadCommunicator>(group, r));
  return comms;
}

std::vector<std::unique_ptr<Communicator>> MakeThreadCommunicators(int size) {
  return MakeThreadCommunicators(size, kDefaultTimeout);
}

}  // namespace lattice
