// cuBLASLt GEMMs (see gemm.h). cuBLASLt is column-major: the row-major product
// out[M, N] = x[M, K] w[N, K]^T is, read column-major, out^T[N, M] = w x^T, i.e.
// A = w (transposed, lda K), B = x (not transposed, ldb K), C = out^T (ldc N), and a
// bias of length N is cuBLASLt's per-row bias epilogue.
#include "kernels/cuda/gemm.h"

#include "base/check.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/gemv.h"
#include "kernels/cuda/ops.h"

#define LATTICE_CUBLAS_CHECK(expr)                                                               \
  do {                                                                                           \
    const cublasStatus_t status_ = (expr);                                                       \
    LATTICE_CHECK_MSG(status_ == CUBLAS_STATUS_SUCCESS, "cuBLASLt error %d: %s", static_cast<int>(status_), \
                      #expr);                                                                    \
  } while (0)

namespace lattice::cuda {
namespace {

// Hopper's cuBLASLt kernels want up to 32 MiB for split-K and stream-K variants.
constexpr size_t kWorkspaceBytes = 32u << 20;
// The skinny kernel wins unless cuBLASLt is faster alone by more than this: in a step
// it also overlaps its predecessor's tail (programmatic launch: its first weight loads
// and its launch latency, ~1.5 us a launch on an H200), which timing it alone cannot
// show. Without the allowance a 1% timing difference on gate_up at M = 1 picked
// cuBLASLt, which the step then paid for.
constexpr float kSkinnyMargin = 1.03f;
constexpr float kSkinnyOverlapMs = 1.5e-3f;

cudaDataType_t CudaType(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return CUDA_R_32F;
    case DType::kBF16:
      return CUDA_R_16BF;
    case DType::kF16:
      return CUDA_R_16F;
    case DType::kI32:
      break;
  }
  LATTICE_CHECK_MSG(false, "Gemm: not a float dtype");
  return CUDA_R_32F;
}

}  // namespace

struct Gemm::Plan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  ~Plan() {
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (op) cublasLtMatmulDescDestroy(op);
  }
};

Gemm::Gemm() : workspace_(AllocateDevice(kWorkspaceBytes)) { LATTICE_CUBLAS_CHECK(cublasLtCreate(&handle_)); }

Gemm::~Gemm() {
  plans_.clear();
  if (handle_) cublasLtDestroy(handle_);
}

const Gemm::Plan& Gemm::PlanFor(const Key& key) {
  auto it = plans_.find(key);
  if (it != plans_.end()) return *it->second;
  const auto [m, n, k, dtype_int, out_dtype_int, has_bias] = key;
  const cudaDataType_t type = CudaType(static_cast<DType>(dtype_int));
  const cudaDataType_t out_type = CudaType(static_cast<DType>(out_dtype_int));
  auto plan = std::make_unique<Plan>();
  LATTICE_CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t transa = CUBLAS_OP_T, transb = CUBLAS_OP_N;
  LATTICE_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_TRANSA, &transa, sizeof(transa)));
  LATTICE_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_TRANSB, &transb, sizeof(transb)));
  if (has_bias) {
    const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    LATTICE_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)));
  }
  // Column-major views: A = w as [K, N] (op T -> [N, K]), B = x as [K, M], C = out as [N, M].
  LATTICE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->a, type, k, n, k));
  LATTICE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->b, type, k, m, k));
  LATTICE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->c, out_type, n, m, n));

  cublasLtMatmulPreference_t preference = nullptr;
  LATTICE_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&preference));
  const size_t workspace_bytes = kWorkspaceBytes;
  LATTICE_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                            &workspace_bytes, sizeof(workspace_bytes)));
  // Split-K partial sums reduced in f32, never in a 16-bit output buffer (which loses
  // ~1e-2 at K = 4096 in f16; found by tests/cuda/gemm_test.cc).
  const uint32_t reductions = CUBLASLT_REDUCTION_SCHEME_NONE | CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
  LATTICE_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK,
                                                            &reductions, sizeof(reductions)));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  LATTICE_CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(handle_, plan->op, plan->a, plan->b, plan->c, plan->c,
                                                      preference, 1, &result, &found));
  cublasLtMatmulPreferenceDestroy(preference);
  LATTICE_CHECK_MSG(found > 0, "cuBLASLt has no algorithm for M=%lld N=%lld K=%lld", static_cast<long long>(m),
                    static_cast<long long>(n), static_cast<long long>(k));
  plan->algo = result.algo;
  return *plans_.emplace(key, std::move(plan)).first->second;
}

