// The CPU data plane: a Communicator whose ranks are processes talking TCP through
// gloo (Debian's libgloo, the library PyTorch uses for the same job).
//
// Groups rendezvous through a gloo::rendezvous::Store (normally a TcpStoreClient) under
// the group's name, so one store serves every group (world, tp, pp, dp, ep): each rank
// creates only the groups it belongs to, and all ranks create them in the same order.
//
// Collectives are gloo's algorithms (ring all-reduce: every element is reduced on one
// rank and copied to the others, so all ranks get bit-identical results). Send copies
// the tensor and returns at once; gloo moves the bytes when the receiver posts the
// matching Recv (gloo's TCP transport is rendezvous-based: a send completes only once
// the peer has asked for it). Up to GlooOptions::max_pending_sends copies wait for
// their receivers; past that Send blocks until the oldest is received.
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
  // Sends not yet received that may be outstanding before Send blocks.
  int max_pending_sends = 64;
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
