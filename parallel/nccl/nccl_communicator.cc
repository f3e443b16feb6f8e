// NcclCommunicator: each Communicator method is one NCCL call (or one NCCL group) on
// the communicator's stream.
#include "parallel/nccl/nccl_communicator.h"

#include <cuda_runtime.h>

#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gloo/rendezvous/store.h"
#include "base/check.h"
#include "kernels/cuda/device.h"
#include "parallel/comm_util.h"

#define LATTICE_NCCL_CHECK(comm, expr)                                                     \
  do {                                                                                     \
    const ncclResult_t result_ = (expr);                                                   \
    LATTICE_CHECK_MSG(result_ == ncclSuccess, "NCCL %s (%s)", ncclGetErrorString(result_), \
                      (comm) != nullptr ? ncclGetLastError(comm) : "");                    \
  } while (0)

#define LATTICE_CUDA_CHECK_MSG(expr)                                                 \
  do {                                                                               \
    const cudaError_t error_ = (expr);                                               \
    LATTICE_CHECK_MSG(error_ == cudaSuccess, "CUDA %s", cudaGetErrorString(error_)); \
  } while (0)

namespace lattice {
namespace {

using namespace comm_internal;

ncclDataType_t NcclType(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return ncclFloat32;
    case DType::kBF16:
      return ncclBfloat16;
    case DType::kF16:
      return ncclFloat16;
    case DType::kI32:
      return ncclInt32;
  }
  LATTICE_CHECK_MSG(false, "no NCCL type for this dtype");
  return ncclFloat32;
}

void CheckDevice(const Tensor& t, const char* op) {
  LATTICE_CHECK_MSG(t.defined(), "%s: undefined tensor", op);
  LATTICE_CHECK_MSG(t.device() == Device::kCuda, "NCCL %s takes device tensors, got a host %s", op,
                    t.DebugString().c_str());
}

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(ncclComm_t comm, int rank, int size, cudaStream_t stream)
      : comm_(comm),
        rank_(rank),
        size_(size),
        stream_(stream),
        scratch_(cuda::EmptyDevice(DType::kF32, {1})) {}

  ncclComm_t comm() const { return comm_; }

