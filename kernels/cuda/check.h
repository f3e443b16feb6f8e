// Aborts with file:line on a failed CUDA runtime call: for calls whose failure is a broken
// invariant (a hot path, a device we already use), not bad input. Host code (.cc) and
// kernels' launch code (.cu) share it.
#pragma once

#include <cuda_runtime.h>

#include "base/check.h"

#define LATTICE_CUDA_CHECK(expr)                                                                 \
  do {                                                                                           \
    const cudaError_t err_ = (expr);                                                             \
    LATTICE_CHECK_MSG(err_ == cudaSuccess, "CUDA error %s: %s", #expr, cudaGetErrorString(err_)); \
  } while (0)

#define LATTICE_CUDA_LAUNCH_CHECK() LATTICE_CUDA_CHECK(cudaGetLastError())
