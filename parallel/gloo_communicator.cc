// The gloo backend. Collectives call gloo's algorithms with a fresh tag each (all
// ranks make the same calls in the same order, so tags agree). Point to point sends a
// 16-byte header (magic, byte size) and then the data on two slots derived from the
// tag, so a receiver checks the size before any byte lands in its tensor.
#include "parallel/gloo_communicator.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "gloo/allgather.h"
#include "gloo/allreduce.h"
#include "gloo/alltoallv.h"
#include "gloo/barrier.h"
#include "gloo/broadcast.h"
#include "gloo/math.h"
#include "gloo/rendezvous/context.h"
#include "gloo/rendezvous/store.h"
#include "gloo/transport/tcp/device.h"
#include "gloo/transport/unbound_buffer.h"
#include "gloo/types.h"
#include "parallel/comm_util.h"
#include "parallel/gloo_send_queue.h"

namespace lattice {
namespace {

using namespace comm_internal;

// Slot prefixes for point to point, clear of gloo's own (0x01..0x08).
constexpr uint8_t kHeaderSlotPrefix = 0x40;
constexpr uint8_t kDataSlotPrefix = 0x41;
constexpr uint64_t kHeaderMagic = 0x4c41545449434531ull;  // "LATTICE1"

// Keys of one group under "<group>/", waiting with the group's timeout (gloo's own
// PrefixStore waits a fixed 30 s).
class GroupStore final : public gloo::rendezvous::Store {
 public:
  GroupStore(const std::string& group, gloo::rendezvous::Store& inner,
             std::chrono::milliseconds timeout)
      : prefix_(group + "/"), inner_(inner), timeout_(timeout) {}

  void set(const std::string& key, const std::vector<char>& data) override {
    inner_.set(prefix_ + key, data);
  }
  std::vector<char> get(const std::string& key) override { return inner_.get(prefix_ + key); }
  void wait(const std::vector<std::string>& keys) override { wait(keys, timeout_); }
  void wait(const std::vector<std::string>& keys,
            const std::chrono::milliseconds& timeout) override {
    std::vector<std::string> prefixed;
    for (const std::string& key : keys) prefixed.push_back(prefix_ + key);
    inner_.wait(prefixed, timeout);
  }

 private:
  const std::string prefix_;
  gloo::rendezvous::Store& inner_;
  const std::chrono::milliseconds timeout_;
};

class GlooCommunicator final : public Communicator {
 public:
  GlooCommunicator(std::shared_ptr<gloo::rendezvous::Context> context, std::string name,
                   const GlooOptions& options)
      : context_(std::move(context)),
        name_(std::move(name)),
        options_(options),
        send_queue_(name_, context_->rank, options.max_pending_send_bytes, options.timeout) {}

  int rank() const override { return context_->rank; }
  int size() const override { return context_->size; }
  std::string_view backend() const override { return "gloo"; }

  void AllReduce(Tensor& tensor, ReduceOp op) override {
    CheckReducible(tensor, "AllReduce");
    if (tensor.numel() == 0) return;
    Run("AllReduce", [&] {
      gloo::AllreduceOptions opts(context_);
      if (tensor.dtype() == DType::kF32) {
        opts.setOutput(tensor.data<float>(), tensor.numel());
        opts.setReduceFunction(op == ReduceOp::kSum ? ReduceFn(&gloo::sum<float>)
                                                    : ReduceFn(&gloo::max<float>));
      } else {
        opts.setOutput(tensor.data<int32_t>(), tensor.numel());
        opts.setReduceFunction(op == ReduceOp::kSum ? ReduceFn(&gloo::sum<int32_t>)
                                                    : ReduceFn(&gloo::max<int32_t>));
      }
      opts.setTag(NextTag());
      opts.setTimeout(options_.timeout);
      gloo::allreduce(opts);
    });
  }

