// CUDA device memory for Tensor, host<->device copies and dtype conversion on the
// device. Compiled wherever nvcc exists; callable only where a GPU is present.
#pragma once

#include <memory>

#include "kernels/tensor.h"

namespace lattice::cuda {

// Number of visible CUDA devices (0 when there is no GPU or no driver).
int DeviceCount();

// Uninitialised device memory on the current device; aborts on CUDA errors.
std::shared_ptr<Buffer> AllocateDevice(size_t bytes);

Tensor EmptyDevice(DType dtype, Shape shape);
Tensor ToDevice(const Tensor& host);
Tensor ToHost(const Tensor& device);

// out = in converted to out's dtype, elementwise, on the device (float types).
void Convert(const Tensor& in, Tensor& out);

}  // namespace lattice::cuda
