// Workspace (see workspace.h).
#include "kernels/cuda/workspace.h"

#include <cuda_runtime.h>

#include "kernels/cuda/check.h"
#include "kernels/cuda/device.h"

namespace lattice::cuda {
namespace {
constexpr size_t kAlignment = 256;
}  // namespace

Workspace::Workspace(size_t bytes)
    : buffer_(AllocateDevice(bytes)), counters_(AllocateDevice(kCounters * sizeof(int32_t))) {
  LATTICE_CUDA_CHECK(cudaMemset(counters_->data(), 0, kCounters * sizeof(int32_t)));
}

void* Workspace::Allocate(size_t bytes) {
  const size_t begin = (used_ + kAlignment - 1) / kAlignment * kAlignment;
  LATTICE_CHECK_MSG(begin + bytes <= buffer_->bytes(), "workspace exhausted: %zu + %zu bytes of %zu", begin, bytes,
                    buffer_->bytes());
  used_ = begin + bytes;
  high_water_ = std::max(high_water_, used_);
  return static_cast<char*>(buffer_->data()) + begin;
}

Tensor Workspace::Empty(DType dtype, Shape shape) {
  const size_t bytes = static_cast<size_t>(ShapeNumel(shape)) * DTypeSize(dtype);
  const size_t offset = static_cast<char*>(Allocate(bytes)) - static_cast<char*>(buffer_->data());
  return Tensor::FromBuffer(buffer_, offset, dtype, std::move(shape));
}

}  // namespace lattice::cuda