  void AllGather(const Tensor& in, Tensor& out) override {
    CheckHost(in, "AllGather");
    CheckHost(out, "AllGather");
    CheckAllGather(in, out, size());
    if (in.nbytes() == 0) return;
    Run("AllGather", [&] {
      gloo::AllgatherOptions opts(context_);
      opts.setInput(static_cast<char*>(in.raw_data()), in.nbytes());
      opts.setOutput(static_cast<char*>(out.raw_data()), out.nbytes());
      opts.setTag(NextTag());
      opts.setTimeout(options_.timeout);
      gloo::allgather(opts);
    });
  }

  // gloo's reduce-scatter is an old-style algorithm with int counts; an all-reduce of
  // a copy and a slice of it costs twice the traffic and is exact the same way.
  void ReduceScatter(const Tensor& in, Tensor& out) override {
    CheckReducible(in, "ReduceScatter");
    CheckHost(out, "ReduceScatter");
    CheckReduceScatter(in, out, size());
    if (out.nbytes() == 0) return;
    Tensor all = in.Clone();
    AllReduce(all, ReduceOp::kSum);
    std::memcpy(out.raw_data(), static_cast<const char*>(all.raw_data()) + rank() * out.nbytes(),
                out.nbytes());
  }

  void Broadcast(Tensor& tensor, int root) override {
    CheckHost(tensor, "Broadcast");
    CheckPeer(root, size(), "Broadcast root");
    if (tensor.nbytes() == 0) return;
    Run("Broadcast", [&] {
      gloo::BroadcastOptions opts(context_);
      opts.setOutput(static_cast<char*>(tensor.raw_data()), tensor.nbytes());
      opts.setRoot(root);
      opts.setTag(NextTag());
      opts.setTimeout(options_.timeout);
      gloo::broadcast(opts);
    });
  }

  void Send(const Tensor& tensor, int dst, int tag) override {
    CheckHost(tensor, "Send");
    CheckPeer(dst, size(), "Send");
    LATTICE_CHECK_MSG(tag >= 0, "gloo Send: tag %d must be >= 0", tag);
    if (dst == rank()) {
      mailbox_.Push(tensor, tag);
      return;
    }
    auto send = std::make_unique<PendingSend>();
    send->header[0] = kHeaderMagic;
    send->header[1] = tensor.nbytes();
    const char* data = static_cast<const char*>(tensor.raw_data());
    send->data.assign(data, data + tensor.nbytes());
    Run("Send", [&] {
      send->header_buffer = context_->createUnboundBuffer(send->header, sizeof(send->header));
      send->header_buffer->send(dst, gloo::Slot::build(kHeaderSlotPrefix, tag));
      if (!send->data.empty()) {
        send->data_buffer = context_->createUnboundBuffer(send->data.data(), send->data.size());
        send->data_buffer->send(dst, gloo::Slot::build(kDataSlotPrefix, tag));
      }
    });
    send_queue_.Push(std::move(send));
  }

  void Recv(Tensor& tensor, int src, int tag) override {
    CheckHost(tensor, "Recv");
    CheckPeer(src, size(), "Recv");
    LATTICE_CHECK_MSG(tag >= 0, "gloo Recv: tag %d must be >= 0", tag);
    if (src == rank()) {
      mailbox_.Pop(tensor, tag, "gloo");
      return;
    }
    uint64_t header[2] = {0, 0};
    Run("Recv", [&] {
      auto buffer = context_->createUnboundBuffer(header, sizeof(header));
      buffer->recv(src, gloo::Slot::build(kHeaderSlotPrefix, tag));
      LATTICE_CHECK(buffer->waitRecv(options_.timeout));
    });
    LATTICE_CHECK_MSG(header[0] == kHeaderMagic && header[1] == tensor.nbytes(),
                      "gloo group '%s' rank %d Recv from %d, tag %d: message of %llu bytes into "
                      "%s (%zu bytes)",
                      name_.c_str(), rank(), src, tag, static_cast<unsigned long long>(header[1]),
                      tensor.DebugString().c_str(), tensor.nbytes());
    if (tensor.nbytes() == 0) return;
    Run("Recv", [&] {
      auto buffer = context_->createUnboundBuffer(tensor.raw_data(), tensor.nbytes());
      buffer->recv(src, gloo::Slot::build(kDataSlotPrefix, tag));
      LATTICE_CHECK(buffer->waitRecv(options_.timeout));
    });
  }

