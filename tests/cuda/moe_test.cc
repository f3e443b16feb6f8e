// The mixture-of-experts CUDA ops against the CPU reference: routing (exact ids, ties
// included), FusedMoe over odd sizes, both tile heights, empty and overloaded experts,
// ids of other ranks' experts, and replay from a CUDA graph with new routing; and the
// adds around the experts. Inputs are rounded to the dtype first; outputs start as NaN
// with NaN sentinel rows on either side. Runs on the GPU machine.
#include "kernels/cuda/ops.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/cpu/ops.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/gemm.h"
#include "tests/cuda/cuda_test_util.h"

namespace lattice {
namespace {

const DType kDTypes[] = {DType::kF32, DType::kBF16, DType::kF16};

using testing::Back;
using testing::IdsOnDevice;
using testing::NanHost;
using testing::OnDevice;
using testing::Poisoned;
using testing::Random;
using testing::Rounded;


// A device [rows, cols] tensor inside a buffer with a NaN sentinel row on either side.
struct Guarded {
  Tensor all;    // [rows + 2, cols]
  Tensor inner;  // rows 1 .. rows
};
Guarded GuardedDevice(const Tensor& host, DType dtype) {
  const int64_t rows = host.dim(0), cols = host.dim(1);
  Tensor all = NanHost({rows + 2, cols});
  std::copy(host.data<float>(), host.data<float>() + host.numel(), all.data<float>() + cols);
  Guarded g{OnDevice(all, dtype), Tensor()};
  g.inner = g.all.Slice(1, rows + 1);
  return g;
}
void ExpectSentinelsIntact(const Guarded& g, const std::string& what) {
  const Tensor all = Back(g.all);
  const int64_t cols = all.dim(1), last = all.dim(0) - 1;
  for (int64_t c = 0; c < cols; ++c) {
    ASSERT_TRUE(std::isnan(all.data<float>()[c])) << what << ": wrote the sentinel row before out, col " << c;
    ASSERT_TRUE(std::isnan(all.data<float>()[last * cols + c])) << what << ": wrote the sentinel row after out, col "
                                                                << c;
  }
}

double Tolerance(DType dtype) { return dtype == DType::kF32 ? 2e-5 : dtype == DType::kF16 ? 2e-3 : 1.6e-2; }

void ExpectClose(const Tensor& want, const Tensor& got, double tolerance, const std::string& what) {
  ASSERT_EQ(want.numel(), got.numel()) << what;
  const int64_t cols = want.ndim() == 2 ? want.dim(1) : want.numel();
  for (int64_t i = 0; i < want.numel(); ++i) {
    const float w = want.data<float>()[i], g = got.data<float>()[i];
    ASSERT_FALSE(std::isnan(g)) << what << ": row " << i / cols << " col " << i % cols << " not written";
    ASSERT_LE(std::abs(w - g), tolerance * (1.0 + std::abs(w)))
        << what << ": row " << i / cols << " col " << i % cols << " want " << w << " got " << g;
  }
}

// ---- routing ----

// Multiples of 1/8 in [-16, 16]: exact in every dtype, often tied, and otherwise far
// enough apart that f32 rounding cannot reorder them.
Tensor QuantizedLogits(int64_t tokens, int64_t experts, int seed) {
  Tensor t = Random({tokens, experts}, seed, 2.0f);
  for (float& v : t.span<float>()) v = std::clamp(std::round(v * 8.0f), -127.0f, 127.0f) / 8.0f;
  return t;
}

void CheckRouting(const Tensor& logits, DType dtype, int top_k, bool renormalize, const std::string& what) {
  const int64_t tokens = logits.dim(0);
  std::vector<int32_t> want_ids;
  std::vector<float> want_weights;
  cpu::MoeTopKRouting(logits, top_k, renormalize, want_ids, want_weights);
  Tensor ids = IdsOnDevice(std::vector<int32_t>(tokens * top_k, -12345), {tokens, top_k});
  Tensor weights = OnDevice(NanHost({tokens, top_k}), DType::kF32);
  cuda::MoeTopKRouting(OnDevice(logits, dtype), top_k, renormalize, ids, weights);
  const Tensor got_ids = cuda::ToHost(ids);
  for (int64_t i = 0; i < tokens * top_k; ++i) {
    ASSERT_EQ(want_ids[i], got_ids.data<int32_t>()[i]) << what << ": token " << i / top_k << " slot " << i % top_k;
  }
  ExpectClose(Tensor::FromVector(want_weights, {tokens, top_k}), Back(weights), Tolerance(DType::kF32),
              what + " weights (token = row, slot = col)");
}

std::string RoutingName(DType dtype, int64_t tokens, int64_t experts, int top_k, bool renormalize) {
  return "MoeTopKRouting " + std::string(DTypeName(dtype)) + " T=" + std::to_string(tokens) +
         " E=" + std::to_string(experts) + " k=" + std::to_string(top_k) +
         (renormalize ? " renormalized" : " raw");
}

TEST(CudaMoe, TopKRoutingMatchesTheCpu) {
  ASSERT_GT(cuda::DeviceCount(), 0);
  for (DType dtype : kDTypes) {
    for (int64_t tokens : {1, 7, 33, 300}) {
      for (int64_t experts : {4, 8, 60, 128}) {
        const Tensor logits = QuantizedLogits(tokens, experts, static_cast<int>(tokens * 131 + experts));
        for (int top_k : {1, 2, 4, 8}) {
          if (top_k > experts) continue;
          for (bool renormalize : {false, true}) {
            CheckRouting(logits, dtype, top_k, renormalize, RoutingName(dtype, tokens, experts, top_k, renormalize));
          }
        }
      }
    }
  }
}

TEST(CudaMoe, TopKRoutingBreaksTiesTowardTheLowerExpert) {
  ASSERT_GT(cuda::DeviceCount(), 0);
  for (DType dtype : kDTypes) {
    for (int64_t experts : {4, 8, 60, 128}) {
      // Row 0: all equal. Row 1: runs of 3 equal values, falling. Row 2: every 4th
      // expert leads. Row 3: two values only, the low ids losing.
      Tensor logits = Tensor::Empty(DType::kF32, {4, experts});
      float* l = logits.data<float>();
      for (int64_t e = 0; e < experts; ++e) {
        l[e] = 0.5f;
        l[experts + e] = -static_cast<float>(e / 3);
        l[2 * experts + e] = e % 4 == 3 ? 1.0f : 0.0f;
        l[3 * experts + e] = e < experts / 2 ? -2.0f : 2.0f;
      }
      for (int top_k : {1, 2, 4}) {
        if (top_k > experts) continue;
        for (bool renormalize : {false, true}) {
          const std::string what = RoutingName(dtype, 4, experts, top_k, renormalize) + " ties";
          CheckRouting(logits, dtype, top_k, renormalize, what);
          // The contract itself, not only agreement with the CPU: all equal -> 0, 1, 2, ...
          Tensor ids = IdsOnDevice(std::vector<int32_t>(4 * top_k, -1), {4, top_k});
          Tensor weights = OnDevice(NanHost({4, top_k}), DType::kF32);
          cuda::MoeTopKRouting(OnDevice(logits, dtype), top_k, renormalize, ids, weights);
          const Tensor got = cuda::ToHost(ids);
          for (int j = 0; j < top_k; ++j) EXPECT_EQ(got.data<int32_t>()[j], j) << what << " all-equal slot " << j;
        }
      }
    }
  }
}

// ---- FusedMoe ----

struct MoeCase {
  int64_t tokens, experts, top_k, hidden, inter;
  std::string Name(DType dtype) const {
    return std::string(DTypeName(dtype)) + " T=" + std::to_string(tokens) + " E=" + std::to_string(experts) +
           " k=" + std::to_string(top_k) + " H=" + std::to_string(hidden) + " I=" + std::to_string(inter);
  }
};

// f32 differs from the CPU only by summation order: allow for the longer reductions.
double MoeTolerance(DType dtype, const MoeCase& c) {
  if (dtype != DType::kF32) return Tolerance(dtype);
  return Tolerance(dtype) * std::max(1.0, std::sqrt(static_cast<double>(std::max(c.hidden, c.inter)) / 64.0));
}

// Random ids in [0, E) (a token may repeat an expert) and weights summing to 1 per token.
void RandomRouting(const MoeCase& c, int seed, std::vector<int32_t>& ids, std::vector<float>& weights) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> expert(0, static_cast<int32_t>(c.experts - 1));
  std::uniform_real_distribution<float> u(0.05f, 1.0f);
  ids.resize(c.tokens * c.top_k);
  weights.resize(c.tokens * c.top_k);
  for (int64_t t = 0; t < c.tokens; ++t) {
    float sum = 0.0f;
    for (int64_t s = 0; s < c.top_k; ++s) {
      ids[t * c.top_k + s] = expert(rng);
      sum += weights[t * c.top_k + s] = u(rng);
    }
    for (int64_t s = 0; s < c.top_k; ++s) weights[t * c.top_k + s] /= sum;
  }
}

struct MoeInputs {
  Tensor x, w13, w2;  // host f32, rounded to the dtype
};
MoeInputs RandomMoeInputs(const MoeCase& c, DType dtype) {
  return {Rounded(Random({c.tokens, c.hidden}, 11), dtype),
          Rounded(Random({c.experts, 2 * c.inter, c.hidden}, 12, 1.0f / std::sqrt(static_cast<float>(c.hidden))), dtype),
          Rounded(Random({c.experts, c.hidden, c.inter}, 13, 1.0f / std::sqrt(static_cast<float>(c.inter))), dtype)};
}

// The CPU reference, which requires ids in [0, E): a skipped pair becomes expert 0 with weight 0.
Tensor CpuMoe(const MoeCase& c, const MoeInputs& in, std::vector<int32_t> ids, std::vector<float> weights) {
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= c.experts) ids[i] = 0, weights[i] = 0.0f;
  }
  Tensor want = Tensor::Empty(DType::kF32, {c.tokens, c.hidden});
  cpu::FusedMoe(in.x, in.w13, in.w2, ids, weights, static_cast<int>(c.top_k), want);
  return want;
}

