// Pipeline parallelism's transfers between neighbouring stages on the GPU: a step's
// hidden and residual rows (one tensor) go from stage k to stage k + 1.
//
// Each link (stage k, stage k + 1) is a two-rank NCCL communicator split from the PP
// group, with its own stream: a stage receives on one link's stream and sends on the
// other's. NCCL's send waits until the peer posts the matching receive, so on the
// compute stream it would hold the stage until its successor is ready for the
// micro-batch; here the compute stream only copies the output into a send slot and goes
// on with the next micro-batch while the send waits. A middle stage's receive and send
// are on different communicators and streams, so neither waits behind the other.
#pragma once

#include <cuda_runtime.h>

#include <array>
#include <memory>

#include "kernels/tensor.h"
#include "parallel/communicator.h"

namespace lattice {

class StageLinks {
 public:
  // Collective over `pp` (an NCCL group of one pipeline's stages, rank = stage): every
  // stage constructs its links together. `max_bytes`: the largest tensor sent.
  StageLinks(Communicator& pp, cudaStream_t compute, size_t max_bytes);
  ~StageLinks();
  StageLinks(const StageLinks&) = delete;
  StageLinks& operator=(const StageLinks&) = delete;

  // Fills `input` from the previous stage: ordered after the compute stream's work so
  // far and before its work from here on (no host wait).
  void Receive(Tensor& input);
  // Sends `output` to the next stage: a copy into a send slot on the compute stream,
  // the send on the link's stream. Returns without waiting for the peer; a slot is
  // reused (the compute stream waiting on the device) only after its last send is done.
  void Send(const Tensor& output);

 private:
  static constexpr int kSlots = 2;  // sends in flight

  struct Link {
    std::unique_ptr<Communicator> comm;  // two ranks: the lower stage is rank 0
    cudaStream_t stream = nullptr;
  };
  Link prev_, next_;
  cudaStream_t compute_;
  cudaEvent_t input_free_ = nullptr, input_ready_ = nullptr;
  struct Slot {
    std::shared_ptr<Buffer> buffer;
    cudaEvent_t copied = nullptr, sent = nullptr;
  };
  std::array<Slot, kSlots> slots_;
  int64_t sends_ = 0;
  bool blocking_send_ = false;
};

}  // namespace lattice