  void AllToAllV(const Tensor& in, std::span<const int64_t> send_counts, Tensor& out,
                 std::span<const int64_t> recv_counts) override {
    CheckHost(in, "AllToAllV");
    CheckHost(out, "AllToAllV");
    CheckAllToAllV(in, send_counts, out, recv_counts, size());
    const int64_t row = static_cast<int64_t>(RowBytes(in));
    std::vector<int64_t> send_bytes, recv_bytes;
    for (int r = 0; r < size(); ++r) {
      send_bytes.push_back(send_counts[r] * row);
      recv_bytes.push_back(recv_counts[r] * row);
    }
    Run("AllToAllV", [&] {
      gloo::AlltoallvOptions opts(context_);
      opts.setInput(static_cast<char*>(in.raw_data()), send_bytes);
      opts.setOutput(static_cast<char*>(out.raw_data()), recv_bytes);
      opts.setTag(NextTag());
      opts.setTimeout(options_.timeout);
      gloo::alltoallv(opts);
    });
  }

  void Barrier() override {
    Run("Barrier", [&] {
      gloo::BarrierOptions opts(context_);
      opts.setTag(NextTag());
      opts.setTimeout(options_.timeout);
      gloo::barrier(opts);
    });
  }

 private:
  using ReduceFn = void (*)(void*, const void*, const void*, size_t);

  uint32_t NextTag() { return next_tag_++; }

  // gloo reports failures (a peer gone, a timeout) by throwing; a failed peer is fatal.
  template <typename F>
  void Run(const char* op, F&& f) {
    try {
      f();
    } catch (const std::exception& e) {
      LATTICE_CHECK_MSG(false, "gloo %s failed in group '%s' (rank %d of %d): %s", op,
                        name_.c_str(), rank(), size(), e.what());
    }
  }

  std::shared_ptr<gloo::rendezvous::Context> context_;
  const std::string name_;
  const GlooOptions options_;
  uint32_t next_tag_ = 0;
  SelfMailbox mailbox_;
  GlooSendQueue send_queue_;  // declared last: drained before the context goes
};

}  // namespace

absl::StatusOr<std::shared_ptr<gloo::transport::Device>> MakeGlooDevice(
    const GlooOptions& options) {
  gloo::transport::tcp::attr attr;
  attr.hostname = options.hostname;
  try {
    return gloo::transport::tcp::CreateDevice(attr);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("gloo cannot listen on '", options.hostname, "': ", e.what()));
  }
}

absl::StatusOr<std::unique_ptr<Communicator>> MakeGlooCommunicator(gloo::rendezvous::Store& store,
                                                                   const std::string& group_name,
                                                                   int rank_in_group,
                                                                   int group_size,
                                                                   const GlooOptions& options) {
  if (group_size < 1 || rank_in_group < 0 || rank_in_group >= group_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("gloo group '", group_name, "': rank ", rank_in_group, " of ", group_size));
  }
  if (group_size == 1) return MakeSoloCommunicator();
  std::shared_ptr<gloo::transport::Device> device = options.device;
  if (device == nullptr) {
    absl::StatusOr<std::shared_ptr<gloo::transport::Device>> made = MakeGlooDevice(options);
    if (!made.ok()) return made.status();
    device = *std::move(made);
  }
  auto context = std::make_shared<gloo::rendezvous::Context>(rank_in_group, group_size);
  context->setTimeout(options.timeout);
  GroupStore group_store(group_name, store, options.timeout);
  try {
    context->connectFullMesh(group_store, device);
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("gloo group '", group_name, "' (rank ",
                                               rank_in_group, " of ", group_size,
                                               ") could not connect: ", e.what()));
  }
  return std::make_unique<GlooCommunicator>(std::move(context), group_name, options);
}

}  // namespace lattice