void CheckFusedMoe(const MoeCase& c, DType dtype, const std::vector<int32_t>& ids, const std::vector<float>& weights,
                   const std::string& what) {
  const MoeInputs in = RandomMoeInputs(c, dtype);
  const Tensor want = CpuMoe(c, in, ids, weights);
  // Both routes: the grouped kernels, and cuBLASLt per expert (large eager calls).
  cuda::Gemm gemm;
  for (cuda::MoeRoute route : {cuda::MoeRoute::kGrouped, cuda::MoeRoute::kPerExpert}) {
    const std::string name = what + (route == cuda::MoeRoute::kGrouped ? " (grouped)" : " (per expert)");
    // Three bytes used before: FusedMoeWorkspaceBytes must cover its own alignment.
    cuda::Workspace workspace(
        cuda::FusedMoeWorkspaceBytes(c.tokens, c.top_k, c.experts, c.hidden, c.inter, dtype) + 3);
    workspace.Allocate(3);
    Guarded out = GuardedDevice(NanHost({c.tokens, c.hidden}), dtype);
    cuda::FusedMoe(OnDevice(in.x, dtype), OnDevice(in.w13, dtype), OnDevice(in.w2, dtype),
                   IdsOnDevice(ids, {c.tokens, c.top_k}),
                   cuda::ToDevice(Tensor::FromVector(weights, {c.tokens, c.top_k})), out.inner, workspace, nullptr,
                   &gemm, route);
    ExpectClose(want, Back(out.inner), MoeTolerance(dtype, c), name);
    ExpectSentinelsIntact(out, name);
  }
}