  ~NcclCommunicator() override {
    cudaStreamSynchronize(stream_);
    ncclCommDestroy(comm_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string_view backend() const override { return "nccl"; }

  void AllReduce(Tensor& tensor, ReduceOp op) override {
    CheckDevice(tensor, "AllReduce");
    if (tensor.numel() == 0) return;
    LATTICE_NCCL_CHECK(
        comm_, ncclAllReduce(tensor.raw_data(), tensor.raw_data(), tensor.numel(),
                             NcclType(tensor.dtype()), op == ReduceOp::kSum ? ncclSum : ncclMax,
                             comm_, stream_));
  }

  void AllGather(const Tensor& in, Tensor& out) override {
    CheckDevice(in, "AllGather");
    CheckDevice(out, "AllGather");
    CheckAllGather(in, out, size_);
    if (in.nbytes() == 0) return;
    LATTICE_NCCL_CHECK(
        comm_, ncclAllGather(in.raw_data(), out.raw_data(), in.nbytes(), ncclInt8, comm_, stream_));
  }

  void ReduceScatter(const Tensor& in, Tensor& out) override {
    CheckDevice(in, "ReduceScatter");
    CheckDevice(out, "ReduceScatter");
    CheckReduceScatter(in, out, size_);
    if (out.numel() == 0) return;
    LATTICE_NCCL_CHECK(comm_, ncclReduceScatter(in.raw_data(), out.raw_data(), out.numel(),
                                                NcclType(out.dtype()), ncclSum, comm_, stream_));
  }

  void Broadcast(Tensor& tensor, int root) override {
    CheckDevice(tensor, "Broadcast");
    CheckPeer(root, size_, "Broadcast root");
    if (tensor.nbytes() == 0) return;
    LATTICE_NCCL_CHECK(comm_, ncclBroadcast(tensor.raw_data(), tensor.raw_data(), tensor.nbytes(),
                                            ncclInt8, root, comm_, stream_));
  }

  void Send(const Tensor& tensor, int dst, int /*tag*/) override {
    CheckDevice(tensor, "Send");
    CheckPeer(dst, size_, "Send");
    LATTICE_NCCL_CHECK(comm_,
                       ncclSend(tensor.raw_data(), tensor.nbytes(), ncclInt8, dst, comm_, stream_));
  }

  void Recv(Tensor& tensor, int src, int /*tag*/) override {
    CheckDevice(tensor, "Recv");
    CheckPeer(src, size_, "Recv");
    LATTICE_NCCL_CHECK(comm_,
                       ncclRecv(tensor.raw_data(), tensor.nbytes(), ncclInt8, src, comm_, stream_));
  }

  void SendRecv(const Tensor& send, int dst, Tensor& recv, int src, int /*tag*/) override {
    CheckDevice(send, "SendRecv");
    CheckDevice(recv, "SendRecv");
    CheckPeer(dst, size_, "SendRecv");
    CheckPeer(src, size_, "SendRecv");
    LATTICE_NCCL_CHECK(comm_, ncclGroupStart());
    LATTICE_NCCL_CHECK(comm_,
                       ncclSend(send.raw_data(), send.nbytes(), ncclInt8, dst, comm_, stream_));
    LATTICE_NCCL_CHECK(comm_,
                       ncclRecv(recv.raw_data(), recv.nbytes(), ncclInt8, src, comm_, stream_));
    LATTICE_NCCL_CHECK(comm_, ncclGroupEnd());
  }

  void AllToAllV(const Tensor& in, std::span<const int64_t> send_counts, Tensor& out,
                 std::span<const int64_t> recv_counts) override {
    CheckDevice(in, "AllToAllV");
    CheckDevice(out, "AllToAllV");
    CheckAllToAllV(in, send_counts, out, recv_counts, size_);
    const size_t row = RowBytes(in);
    const std::vector<size_t> send_offsets = ByteOffsets(send_counts, row);
    const std::vector<size_t> recv_offsets = ByteOffsets(recv_counts, row);
    const char* in_bytes = static_cast<const char*>(in.raw_data());
    char* out_bytes = static_cast<char*>(out.raw_data());
    LATTICE_NCCL_CHECK(comm_, ncclGroupStart());
    for (int r = 0; r < size_; ++r) {
      if (send_counts[r] > 0) {
        LATTICE_NCCL_CHECK(comm_, ncclSend(in_bytes + send_offsets[r], send_counts[r] * row,
                                           ncclInt8, r, comm_, stream_));
      }
      if (recv_counts[r] > 0) {
        LATTICE_NCCL_CHECK(comm_, ncclRecv(out_bytes + recv_offsets[r], recv_counts[r] * row,
                                           ncclInt8, r, comm_, stream_));
      }
    }
    LATTICE_NCCL_CHECK(comm_, ncclGroupEnd());
  }

  void Barrier() override {
    LATTICE_NCCL_CHECK(comm_, ncclAllReduce(scratch_.raw_data(), scratch_.raw_data(), 1,
                                            ncclFloat32, ncclSum, comm_, stream_));
    LATTICE_CUDA_CHECK_MSG(cudaStreamSynchronize(stream_));
  }

 private:
  ncclComm_t comm_;
  const int rank_;
  const int size_;
  const cudaStream_t stream_;
  Tensor scratch_;  // Barrier's one element
};

}  // namespace

std::unique_ptr<Communicator> MakeNcclCommunicator(const ncclUniqueId& id, int rank, int size,
                                                   cudaStream_t stream) {
  LATTICE_CHECK_MSG(size >= 1 && rank >= 0 && rank < size, "NCCL rank %d of %d", rank, size);
  ncclComm_t comm = nullptr;
  LATTICE_NCCL_CHECK(comm, ncclCommInitRank(&comm, size, id, rank));
  return std::make_unique<NcclCommunicator>(comm, rank, size, stream);
}

std::unique_ptr<Communicator> SplitNcclCommunicator(Communicator& parent, int color, int key,
                                                    cudaStream_t stream) {
  auto* nccl = dynamic_cast<NcclCommunicator*>(&parent);
  LATTICE_CHECK_MSG(nccl != nullptr, "SplitNcclCommunicator: the parent is a %s communicator, not NCCL",
                    std::string(parent.backend()).c_str());
  ncclComm_t comm = nullptr;
  LATTICE_NCCL_CHECK(nccl->comm(), ncclCommSplit(nccl->comm(), color >= 0 ? color : NCCL_SPLIT_NOCOLOR, key,
                                                 &comm, nullptr));
  if (color < 0) return nullptr;
  int rank = 0, size = 0;
  LATTICE_NCCL_CHECK(comm, ncclCommUserRank(comm, &rank));
  LATTICE_NCCL_CHECK(comm, ncclCommCount(comm, &size));
  return std::make_unique<NcclCommunicator>(comm, rank, size, stream);
}

absl::StatusOr<ncclUniqueId> ExchangeNcclUniqueId(gloo::rendezvous::Store& store,
                                                  const std::string& group_name, int rank,
                                                  std::chrono::milliseconds timeout) {
  const std::string key = group_name + "/nccl_id";
  ncclUniqueId id;
  try {
    if (rank == 0) {
      LATTICE_NCCL_CHECK(nullptr, ncclGetUniqueId(&id));
      const char* bytes = reinterpret_cast<const char*>(&id);
      store.set(key, std::vector<char>(bytes, bytes + sizeof(id)));
      return id;
    }
    store.wait({key}, timeout);
    const std::vector<char> bytes = store.get(key);
    if (bytes.size() != sizeof(id)) {
      return absl::DataLossError(absl::StrCat("store key '", key, "' holds ", bytes.size(),
                                              " bytes, not an NCCL unique id"));
    }
    std::memcpy(&id, bytes.data(), sizeof(id));
    return id;
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("NCCL group '", group_name, "' rank ", rank, ": ", e.what()));
  }
}

absl::StatusOr<std::unique_ptr<Communicator>> MakeNcclCommunicator(
    gloo::rendezvous::Store& store, const std::string& group_name, int rank, int size,
    cudaStream_t stream, std::chrono::milliseconds timeout) {
  if (size < 1 || rank < 0 || rank >= size) {
    return absl::InvalidArgumentError(
        absl::StrCat("NCCL group '", group_name, "': rank ", rank, " of ", size));
  }
  ncclUniqueId id;
  if (size == 1) {
    LATTICE_NCCL_CHECK(nullptr, ncclGetUniqueId(&id));
  } else {
    absl::StatusOr<ncclUniqueId> exchanged = ExchangeNcclUniqueId(store, group_name, rank, timeout);
    if (!exchanged.ok()) return exchanged.status();
    id = *exchanged;
  }
  return MakeNcclCommunicator(id, rank, size, stream);
}

absl::StatusOr<ProcessGroups> MakeNcclProcessGroups(const RankLayout& layout, int rank,
                                                    gloo::rendezvous::Store& store,
                                                    cudaStream_t stream,
                                                    std::chrono::milliseconds timeout) {
  return MakeProcessGroups(
      layout, rank, [&](const std::string& name, const std::vector<int>& ranks, int rank_in_group) {
        return MakeNcclCommunicator(store, name, rank_in_group, static_cast<int>(ranks.size()),
                                    stream, timeout);
      });
}

}  // namespace lattice