bool Gemm::SkinnyWins(const Key& key, std::map<Key, bool>& decisions, cudaStream_t stream,
                      const std::function<void()>& skinny, const std::function<void()>& other) {
  auto it = decisions.find(key);
  if (it != decisions.end()) return it->second;
  cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
  LATTICE_CHECK(cudaStreamIsCapturing(stream, &capturing) == cudaSuccess);
  if (capturing != cudaStreamCaptureStatusNone) return false;
  // Both compute the same output; the caller's launch overwrites it again. Three
  // launches a sample, so that launch latency weighs less than in a lone launch.
  constexpr int kLaunches = 3;
  auto time = [&](const std::function<void()>& fn) {
    cudaEvent_t start, stop;
    cudaEventCreate(&start);
    cudaEventCreate(&stop);
    float best = 1e30f;
    for (int i = 0; i < 4; ++i) {
      cudaEventRecord(start, stream);
      for (int j = 0; j < kLaunches; ++j) fn();
      cudaEventRecord(stop, stream);
      cudaEventSynchronize(stop);
      float ms = 0;
      cudaEventElapsedTime(&ms, start, stop);
      if (i > 0) best = std::min(best, ms / kLaunches);  // the first run pays for plans and caches
    }
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    return best;
  };
  const bool wins = time(skinny) < kSkinnyMargin * time(other) + kSkinnyOverlapMs;
  decisions[key] = wins;
  return wins;
}

void Gemm::Linear(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& out, cudaStream_t stream) {
  LATTICE_CHECK(x.device() == Device::kCuda && w.device() == Device::kCuda && out.device() == Device::kCuda);
  LATTICE_CHECK(x.ndim() == 2 && w.ndim() == 2 && out.ndim() == 2);
  const int64_t m = x.dim(0), k = x.dim(1), n = w.dim(0);
  LATTICE_CHECK_MSG(w.dim(1) == k && out.dim(0) == m && out.dim(1) == n, "Gemm shapes: x %s w %s out %s",
                    ShapeToString(x.shape()).c_str(), ShapeToString(w.shape()).c_str(),
                    ShapeToString(out.shape()).c_str());
  LATTICE_CHECK(x.dtype() == w.dtype() && (out.dtype() == x.dtype() || out.dtype() == DType::kF32));
  if (m == 0 || n == 0) return;
  const bool has_bias = bias.defined();
  const Key key{m, n, k, static_cast<int>(x.dtype()), static_cast<int>(out.dtype()), has_bias};
  if (skinny_ != Skinny::kNever && SkinnyGemmApplies(x, w, out)) {
    auto skinny = [&] { SkinnyGemm(x, w, bias, out, stream); };
    auto cublas = [&] {
      skinny_ = Skinny::kNever;
      Linear(x, w, bias, out, stream);
      skinny_ = Skinny::kAuto;
    };
    if (skinny_ == Skinny::kAlways || SkinnyWins(key, skinny_wins_, stream, skinny, cublas)) {
      skinny();
      return;
    }
  }
  const Plan& plan = PlanFor(key);
  if (has_bias) {
    LATTICE_CHECK(bias.dtype() == x.dtype() && bias.numel() == n && bias.device() == Device::kCuda);
    LATTICE_CHECK_MSG(out.dtype() == x.dtype(), "Gemm: a bias needs the output in the inputs' dtype");
    const void* pointer = bias.raw_data();
    LATTICE_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &pointer, sizeof(pointer)));
  }
  const float alpha = 1.0f, beta = 0.0f;
  LATTICE_CUBLAS_CHECK(cublasLtMatmul(handle_, plan.op, &alpha, w.raw_data(), plan.a, x.raw_data(), plan.b, &beta,
                                      out.raw_data(), plan.c, out.raw_data(), plan.c, &plan.algo,
                                      workspace_->data(), kWorkspaceBytes, stream));
}

void Gemm::LinearSiluAndMul(const Tensor& gate_up, const Tensor& w, const Tensor& bias, Tensor& act, Tensor& out,
                            cudaStream_t stream) {
  LATTICE_CHECK(gate_up.ndim() == 2 && w.ndim() == 2 && act.ndim() == 2 && out.ndim() == 2);
  const int64_t m = gate_up.dim(0), k = w.dim(1), n = w.dim(0);
  LATTICE_CHECK_MSG(gate_up.dim(1) == 2 * k && act.dim(0) == m && act.dim(1) == k && act.dtype() == gate_up.dtype(),
                    "LinearSiluAndMul shapes: gate_up %s w %s act %s", ShapeToString(gate_up.shape()).c_str(),
                    ShapeToString(w.shape()).c_str(), ShapeToString(act.shape()).c_str());
  LATTICE_CHECK(out.dim(0) == m && out.dim(1) == n && gate_up.dtype() == w.dtype());
  if (m == 0 || n == 0) return;
  auto unfused = [&] {
    SiluAndMul(gate_up, act, stream);
    Linear(act, w, bias, out, stream);
  };
  if (skinny_ != Skinny::kNever && SkinnyGemmApplies(gate_up, w, out, SkinnyInput::kSiluAndMul)) {
    auto fused = [&] { SkinnyGemm(gate_up, w, bias, out, stream, SkinnyInput::kSiluAndMul); };
    const Key key{m, n, k, static_cast<int>(w.dtype()), static_cast<int>(out.dtype()), bias.defined()};
    if (skinny_ == Skinny::kAlways || SkinnyWins(key, fused_wins_, stream, fused, unfused)) {
      fused();
      return;
    }
  }
  unfused();
}

}  // namespace lattice::cuda
