// Gemm::Linear (cuBLASLt, and the skinny kernel for decode-sized M) against the CPU
// Linear over odd sizes, every dtype, with and without bias, 16-bit inputs with f32
// output, and the shapes the skinny kernel must decline (K not a multiple of 8);
// Gemm::LinearSiluAndMul (fused in the skinny kernel, else SiluAndMul + Linear)
// against the CPU's SiluAndMul rounded to the dtype, then Linear.
#include "kernels/cuda/gemm.h"

#include <cmath>
#include <random>

#include <gtest/gtest.h>

#include "kernels/cpu/ops.h"
#include "kernels/cuda/device.h"

namespace lattice {
namespace {

Tensor Random(Shape shape, int seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  Tensor t = Tensor::Empty(DType::kF32, std::move(shape));
  for (float& v : t.span<float>()) v = dist(rng);
  return t;
}

TEST(CudaGemm, LinearMatchesTheCpuForEveryPathAndDtype) {
  ASSERT_GT(cuda::DeviceCount(), 0);
  for (bool skinny : {true, false}) {
    cuda::Gemm gemm;
    gemm.set_skinny(skinny ? cuda::Gemm::Skinny::kAlways : cuda::Gemm::Skinny::kNever);
    for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
      for (int64_t m : {1, 3, 8, 9, 33}) {
        for (int64_t k : {7, 64, 264, 4104}) {
          for (int64_t n : {1, 5, 129, 1031}) {
            for (bool with_bias : {false, true}) {
              for (DType out_dtype : {dtype, DType::kF32}) {
                if (with_bias && out_dtype != dtype) continue;
                const std::string what = std::string(skinny ? "skinny where it applies " : "cublaslt ") +
                                         std::string(DTypeName(dtype)) + "->" + std::string(DTypeName(out_dtype)) +
                                         " m=" + std::to_string(m) + " k=" + std::to_string(k) +
                                         " n=" + std::to_string(n) + (with_bias ? " bias" : "");
                const Tensor x = Random({m, k}, 1).To(dtype).To(DType::kF32);
                const Tensor w = Random({n, k}, 2).To(dtype).To(DType::kF32);
                const Tensor b = with_bias ? Random({n}, 3).To(dtype).To(DType::kF32) : Tensor();
                Tensor want = Tensor::Empty(DType::kF32, {m, n});
                cpu::Linear(x, w, b, want);
                Tensor nan = Tensor::Empty(DType::kF32, {m, n});
                for (float& v : nan.span<float>()) v = std::nanf("");
                Tensor out = cuda::ToDevice(nan.To(out_dtype));
                gemm.Linear(cuda::ToDevice(x.To(dtype)), cuda::ToDevice(w.To(dtype)),
                            with_bias ? cuda::ToDevice(b.To(dtype)) : Tensor(), out);
                const Tensor got = cuda::ToHost(out).To(DType::kF32);
                // f32 accumulation over k terms of magnitude <= 1, then rounding to the output.
                const double rounding = out_dtype == DType::kF32 ? 0 : out_dtype == DType::kF16 ? 1e-3 : 8e-3;
                for (int64_t i = 0; i < m * n; ++i) {
                  const float g = got.data<float>()[i], v = want.data<float>()[i];
                  ASSERT_FALSE(std::isnan(g)) << what << " element " << i << " not written";
                  ASSERT_LE(std::abs(g - v), 1e-4 * std::sqrt(static_cast<double>(k)) + rounding * (1 + std::abs(v)))
                      << what << " element " << i << " want " << v << " got " << g;
                }
              }
            }
          }
        }
      }
    }
  }
}

// The skinny kernel's persistent grid over many row tiles (uneven shares per block,
// partial last tiles) and its fused SiLU-and-mul input; M = 9 and f32 take the
// unfused path.
TEST(CudaGemm, LinearSiluAndMulMatchesTheCpu) {
  ASSERT_GT(cuda::DeviceCount(), 0);
  for (bool skinny : {true, false}) {
    cuda::Gemm gemm;
    gemm.set_skinny(skinny ? cuda::Gemm::Skinny::kAlways : cuda::Gemm::Skinny::kNever);
    for (DType dtype : {DType::kBF16, DType::kF16, DType::kF32}) {
      for (int64_t m : {1, 2, 5, 8, 9}) {
        for (int64_t k : {8, 264, 1032}) {
          for (int64_t n : {7, 1031, 5125}) {
            for (bool with_bias : {false, true}) {
              const std::string what = std::string(skinny ? "skinny where it applies " : "unfused ") +
                                       std::string(DTypeName(dtype)) + " m=" + std::to_string(m) +
                                       " k=" + std::to_string(k) + " n=" + std::to_string(n) +
                                       (with_bias ? " bias" : "");
              const Tensor gate_up = Random({m, 2 * k}, 5).To(dtype).To(DType::kF32);
              const Tensor w = Random({n, k}, 6).To(dtype).To(DType::kF32);
              const Tensor b = with_bias ? Random({n}, 7).To(dtype).To(DType::kF32) : Tensor();
              Tensor act = Tensor::Empty(DType::kF32, {m, k});
              cpu::SiluAndMul(gate_up, act);
              const Tensor act_rounded = act.To(dtype).To(DType::kF32);
              Tensor want = Tensor::Empty(DType::kF32, {m, n});
              cpu::Linear(act_rounded, w, b, want);
              Tensor nan = Tensor::Empty(DType::kF32, {m, n});
              for (float& v : nan.span<float>()) v = std::nanf("");
              Tensor out = cuda::ToDevice(nan.To(dtype));
              Tensor scratch = cuda::EmptyDevice(dtype, {m, k});
              gemm.LinearSiluAndMul(cuda::ToDevice(gate_up.To(dtype)), cuda::ToDevice(w.To(dtype)),
                                    with_bias ? cuda::ToDevice(b.To(dtype)) : Tensor(), scratch, out);
              const Tensor got = cuda::ToHost(out).To(DType::kF32);
              const double rounding = dtype == DType::kF32 ? 0 : dtype == DType::kF16 ? 1e-3 : 8e-3;
              for (int64_t i = 0; i < m * n; ++i) {
                const float g = got.data<float>()[i], v = want.data<float>()[i];
                ASSERT_FALSE(std::isnan(g)) << what << " element " << i << " not written";
                ASSERT_LE(std::abs(g - v), 1e-4 * std::sqrt(static_cast<double>(k)) + rounding * (1 + std::abs(v)))
                    << what << " element " << i << " want " << v << " got " << g;
              }
            }
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace lattice
