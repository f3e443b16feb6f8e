// Closed-form checks of every Communicator operation, shared by the thread, gloo
// (child processes), MPI and NCCL tests. Each rank runs the same sequence on its own
// communicator; each rank's contribution is derived from its rank, so the expected
// result is known everywhere without communication. Checks return failure messages
// instead of asserting so that child processes, which have no GoogleTest, can use them.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "kernels/tensor.h"
#include "parallel/communicator.h"

namespace lattice::testing {

struct CommCheckEnv {
  // Host tensor -> a tensor the communicator takes (a copy); and back to the host.
  std::function<Tensor(const Tensor&)> upload = [](const Tensor& t) { return t.Clone(); };
  std::function<Tensor(const Tensor&)> download = [](const Tensor& t) { return t; };
  // Send returns before the receiver posts Recv (threads, gloo) and tags are
  // independent queues. False for NCCL: rings use SendRecv and messages are received
  // in the order sent.
  bool buffered_send = true;
  // AllReduce and ReduceScatter in bf16 and f16 too (NCCL).
  bool half_reductions = false;
};

// Runs every check in a fixed order (every rank must call it). Empty: all passed.
std::vector<std::string> RunCollectiveChecks(Communicator& comm, const CommCheckEnv& env = {});

// AllReduce of random f32 values; every rank's result must be bit-identical to every
// other rank's (checked by gathering the results).
std::vector<std::string> CheckBitIdenticalAllReduce(Communicator& comm,
                                                    const CommCheckEnv& env = {});

// Sum over the group of `value` (an i32 all-reduce), e.g. to check group membership.
int64_t SumOverGroup(Communicator& comm, int32_t value, const CommCheckEnv& env = {});

}  // namespace lattice::testing
