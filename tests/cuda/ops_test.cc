// Each CUDA op against the CPU reference over odd sizes and every float dtype, with
// poisoned outputs (NaN) so an unwritten element fails. Runs on the GPU machine.
#include "kernels/cuda/ops.h"

#include <cmath>
#include <random>

#include <gtest/gtest.h>

#include "kernels/cpu/ops.h"
#include "kernels/cuda/device.h"
#include "tests/cuda/cuda_test_util.h"

namespace lattice {
namespace {

using testing::Back;
using testing::IdsOnDevice;
using testing::NanHost;
using testing::OnDevice;
using testing::Poisoned;
using testing::Random;
using testing::Rounded;

double Tolerance(DType dtype) { return dtype == DType::kF32 ? 2e-5 : dtype == DType::kF16 ? 2e-3 : 1.6e-2; }

void ExpectClose(const Tensor& want, const Tensor& got, DType dtype, const std::string& what) {
  ASSERT_EQ(want.numel(), got.numel()) << what;
  for (int64_t i = 0; i < want.numel(); ++i) {
    const float w = want.data<float>()[i], g = got.data<float>()[i];
    ASSERT_FALSE(std::isnan(g)) << what << " element " << i << " not written";
    ASSERT_LE(std::abs(w - g), Tolerance(dtype) * (1.0 + std::abs(w))) << what << " element " << i;
  }
}

const DType kDTypes[] = {DType::kF32, DType::kBF16, DType::kF16};

TEST(CudaOps, RmsNormAndFusedAddMatchTheCpu) {
  ASSERT_GT(cuda::DeviceCount(), 0);
  for (DType dtype : kDTypes) {
    for (int64_t rows : {1, 7, 33}) {
      // Odd sizes take the strided kernel; multiples of 8 the register-resident one with
      // 1, 2 and 4 vectors a thread (4096 is Llama's), 16392 bf16/f16 is past it.
      for (int64_t hidden : {1, 7, 33, 769, 5125, 8, 264, 4096, 8200, 16392}) {
        const std::string what = std::string(DTypeName(dtype)) + " " + std::to_string(rows) + "x" +
                                 std::to_string(hidden);
        const Tensor x = Rounded(Random({rows, hidden}, 1), dtype);
        const Tensor r = Rounded(Random({rows, hidden}, 2), dtype);
        const Tensor w = Rounded(Random({hidden}, 3, 0.5f), dtype);
        Tensor want = Tensor::Empty(DType::kF32, {rows, hidden});
        cpu::RmsNorm(x, w, 1e-5f, want);
        Tensor out = Poisoned(dtype, {rows, hidden});
        cuda::RmsNorm(OnDevice(x, dtype), OnDevice(w, dtype), 1e-5f, out);
        ExpectClose(want, Back(out), dtype, "RmsNorm " + what);

        // residual += x, rounded to the dtype as the GPU stores it; x = norm(residual).
        Tensor sum = x.Clone();
        cpu::Add(r, sum);
        const Tensor stored = Rounded(sum, dtype);
        Tensor want_x = Tensor::Empty(DType::kF32, {rows, hidden});
        cpu::RmsNorm(stored, w, 1e-5f, want_x);
        Tensor dx = OnDevice(x, dtype), dr = OnDevice(r, dtype);
        cuda::FusedAddRmsNorm(dx, dr, OnDevice(w, dtype), 1e-5f);
        ExpectClose(stored, Back(dr), DType::kF32, "FusedAddRmsNorm residual " + what);
        ExpectClose(want_x, Back(dx), dtype, "FusedAddRmsNorm " + what);
      }
    }
  }
}

TEST(CudaOps, SiluAndMulAndEmbeddingMatchTheCpu) {
  ASSERT_GT(cuda::DeviceCount(), 0);
  for (DType dtype : kDTypes) {
    for (int64_t rows : {1, 7, 33}) {
      for (int64_t width : {1, 7, 769}) {
        const std::string what = std::string(DTypeName(dtype)) + " " + std::to_string(rows) + "x" +
                                 std::to_string(width);
        const Tensor x = Rounded(Random({rows, 2 * width}, 4, 3.0f), dtype);
        Tensor want = Tensor::Empty(DType::kF32, {rows, width});
        cpu::SiluAndMul(x, want);
        Tensor out = Poisoned(dtype, {rows, width});
        cuda::SiluAndMul(OnDevice(x, dtype), out);
        ExpectClose(want, Back(out), dtype, "SiluAndMul " + what);

        const int64_t vocab = 97;
        const Tensor table = Rounded(Random({vocab, width}, 5), dtype);
        std::vector<int32_t> ids(rows);
        for (int64_t t = 0; t < rows; ++t) ids[t] = static_cast<int32_t>((t * 31 + 5) % vocab);
        Tensor host_ids = Tensor::Empty(DType::kI32, {rows});
        std::copy(ids.begin(), ids.end(), host_ids.data<int32_t>());
        Tensor want_rows = Tensor::Empty(DType::kF32, {rows, width});
        cpu::Embedding(ids, table, want_rows);
        Tensor rows_out = Poisoned(dtype, {rows, width});
        cuda::Embedding(cuda::ToDevice(host_ids), OnDevice(table, dtype), rows_out);
        ExpectClose(want_rows, Back(rows_out), DType::kF32, "Embedding " + what);
      }
    }
  }
}

}  // namespace
}  // namespace lattice
