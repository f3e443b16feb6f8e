// The GPU data plane: a Communicator over NCCL. Tensors live on the device of the
// calling thread (cudaSetDevice first); every operation is enqueued on the stream given
// at creation and the call returns without waiting, except Barrier, which waits for
// the stream. Keep tensors alive until the stream has run past the operation.
//
// Point to point differs from the CPU backends in two ways:
//   - NCCL Send is not buffered: the send kernel waits on the stream until the peer
//     posts its Recv. A chain (stage k sends, stage k+1 receives) is fine; a ring of
//     Send-then-Recv deadlocks: use SendRecv, which groups the two.
//   - Tags are ignored: messages between a pair must be received in the order sent.
// Reductions take f32, bf16, f16 and i32; the other operations move bytes of any dtype.
// Every NCCL and CUDA error aborts with file:line and NCCL's message.
#pragma once

#include <nccl.h>

#include <chrono>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "parallel/communicator.h"
#include "parallel/process_groups.h"
#include "parallel/rank_layout.h"

namespace gloo::rendezvous {
class Store;
}  // namespace gloo::rendezvous

namespace lattice {

// Joins the group identified by `id` as `rank` of `size` (ncclCommInitRank: blocks
// until all ranks joined, so call it from every rank concurrently).
std::unique_ptr<Communicator> MakeNcclCommunicator(const ncclUniqueId& id, int rank, int size,
                                                   cudaStream_t stream);

// A communicator of the ranks of `parent` (an NCCL communicator) that pass the same
// `color` (>= 0), ranked by `key`, enqueuing on `stream`; null for color < 0 (this rank
// joins none). Collective: every rank of `parent` calls it (ncclCommSplit).
std::unique_ptr<Communicator> SplitNcclCommunicator(Communicator& parent, int color, int key,
                                                    cudaStream_t stream);

// Rank 0 of the group creates the unique id and sets it under "<group_name>/nccl_id";
// the others wait for it (until `timeout`: DEADLINE_EXCEEDED naming the key).
absl::StatusOr<ncclUniqueId> ExchangeNcclUniqueId(gloo::rendezvous::Store& store,
                                                  const std::string& group_name, int rank,
                                                  std::chrono::milliseconds timeout);

// ExchangeNcclUniqueId then MakeNcclCommunicator. A group of one needs no store.
absl::StatusOr<std::unique_ptr<Communicator>> MakeNcclCommunicator(
    gloo::rendezvous::Store& store, const std::string& group_name, int rank, int size,
    cudaStream_t stream, std::chrono::milliseconds timeout = std::chrono::minutes(5));

// world, tp, pp, dp, ep as NCCL communicators on `stream` (groups of one included, so
// that every group takes device tensors).
absl::StatusOr<ProcessGroups> MakeNcclProcessGroups(
    const RankLayout& layout, int rank, gloo::rendezvous::Store& store, cudaStream_t stream,
    std::chrono::milliseconds timeout = std::chrono::minutes(5));

}  // namespace lattice