TEST(CudaMoe, FusedMoeMatchesTheCpu) {
  ASSERT_GT(cuda::DeviceCount(), 0);
  // Decode-sized batches take 16-row tiles (pairs <= 16 E), larger ones 64-row tiles;
  // H and I divisible by 8 take the 16-byte-load path, odd ones the scalar path; K up to
  // 520 runs the pipeline through several rounds of its stages.
  const MoeCase cases[] = {
      {1, 4, 1, 1, 3},       {1, 8, 2, 64, 96},     {7, 4, 2, 7, 33},     {33, 8, 2, 64, 96},
      {64, 8, 2, 128, 96},   {33, 128, 8, 64, 33},  {5, 8, 2, 520, 264},  {300, 8, 2, 64, 96},
      {300, 60, 4, 257, 33}, {300, 4, 1, 520, 264}, {150, 4, 2, 64, 33},  {300, 128, 8, 64, 40},
  };
  for (DType dtype : kDTypes) {
    for (const MoeCase& c : cases) {
      std::vector<int32_t> ids;
      std::vector<float> weights;
      RandomRouting(c, static_cast<int>(c.tokens * 7 + c.experts), ids, weights);
      CheckFusedMoe(c, dtype, ids, weights, "FusedMoe " + c.Name(dtype));
    }
  }
}

