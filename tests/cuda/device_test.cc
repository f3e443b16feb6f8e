// Device memory round trips and on-device conversion against the CPU conversions.
// Built wherever nvcc exists, run on the GPU machine (not part of ctest).
#include "kernels/cuda/device.h"

#include <random>

#include <gtest/gtest.h>

namespace lattice {
namespace {

TEST(CudaDevice, ConvertMatchesCpuForEveryDType) {
  ASSERT_GT(cuda::DeviceCount(), 0) << "no GPU";
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0.0f, 3.0f);
  for (int64_t n : {1, 7, 33, 769, 5125}) {
    std::vector<float> values(n);
    for (float& v : values) v = dist(rng);
    const Tensor host = Tensor::FromVector(values, {n});
    for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
      Tensor device_out = cuda::EmptyDevice(dtype, {n});
      cuda::Convert(cuda::ToDevice(host), device_out);
      const Tensor got = cuda::ToHost(device_out);
      const Tensor want = host.To(dtype);
      ASSERT_EQ(std::memcmp(got.raw_data(), want.raw_data(), want.nbytes()), 0)
          << "n=" << n << " dtype=" << DTypeName(dtype);
    }
  }
}

}  // namespace
}  // namespace lattice
