// Workspace: a bump allocator over one device allocation for a step's activations
// and kernel scratch. Reset() at the start of every step; the same sequence of
// requests then yields the same addresses, which is what lets a captured CUDA graph
// replay over them. Nothing on the step path calls cudaMalloc. One owner thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "kernels/tensor.h"

namespace lattice::cuda {

class Workspace {
 public:
  // `bytes` of device memory on the current device.
  explicit Workspace(size_t bytes);

  // Uninitialised device tensor carved from the workspace (256-byte aligned). Aborts
  // when the workspace is exhausted: its size comes from a profiling step at startup.
  Tensor Empty(DType dtype, Shape shape);
  // Raw scratch bytes (256-byte aligned).
  void* Allocate(size_t bytes);
  // Everything allocated so far is free again (its tensors must no longer be used).
  void Reset() { used_ = 0; }
  // Scoped reuse inside a step: what was allocated after Mark() is free again after
  // Rewind(mark) (a layer's temporaries, between layers).
  size_t Mark() const { return used_; }
  void Rewind(size_t mark) { used_ = mark; }

  size_t capacity() const { return buffer_->bytes(); }
  size_t used() const { return used_; }
  // The most bytes in use at once since construction (for sizing).
  size_t high_water() const { return high_water_; }

  // kCounters int32 counters that outlive Reset(), zero at construction: for kernels
  // that hand out work from an atomic counter. Such a kernel leaves them zero again when
  // it completes (its last CTA resets them), so the next one on the stream needs no
  // memset node. Kernels use them in stream order, one at a time.
  static constexpr int kCounters = 2;
  int32_t* counters() const { return static_cast<int32_t*>(counters_->data()); }

 private:
  std::shared_ptr<Buffer> buffer_;
  std::shared_ptr<Buffer> counters_;
  size_t used_ = 0;
  size_t high_water_ = 0;
};

}  // namespace lattice::cuda
