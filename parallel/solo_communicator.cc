// The communicator of a group of one: collectives are identities (copies where in and
// out differ), and messages to self go through a local FIFO per tag.
#include <cstring>

#include "parallel/comm_util.h"
#include "parallel/communicator.h"

namespace lattice {
namespace {

using namespace comm_internal;

void CopyBytes(const Tensor& in, Tensor& out) {
  if (in.nbytes() > 0 && in.raw_data() != out.raw_data()) {
    std::memmove(out.raw_data(), in.raw_data(), in.nbytes());
  }
}

class SoloCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string_view backend() const override { return "solo"; }

  void AllReduce(Tensor& tensor, ReduceOp) override {
    LATTICE_CHECK_MSG(tensor.defined(), "AllReduce: undefined tensor");
  }
  void AllGather(const Tensor& in, Tensor& out) override {
    CheckAllGather(in, out, 1);
    CheckSameDevice(in, out);
    CopyBytes(in, out);
  }
  void ReduceScatter(const Tensor& in, Tensor& out) override {
    CheckReduceScatter(in, out, 1);
    CheckSameDevice(in, out);
    CopyBytes(in, out);
  }
  void Broadcast(Tensor& tensor, int root) override {
    LATTICE_CHECK_MSG(tensor.defined(), "Broadcast: undefined tensor");
    CheckPeer(root, 1, "Broadcast root");
  }
  void Send(const Tensor& tensor, int dst, int tag) override {
    CheckPeer(dst, 1, "Send");
    CheckHost(tensor, "solo Send");
    mailbox_.Push(tensor, tag);
  }
  void Recv(Tensor& tensor, int src, int tag) override {
    CheckPeer(src, 1, "Recv");
    CheckHost(tensor, "solo Recv");
    mailbox_.Pop(tensor, tag, "solo");
  }
  void AllToAllV(const Tensor& in, std::span<const int64_t> send_counts, Tensor& out,
                 std::span<const int64_t> recv_counts) override {
    CheckAllToAllV(in, send_counts, out, recv_counts, 1);
    CheckSameDevice(in, out);
    CopyBytes(in, out);
  }
  void Barrier() override {}

 private:
  // Copies between host and device would need CUDA here; a solo group keeps its
  // tensors where they are.
  static void CheckSameDevice(const Tensor& in, const Tensor& out) {
    LATTICE_CHECK_MSG(in.device() == Device::kCpu && out.device() == Device::kCpu,
                      "the solo communicator copies host tensors only (use a size-1 NCCL "
                      "communicator for device tensors)");
  }

  SelfMailbox mailbox_;
};

}  // namespace

std::unique_ptr<Communicator> MakeSoloCommunicator() {
  return std::make_unique<SoloCommunicator>();
}

}  // namespace lattice
