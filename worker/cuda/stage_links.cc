// Transfers between pipeline stages (see stage_links.h).
#include "worker/cuda/stage_links.h"

#include <cstdlib>
#include <cstring>

#include "base/check.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/device.h"
#include "parallel/nccl/nccl_communicator.h"

namespace lattice {

StageLinks::StageLinks(Communicator& pp, cudaStream_t compute, size_t max_bytes) : compute_(compute) {
  // LATTICE_PP_BLOCKING_SEND=1: each send returns only once the next stage has the rows,
  // as a send on the compute stream would (the A/B baseline of bench/results).
  const char* blocking = std::getenv("LATTICE_PP_BLOCKING_SEND");
  blocking_send_ = blocking != nullptr && std::strcmp(blocking, "1") == 0;
  const int stage = pp.rank(), stages = pp.size();
  // Two splits cover every link: pairs (0, 1), (2, 3), ... then (1, 2), (3, 4), ...
  // A stage outside any pair of a split (the first or last) joins none.
  auto split = [&](int first_of_pair) {
    const bool paired = stage >= first_of_pair && (stage - first_of_pair) / 2 * 2 + first_of_pair + 1 < stages;
    const int color = paired ? (stage - first_of_pair) / 2 : -1;
    cudaStream_t stream = nullptr;
    if (paired) LATTICE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    Link link{SplitNcclCommunicator(pp, color, stage, stream), stream};
    LATTICE_CHECK(!paired || link.comm->size() == 2);
    return link;
  };
  Link even = split(0), odd = split(1);
  // In the split starting at stage s % 2, stage s is the lower end (its link forward).
  Link& forward = stage % 2 == 0 ? even : odd;
  Link& backward = stage % 2 == 0 ? odd : even;
  next_ = std::move(forward);
  prev_ = std::move(backward);
  LATTICE_CHECK(next_.comm == nullptr || next_.comm->rank() == 0);
  LATTICE_CHECK(prev_.comm == nullptr || prev_.comm->rank() == 1);
  LATTICE_CHECK((prev_.comm != nullptr) == (stage > 0) && (next_.comm != nullptr) == (stage + 1 < stages));
  if (prev_.comm != nullptr) {
    LATTICE_CUDA_CHECK(cudaEventCreateWithFlags(&input_free_, cudaEventDisableTiming));
    LATTICE_CUDA_CHECK(cudaEventCreateWithFlags(&input_ready_, cudaEventDisableTiming));
  }
  if (next_.comm != nullptr) {
    for (Slot& slot : slots_) {
      slot.buffer = cuda::AllocateDevice(max_bytes);
      LATTICE_CUDA_CHECK(cudaEventCreateWithFlags(&slot.copied, cudaEventDisableTiming));
      LATTICE_CUDA_CHECK(cudaEventCreateWithFlags(&slot.sent, cudaEventDisableTiming));
    }
  }
}

StageLinks::~StageLinks() {
  for (Link* link : {&prev_, &next_}) {
    if (link->stream != nullptr) cudaStreamSynchronize(link->stream);
    link->comm.reset();
    if (link->stream != nullptr) cudaStreamDestroy(link->stream);
  }
  for (cudaEvent_t event : {input_free_, input_ready_}) {
    if (event != nullptr) cudaEventDestroy(event);
  }
  for (Slot& slot : slots_) {
    if (slot.copied != nullptr) cudaEventDestroy(slot.copied);
    if (slot.sent != nullptr) cudaEventDestroy(slot.sent);
  }
}

void StageLinks::Receive(Tensor& input) {
  LATTICE_CHECK_MSG(prev_.comm != nullptr, "the first stage receives nothing");
  LATTICE_CUDA_CHECK(cudaEventRecord(input_free_, compute_));
  LATTICE_CUDA_CHECK(cudaStreamWaitEvent(prev_.stream, input_free_));
  prev_.comm->Recv(input, 0);
  LATTICE_CUDA_CHECK(cudaEventRecord(input_ready_, prev_.stream));
  LATTICE_CUDA_CHECK(cudaStreamWaitEvent(compute_, input_ready_));
}

void StageLinks::Send(const Tensor& output) {
  LATTICE_CHECK_MSG(next_.comm != nullptr, "the last stage sends nothing");
  Slot& slot = slots_[sends_++ % kSlots];
  LATTICE_CHECK_MSG(output.nbytes() <= slot.buffer->bytes(), "a stage output of %zu bytes exceeds the %zu-byte slot",
                    output.nbytes(), slot.buffer->bytes());
  // Before the first send of a slot, waiting on `sent` (never recorded) is a no-op.
  LATTICE_CUDA_CHECK(cudaStreamWaitEvent(compute_, slot.sent));
  Tensor copy = Tensor::FromBuffer(slot.buffer, 0, output.dtype(), output.shape());
  LATTICE_CUDA_CHECK(
      cudaMemcpyAsync(copy.raw_data(), output.raw_data(), output.nbytes(), cudaMemcpyDeviceToDevice, compute_));
  LATTICE_CUDA_CHECK(cudaEventRecord(slot.copied, compute_));
  LATTICE_CUDA_CHECK(cudaStreamWaitEvent(next_.stream, slot.copied));
  next_.comm->Send(copy, 1);
  LATTICE_CUDA_CHECK(cudaEventRecord(slot.sent, next_.stream));
  if (blocking_send_) LATTICE_CUDA_CHECK(cudaStreamSynchronize(next_.stream));
}

}  // namespace lattice
