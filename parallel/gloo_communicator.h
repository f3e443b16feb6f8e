// The CPU data plane: a Communicator whose ranks are processes talking TCP through
// gloo (Debian's libgloo, the library PyTorch uses for the same job).
//
// Groups rendezvous through a gloo::rendezvous::Store (normally a TcpStoreClient) under
// the group's name, so one store serves every group (world, tp, pp, dp, ep): each rank
// creates only the groups it belongs to, and all ranks create them in the same order.
//
// Collectives are gloo's algorithms (ring all-reduce: every element is reduced on one
// rank and copied to the others, so all ranks get bit-identical results, though not
// the same bits as the thread backend's rank-order sum).
//
// Send copies the tensor and returns at once: gloo's TCP transport moves a message only
// after the receiver posts the matching Recv, so the copy waits in a queue whose thread
// frees it once received (gloo_send_queue.h). Sends block only while more than
// GlooOptions::max_pending_send_bytes of copies are unreceived. Recv blocks until the
// message arrives (or the timeout: fatal) and aborts when its byte size differs.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "parallel/communicator.h"

namespace gloo::rendezvous {
class Store;
}  // namespace gloo::rendezvous
namespace gloo::transport {
class Device;
}  // namespace gloo::transport

namespace lattice {

struct GlooOptions {
  // The address this rank listens on for its peers (must be reachable by them).
  std::string hostname = "127.0.0.1";
  // Bounds connecting and every operation; a peer silent for this long is fatal.
  std::chrono::milliseconds timeout{300'000};
  // Bytes of sent-but-unreceived copies held before Send blocks (one larger message
  // always passes).
  size_t max_pending_send_bytes = size_t{1} << 30;
  // A transport device (one epoll thread) shared by several groups; made when null.
  std::shared_ptr<gloo::transport::Device> device;
};

// A TCP device listening on options.hostname; share it among a process's groups.
absl::StatusOr<std::shared_ptr<gloo::transport::Device>> MakeGlooDevice(const GlooOptions& options);

// Connects this rank's member of group `group_name` (every member passes the same
// name and size, and its own rank). Blocks until every member has connected or the
// timeout passes (UNAVAILABLE / DEADLINE_EXCEEDED naming the group). A group of one
// is a solo communicator.
absl::StatusOr<std::unique_ptr<Communicator>> MakeGlooCommunicator(
    gloo::rendezvous::Store& store, const std::string& group_name, int rank_in_group,
    int group_size, const GlooOptions& options = {});

}  // namespace lattice