TEST(CudaMoe, FusedMoeWithAllTokensOnOneExpert) {
  ASSERT_GT(cuda::DeviceCount(), 0);
  // The other experts get no tokens; with k = 2 each token takes the expert twice.
  const MoeCase cases[] = {{1, 8, 1, 64, 96}, {33, 8, 1, 7, 33}, {33, 8, 2, 64, 96}, {300, 8, 2, 257, 96},
                           {300, 4, 1, 64, 33}};
  for (DType dtype : kDTypes) {
    for (const MoeCase& c : cases) {
      std::vector<int32_t> ids;
      std::vector<float> weights;
      RandomRouting(c, 5, ids, weights);
      std::fill(ids.begin(), ids.end(), static_cast<int32_t>(c.experts - 1));
      CheckFusedMoe(c, dtype, ids, weights, "FusedMoe all on the last expert " + c.Name(dtype));
    }
  }
}

TEST(CudaMoe, FusedMoeSkipsIdsOutsideTheLocalExperts) {
  ASSERT_GT(cuda::DeviceCount(), 0);
  const MoeCase cases[] = {{1, 4, 2, 64, 96}, {7, 4, 2, 7, 33}, {33, 8, 4, 64, 96}, {300, 8, 2, 257, 33}};
  for (DType dtype : kDTypes) {
    for (const MoeCase& c : cases) {
      std::vector<int32_t> ids;
      std::vector<float> weights;
      RandomRouting(c, 9, ids, weights);
      const int32_t outside[] = {-1, static_cast<int32_t>(c.experts), static_cast<int32_t>(c.experts + 5), -100};
      // A third of the pairs belong to other ranks; token 0 has no local expert at all.
      for (size_t i = 0; i < ids.size(); ++i) {
        if (i % 3 == 1 || static_cast<int64_t>(i) < c.top_k) ids[i] = outside[i % 4];
      }
      CheckFusedMoe(c, dtype, ids, weights, "FusedMoe skipping other ranks' experts " + c.Name(dtype));
    }
  }
}

// Captured once, replayed with different routing in the same device buffers: the
// launch shapes must not depend on how tokens spread over experts.
TEST(CudaMoe, FusedMoeReplaysFromACudaGraphWithNewRouting) {
  ASSERT_GT(cuda::DeviceCount(), 0);
  for (DType dtype : kDTypes) {
    for (const MoeCase& c : {MoeCase{33, 8, 2, 64, 96}, MoeCase{300, 8, 2, 64, 33}}) {
      const std::string what = "FusedMoe graph replay " + c.Name(dtype);
      const MoeInputs in = RandomMoeInputs(c, dtype);
      std::vector<int32_t> spread, piled;
      std::vector<float> weights;
      RandomRouting(c, 3, spread, weights);
      piled.assign(spread.size(), 2);
      piled[0] = -1;

      const Tensor x = OnDevice(in.x, dtype), w13 = OnDevice(in.w13, dtype), w2 = OnDevice(in.w2, dtype);
      Tensor ids = IdsOnDevice(spread, {c.tokens, c.top_k});
      const Tensor topk_weights = cuda::ToDevice(Tensor::FromVector(weights, {c.tokens, c.top_k}));
      Tensor out = OnDevice(NanHost({c.tokens, c.hidden}), dtype);
      cuda::Workspace workspace(cuda::FusedMoeWorkspaceBytes(c.tokens, c.top_k, c.experts, c.hidden, c.inter, dtype));
      cudaStream_t stream;
      ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
      cudaGraph_t graph;
      ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), cudaSuccess) << what;
      cuda::FusedMoe(x, w13, w2, ids, topk_weights, out, workspace, stream);
      ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess) << what;
      cudaGraphExec_t exec;
      ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess) << what;

      for (const std::vector<int32_t>* routing : {&spread, &piled}) {
        const std::string step = what + (routing == &spread ? " (spread routing)" : " (all on expert 2)");
        const Tensor new_ids = IdsOnDevice(*routing, {c.tokens, c.top_k});
        ASSERT_EQ(cudaMemcpy(ids.raw_data(), new_ids.raw_data(), ids.nbytes(), cudaMemcpyDeviceToDevice), cudaSuccess);
        const Tensor nan = OnDevice(NanHost({c.tokens, c.hidden}), dtype);
        ASSERT_EQ(cudaMemcpy(out.raw_data(), nan.raw_data(), out.nbytes(), cudaMemcpyDeviceToDevice), cudaSuccess);
        ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess) << step;
        ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess) << step;
        ExpectClose(CpuMoe(c, in, *routing, weights), Back(out), MoeTolerance(dtype, c), step);
      }
      cudaGraphExecDestroy(exec);
      cudaGraphDestroy(graph);
      cudaStreamDestroy(stream);
    }
  }
}

// ---- the adds around the experts ----

TEST(CudaMoe, AddSigmoidGatedAndAddMatchTheCpu) {
  ASSERT_GT(cuda::DeviceCount(), 0);
  for (DType dtype : kDTypes) {
    for (int64_t rows : {1, 7, 33}) {
      for (int64_t hidden : {1, 7, 769, 5125}) {
        const std::string what = std::string(DTypeName(dtype)) + " " + std::to_string(rows) + "x" +
                                 std::to_string(hidden);
        const Tensor y = Rounded(Random({rows, hidden}, 21), dtype);
        const Tensor base = Rounded(Random({rows, hidden}, 22), dtype);
        const Tensor gate = Rounded(Random({rows, 1}, 23, 3.0f), dtype);

        Tensor want = base.Clone();
        cpu::AddSigmoidGated(gate, y, want);
        Guarded out = GuardedDevice(base, dtype);
        cuda::AddSigmoidGated(OnDevice(gate, dtype), OnDevice(y, dtype), out.inner);
        ExpectClose(want, Back(out.inner), Tolerance(dtype), "AddSigmoidGated " + what);
        ExpectSentinelsIntact(out, "AddSigmoidGated " + what);

        // An f32 gate logit with 16-bit activations (the gate may come from an f32 router).
        Guarded mixed = GuardedDevice(base, dtype);
        cuda::AddSigmoidGated(OnDevice(gate, DType::kF32), OnDevice(y, dtype), mixed.inner);
        ExpectClose(want, Back(mixed.inner), Tolerance(dtype), "AddSigmoidGated f32 gate " + what);

        Tensor want_sum = base.Clone();
        cpu::Add(y, want_sum);
        Guarded sum = GuardedDevice(base, dtype);
        cuda::Add(OnDevice(y, dtype), sum.inner);
        ExpectClose(want_sum, Back(sum.inner), Tolerance(dtype), "Add " + what);
        ExpectSentinelsIntact(sum, "Add " + what);
      }
    }
  }
}

// Expert parallelism's dispatch: the plan against a host walk of the pairs in (token,
// slot) order (the CPU layer's order), the row gather, and the combine in expert order.
TEST(CudaMoe, DispatchPlanGatherAndCombineMatchTheHost) {
  std::mt19937 rng(7);
  for (int64_t tokens : {0, 1, 7, 769, 3000}) {
    for (int top_k : {1, 2, 8}) {
      for (int ep : {1, 2, 4, 8}) {
        for (int tp : {1, 2}) {
          const int experts = 16, per_rank = experts / ep, tp_rank = tp - 1;
          const std::string what = "T=" + std::to_string(tokens) + " k=" + std::to_string(top_k) +
                                   " ep=" + std::to_string(ep) + " tp=" + std::to_string(tp);
          std::vector<int32_t> ids(tokens * top_k);
          std::vector<float> weights(ids.size());
          for (int64_t t = 0; t < tokens; ++t) {  // distinct experts per token, in random order
            std::vector<int32_t> order(experts);
            for (int e = 0; e < experts; ++e) order[e] = e;
            std::shuffle(order.begin(), order.end(), rng);
            for (int s = 0; s < top_k; ++s) {
              ids[t * top_k + s] = order[s];
              weights[t * top_k + s] = std::uniform_real_distribution<float>(0.1f, 1.0f)(rng);
            }
          }
          // Host: counts per owner, then rows in (token, slot) order within each owner.
          std::vector<int32_t> counts(ep, 0), want_row(ids.size(), -1);
          for (size_t i = 0; i < ids.size(); ++i) {
            if ((static_cast<int64_t>(i) / top_k) % tp == tp_rank) ++counts[ids[i] / per_rank];
          }
          std::vector<int32_t> cursor(ep, 0);
          for (int d = 1; d < ep; ++d) cursor[d] = cursor[d - 1] + counts[d - 1];
          const int32_t num_send = cursor[ep - 1] + counts[ep - 1];
          std::vector<int32_t> want_token(num_send), want_expert(num_send);
          for (size_t i = 0; i < ids.size(); ++i) {
            if ((static_cast<int64_t>(i) / top_k) % tp != tp_rank) continue;
            const int d = ids[i] / per_rank;
            want_row[i] = cursor[d]++;
            want_token[want_row[i]] = static_cast<int32_t>(i / top_k);
            want_expert[want_row[i]] = ids[i] - d * per_rank;
          }

          const Tensor device_ids = IdsOnDevice(ids, {tokens, top_k});
          cuda::MoeDispatch plan;
          plan.send_counts = IdsOnDevice(std::vector<int32_t>(ep, -7), {ep});
          plan.pair_row = IdsOnDevice(std::vector<int32_t>(ids.size(), -7), {tokens, top_k});
          plan.send_token = IdsOnDevice(std::vector<int32_t>(ids.size(), -7), {tokens * top_k});
          plan.send_expert = IdsOnDevice(std::vector<int32_t>(ids.size(), -7), {tokens * top_k, 1});
          cuda::MoeDispatchPlan(device_ids, tp_rank, tp, per_rank, ep, plan);
          const Tensor got_counts = cuda::ToHost(plan.send_counts), got_row = cuda::ToHost(plan.pair_row);
          const Tensor got_token = cuda::ToHost(plan.send_token), got_expert = cuda::ToHost(plan.send_expert);
          for (int d = 0; d < ep; ++d) ASSERT_EQ(got_counts.data<int32_t>()[d], counts[d]) << what << " owner " << d;
          for (size_t i = 0; i < ids.size(); ++i) ASSERT_EQ(got_row.data<int32_t>()[i], want_row[i]) << what << " pair " << i;
          for (int32_t r = 0; r < num_send; ++r) {
            ASSERT_EQ(got_token.data<int32_t>()[r], want_token[r]) << what << " row " << r;
            ASSERT_EQ(got_expert.data<int32_t>()[r], want_expert[r]) << what << " row " << r;
          }

          const int64_t hidden = 72;
          for (DType dtype : kDTypes) {
            const Tensor x = Rounded(Random({std::max<int64_t>(tokens, 1), hidden}, 31), dtype);
            Tensor send_x = Poisoned(dtype, {num_send, hidden});
            cuda::GatherRows(OnDevice(x, dtype), plan.send_token, send_x);
            const Tensor got_x = Back(send_x);
            for (int32_t r = 0; r < num_send; ++r) {
              for (int64_t h = 0; h < hidden; ++h) {
                ASSERT_EQ(got_x.data<float>()[r * hidden + h], x.data<float>()[want_token[r] * hidden + h])
                    << what << " gathered row " << r;
              }
            }
            // The combine: each token's rows in ascending expert order, f32 sums.
            const Tensor back = Rounded(Random({num_send, hidden}, 32), dtype);
            Tensor want = Tensor::Zeros(DType::kF32, {tokens, hidden});
            for (int64_t t = 0; t < tokens; ++t) {
              std::vector<std::pair<int32_t, int>> slots;
              for (int s = 0; s < top_k; ++s) {
                if (want_row[t * top_k + s] >= 0) slots.push_back({ids[t * top_k + s], s});
              }
              std::sort(slots.begin(), slots.end());
              for (int64_t h = 0; h < hidden; ++h) {
                float sum = 0.0f;
                for (const auto& [e, s] : slots) {
                  sum += weights[t * top_k + s] * back.data<float>()[want_row[t * top_k + s] * hidden + h];
                }
                want.data<float>()[t * hidden + h] = sum;
              }
            }
            Tensor device_weights = Tensor::Empty(DType::kF32, {tokens, top_k});
            std::copy(weights.begin(), weights.end(), device_weights.data<float>());
            Guarded out = GuardedDevice(Tensor::Zeros(DType::kF32, {tokens, hidden}), dtype);
            cuda::MoeCombineDispatched(OnDevice(back, dtype), plan.pair_row, device_ids, cuda::ToDevice(device_weights),
                                       out.inner);
            ExpectClose(want, Back(out.inner), Tolerance(dtype), "MoeCombineDispatched " + what);
            ExpectSentinelsIntact(out, "MoeCombineDispatched " + what);
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace lattice
