// cuda::Sample and cuda::TopKLogprobs against the CPU reference (cpu::Sample,
// cpu::LogSoftmax + cpu::TopK) over odd and real vocabulary sizes, greedy and stochastic
// rows mixed in one call, exact ties, NaN and infinite logits, and many (seed, position)
// draws. Outputs are poisoned so an unwritten one fails. Runs on the GPU machine.
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include "kernels/cpu/ops.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/ops.h"

namespace lattice {
namespace {

constexpr int64_t kVocabs[] = {1, 7, 769, 5125, 32000, 151936};
constexpr int64_t kRows[] = {1, 3, 64};
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

// How rows of a logits tensor are filled.
enum class Pattern {
  kNormal,     // N(0, 3): distinct values
  kTiedMax,    // N(0, 3) with the maximum repeated at several ids
  kNonFinite,  // N(0, 3) with NaN and -inf sprinkled in
  kBf16,       // rounded to bf16: many exact ties, as bf16 model outputs cast to f32
  kEqual,      // every entry the same
};

float RoundToBf16(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, 4);
  bits = (bits + 0x7fffu + ((bits >> 16) & 1u)) & 0xffff0000u;
  std::memcpy(&v, &bits, 4);
  return v;
}

void FillRow(std::span<float> row, Pattern pattern, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::uniform_int_distribution<size_t> pick(0, row.size() - 1);
  for (float& v : row) v = normal(rng);
  switch (pattern) {
    case Pattern::kNormal:
      break;
    case Pattern::kTiedMax: {
      float top = row[0];
      for (float v : row) top = std::max(top, v);
      for (int i = 0; i < 4; ++i) row[pick(rng)] = top + 1.0f;
      break;
    }
    case Pattern::kNonFinite:
      for (size_t i = 0; i < row.size() / 8 + 1; ++i) row[pick(rng)] = (i % 2 == 0) ? kNaN : -kInf;
      row[pick(rng)] = normal(rng);  // at least one finite entry survives (V = 1 included)
      break;
    case Pattern::kBf16:
      for (float& v : row) v = RoundToBf16(v);
      break;
    case Pattern::kEqual:
      for (float& v : row) v = 0.5f;
      break;
  }
}

Tensor Logits(int64_t rows, int64_t vocab, std::mt19937& rng, const std::vector<Pattern>& patterns) {
  Tensor t = Tensor::Empty(DType::kF32, {rows, vocab});
  for (int64_t r = 0; r < rows; ++r) {
    FillRow(std::span<float>(t.data<float>() + r * vocab, vocab), patterns[r % patterns.size()], rng);
  }
  return t;
}

std::span<const float> Row(const Tensor& logits, int64_t r) {
  return {logits.data<float>() + r * logits.dim(1), static_cast<size_t>(logits.dim(1))};
}

struct Draw {
  cpu::SamplingParams params;
  int32_t position = 0;
};

std::string Describe(const Draw& d) {
  std::ostringstream out;
  out << "T=" << d.params.temperature << " top_k=" << d.params.top_k << " top_p=" << d.params.top_p
      << " min_p=" << d.params.min_p << " seed=" << d.params.seed << " position=" << d.position;
  return out.str();
}

// The filter combinations every stochastic test cycles through (greedy rows included).
const std::vector<cpu::SamplingParams>& Configs() {
  static const std::vector<cpu::SamplingParams> configs = {
      {1.0f, 0, 1.0f, 0.0f},     {0.6f, 0, 1.0f, 0.0f},     {3.0f, 0, 1.0f, 0.0f},
      {0.9f, 1, 1.0f, 0.0f},     {1.0f, 40, 1.0f, 0.0f},    {0.8f, 0, 0.9f, 0.0f},
      {1.0f, 0, 0.3f, 0.0f},     {1.0f, 0, 1.0f, 0.1f},     {1.5f, 0, 1.0f, 0.6f},
      {1.1f, 50, 0.95f, 0.02f},  {1.3f, 1000, 0.8f, 0.0f},  {0.7f, -1, 0.99f, 0.0f},
      {0.0f, 0, 1.0f, 0.0f},     {2.0f, 7, 0.5f, 0.05f},    {0.05f, 0, 1.0f, 0.0f},
  };
  return configs;
}

std::vector<Draw> Draws(int64_t rows, std::mt19937& rng, size_t config_offset, bool greedy_only) {
  std::uniform_int_distribution<uint64_t> seed;
  std::uniform_int_distribution<int32_t> position(0, 1 << 20);
  std::vector<Draw> draws(rows);
  for (int64_t r = 0; r < rows; ++r) {
    if (!greedy_only) draws[r].params = Configs()[(config_offset + r) % Configs().size()];
    draws[r].params.seed = seed(rng);
    draws[r].position = position(rng);
  }
  return draws;
}

// Host tensors of the draws' parameters, in SamplingMetadata's layout.
struct HostDraws {
  Tensor temperature, top_k, top_p, min_p, seed, position;
};

HostDraws ToHostTensors(const std::vector<Draw>& draws) {
  const int64_t rows = static_cast<int64_t>(draws.size());
  HostDraws h{Tensor::Empty(DType::kF32, {rows}), Tensor::Empty(DType::kI32, {rows}),
              Tensor::Empty(DType::kF32, {rows}), Tensor::Empty(DType::kF32, {rows}),
              Tensor::Empty(DType::kI32, {rows, 2}), Tensor::Empty(DType::kI32, {rows})};
  for (int64_t r = 0; r < rows; ++r) {
    const cpu::SamplingParams& p = draws[r].params;
    h.temperature.data<float>()[r] = p.temperature;
    h.top_k.data<int32_t>()[r] = p.top_k;
    h.top_p.data<float>()[r] = p.top_p;
    h.min_p.data<float>()[r] = p.min_p;
    h.seed.data<int32_t>()[2 * r] = static_cast<int32_t>(static_cast<uint32_t>(p.seed));
    h.seed.data<int32_t>()[2 * r + 1] = static_cast<int32_t>(static_cast<uint32_t>(p.seed >> 32));
    h.position.data<int32_t>()[r] = draws[r].position;
  }
  return h;
}

cuda::SamplingMetadata DeviceMetadata(const std::vector<Draw>& draws) {
  const HostDraws h = ToHostTensors(draws);
  cuda::SamplingMetadata metadata;
  metadata.temperature = cuda::ToDevice(h.temperature);
  metadata.top_k = cuda::ToDevice(h.top_k);
  metadata.top_p = cuda::ToDevice(h.top_p);
  metadata.min_p = cuda::ToDevice(h.min_p);
  metadata.seed = cuda::ToDevice(h.seed);
  metadata.position = cuda::ToDevice(h.position);
  return metadata;
}

Tensor PoisonedTokens(int64_t rows) {
  Tensor tokens = Tensor::Empty(DType::kI32, {rows});
  for (int32_t& t : tokens.span<int32_t>()) t = -1;
  return cuda::ToDevice(tokens);
}

std::vector<int32_t> TokensOf(const Tensor& device_tokens) {
  const Tensor back = cuda::ToHost(device_tokens);
  return {back.data<int32_t>(), back.data<int32_t>() + back.numel()};
}

std::vector<int32_t> GpuSample(const Tensor& logits, const std::vector<Draw>& draws, bool all_greedy) {
  cuda::SamplingMetadata metadata;
  if (!all_greedy) metadata = DeviceMetadata(draws);
  metadata.all_greedy = all_greedy;
  Tensor tokens = PoisonedTokens(logits.dim(0));
  cuda::Workspace workspace(1 << 20);
  cuda::Sample(cuda::ToDevice(logits), metadata, tokens, workspace);
  return TokensOf(tokens);
}

// Compares every row's token with cpu::Sample's; returns the number of disagreements and
// describes each in `report`.
int CompareWithCpu(const Tensor& logits, const std::vector<Draw>& draws, const std::vector<int32_t>& got,
                   const std::string& what, std::string& report) {
  int mismatches = 0;
  for (int64_t r = 0; r < logits.dim(0); ++r) {
    const std::span<const float> row = Row(logits, r);
    const int32_t want = cpu::Sample(row, draws[r].params, draws[r].position);
    if (got[r] == want) continue;
    ++mismatches;
    std::ostringstream out;
    out << what << " row " << r << " V=" << row.size() << " " << Describe(draws[r]) << ": want " << want
        << " (logit " << row[want] << ") got " << got[r];
    if (got[r] >= 0 && got[r] < static_cast<int32_t>(row.size())) out << " (logit " << row[got[r]] << ")";
    report += out.str() + "\n";
  }
  return mismatches;
}

const std::vector<Pattern> kAllPatterns = {Pattern::kNormal, Pattern::kTiedMax, Pattern::kNonFinite, Pattern::kBf16,
                                           Pattern::kEqual};

TEST(CudaSampling, GreedyMatchesCpuArgMax) {
  ASSERT_GT(cuda::DeviceCount(), 0);
  std::mt19937 rng(11);
  for (int64_t vocab : kVocabs) {
    std::vector<int64_t> row_counts(std::begin(kRows), std::end(kRows));
    if (vocab == 769 || vocab == 5125) row_counts.push_back(200);  // a block per row, no cluster
    for (int64_t rows : row_counts) {
      Tensor logits = Logits(rows, vocab, rng, kAllPatterns);
      if (rows >= 3 && vocab >= 7) {  // rows the stochastic path rejects; argmax still defined
        float* last = logits.data<float>() + (rows - 1) * vocab;
        last[vocab / 2] = kInf;
        last[vocab - 1] = kInf;
        float* first = logits.data<float>();
        for (int64_t i = 0; i < vocab; ++i) first[i] = (i % 3 == 0) ? kNaN : -kInf;
        if (rows == 64) {
          for (int64_t i = 0; i < vocab; ++i) first[vocab + i] = kNaN;
        }
      }
      const std::vector<Draw> draws = Draws(rows, rng, 0, /*greedy_only=*/true);
      for (bool all_greedy : {true, false}) {
        const std::string what = std::string(all_greedy ? "all_greedy" : "greedy rows") + " " +
                                 std::to_string(rows) + "x" + std::to_string(vocab);
        std::string report;
        EXPECT_EQ(CompareWithCpu(logits, draws, GpuSample(logits, draws, all_greedy), what, report), 0) << report;
      }
    }
  }
}

// Every config on every pattern the CPU accepts, greedy rows mixed in; the number of calls
// shrinks with the vocabulary to bound the CPU reference's sorts.
TEST(CudaSampling, StochasticMatchesCpuSample) {
  ASSERT_GT(cuda::DeviceCount(), 0);
  std::mt19937 rng(12);
  const std::vector<Pattern> patterns = {Pattern::kNormal, Pattern::kTiedMax, Pattern::kNonFinite, Pattern::kBf16,
                                         Pattern::kEqual};
  int compared = 0, mismatches = 0;
  std::string report;
  for (int64_t vocab : kVocabs) {
    for (int64_t rows : kRows) {
      const int64_t budget = vocab >= 100000 ? 12 : vocab >= 10000 ? 60 : 120;  // CPU samples per (V, R)
      const int64_t calls = std::max<int64_t>(1, budget / rows / (rows == 1 ? 1 : 2));
      for (int64_t call = 0; call < calls; ++call) {
        std::vector<Pattern> shifted(patterns.begin() + call % patterns.size(), patterns.end());
        shifted.insert(shifted.end(), patterns.begin(), patterns.begin() + call % patterns.size());
        const Tensor logits = Logits(rows, vocab, rng, shifted);
        const std::vector<Draw> draws = Draws(rows, rng, static_cast<size_t>(call), false);
        const std::string what = std::to_string(rows) + "x" + std::to_string(vocab) + " call " + std::to_string(call);
        mismatches += CompareWithCpu(logits, draws, GpuSample(logits, draws, false), what, report);
        compared += static_cast<int>(rows);
      }
    }
  }
  std::printf("compared %d sampled tokens with the CPU\n", compared);
  EXPECT_EQ(mismatches, 0) << report;
}

// One row's distribution drawn at many (seed, position) pairs in one call (256 rows: a
// block per row), so the draw lands all along the CDF, for each config.
TEST(CudaSampling, ManyDrawsOfOneRowMatchCpuSample) {
  ASSERT_GT(cuda::DeviceCount(), 0);
  std::mt19937 rng(13);
  int mismatches = 0;
  std::string report;
  for (int64_t vocab : {769, 32000}) {
    for (Pattern pattern : {Pattern::kNormal, Pattern::kBf16}) {
      const int64_t rows = vocab < 1000 ? 256 : 96;
      Tensor one = Logits(1, vocab, rng, {pattern});
      Tensor logits = Tensor::Empty(DType::kF32, {rows, vocab});
      for (int64_t r = 0; r < rows; ++r) std::memcpy(logits.data<float>() + r * vocab, one.data<float>(), vocab * 4);
      const std::vector<Draw> draws = Draws(rows, rng, 0, false);
      const std::string what = "one row x256 V=" + std::to_string(vocab) +
                               (pattern == Pattern::kBf16 ? " bf16" : " normal");
      mismatches += CompareWithCpu(logits, draws, GpuSample(logits, draws, false), what, report);
    }
  }
  EXPECT_EQ(mismatches, 0) << report;
}

// Distinct logits that round to one weight (tiny logits next to a max of 1, and logits
// equal up to the last float bits at a high temperature): the CPU orders them by id.
TEST(CudaSampling, EqualWeightRunsFollowTheCpuOrder) {
  ASSERT_GT(cuda::DeviceCount(), 0);
  std::mt19937 rng(14);
  const int64_t rows = 64, vocab = 769;
  Tensor logits = Tensor::Empty(DType::kF32, {rows, vocab});
  std::uniform_int_distribution<int> scale(-90, -60);
  std::uniform_real_distribution<float> mantissa(1.0f, 2.0f);
  for (int64_t r = 0; r < rows; ++r) {
    float* row = logits.data<float>() + r * vocab;
    for (int64_t i = 0; i < vocab; ++i) {
      const float sign = (i % 2 == 0) ? 1.0f : -1.0f;
      row[i] = (r % 2 == 0) ? sign * std::ldexp(mantissa(rng), scale(rng))  // l - max rounds to -max
                            : 1.0f + static_cast<float>(i % 5) * 0x1p-23f;   // (l - max) / T rounds away
    }
    row[(r * 37) % vocab] = 1.0f + 0x1p-20f;
  }
  std::vector<Draw> draws = Draws(rows, rng, 0, false);
  for (int64_t r = 0; r < rows; ++r) {
    draws[r].params = {r % 2 == 0 ? 1.0f : 1e10f, static_cast<int32_t>(r % 3 == 0 ? 100 : 0), r % 4 == 1 ? 0.7f : 1.0f,
                       0.0f, draws[r].params.seed};
  }
  std::string report;
  EXPECT_EQ(CompareWithCpu(logits, draws, GpuSample(logits, draws, false), "equal-weight runs", report), 0)
      << report;
}

// Launch shapes depend on host values only: a captured graph replays with new seeds and
// positions written to the same device tensors, and matches the CPU each time.
TEST(CudaSampling, ReplaysInACudaGraph) {
  ASSERT_GT(cuda::DeviceCount(), 0);
  std::mt19937 rng(16);
  const int64_t rows = 3, vocab = 5125;
  const int k = 5;
  const Tensor logits = Logits(rows, vocab, rng, {Pattern::kNormal, Pattern::kBf16});
  const Tensor device_logits = cuda::ToDevice(logits);
  std::vector<Draw> draws = Draws(rows, rng, 3, false);
  cuda::SamplingMetadata metadata = DeviceMetadata(draws);
  Tensor tokens = PoisonedTokens(rows);
  Tensor ids = cuda::EmptyDevice(DType::kI32, {rows, k});
  Tensor logprobs = cuda::EmptyDevice(DType::kF32, {rows, k});
  cuda::Workspace workspace(1 << 20);
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  cudaGraph_t graph;
  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  cuda::Sample(device_logits, metadata, tokens, workspace, stream);
  cuda::TopKLogprobs(device_logits, k, ids, logprobs, workspace, stream);
  ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
  cudaGraphExec_t exec;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  std::vector<float> all(vocab);
  for (int replay = 0; replay < 4; ++replay) {
    draws = Draws(rows, rng, 3, false);  // the same filters, new seeds and positions
    const HostDraws h = ToHostTensors(draws);
    ASSERT_EQ(cudaMemcpy(metadata.seed.raw_data(), h.seed.raw_data(), h.seed.nbytes(), cudaMemcpyHostToDevice),
              cudaSuccess);
    ASSERT_EQ(cudaMemcpy(metadata.position.raw_data(), h.position.raw_data(), h.position.nbytes(),
                         cudaMemcpyHostToDevice),
              cudaSuccess);
    ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    std::string report;
    EXPECT_EQ(CompareWithCpu(logits, draws, TokensOf(tokens), "graph replay " + std::to_string(replay), report), 0)
        << report;
    const Tensor got_ids = cuda::ToHost(ids);
    for (int64_t r = 0; r < rows; ++r) {
      cpu::LogSoftmax(Row(logits, r), all);
      const auto want = cpu::TopK(all, k);
      for (int j = 0; j < k; ++j) {
        EXPECT_EQ(got_ids.data<int32_t>()[r * k + j], want[j].first)
            << "graph replay " << replay << " TopKLogprobs row " << r << " rank " << j;
      }
    }
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

TEST(CudaSampling, TopKLogprobsMatchCpuLogSoftmaxTopK) {
  ASSERT_GT(cuda::DeviceCount(), 0);
  std::mt19937 rng(15);
  for (int64_t vocab : kVocabs) {
    for (int64_t rows : kRows) {
      const Tensor logits = Logits(rows, vocab, rng, kAllPatterns);
      const Tensor device_logits = cuda::ToDevice(logits);
      for (int k : {1, 7, 64}) {
        Tensor ids = Tensor::Empty(DType::kI32, {rows, k});
        Tensor logprobs = Tensor::Empty(DType::kF32, {rows, k});
        for (int32_t& v : ids.span<int32_t>()) v = -7;  // poison
        for (float& v : logprobs.span<float>()) v = 1e30f;
        Tensor device_ids = cuda::ToDevice(ids), device_logprobs = cuda::ToDevice(logprobs);
        cuda::Workspace workspace(1 << 20);
        cuda::TopKLogprobs(device_logits, k, device_ids, device_logprobs, workspace);
        ids = cuda::ToHost(device_ids);
        logprobs = cuda::ToHost(device_logprobs);
        std::vector<float> all(vocab);
        for (int64_t r = 0; r < rows; ++r) {
          cpu::LogSoftmax(Row(logits, r), all);
          const auto want = cpu::TopK(all, k);
          for (int j = 0; j < k; ++j) {
            const std::string what = "TopKLogprobs " + std::to_string(rows) + "x" + std::to_string(vocab) +
                                     " k=" + std::to_string(k) + " row " + std::to_string(r) + " (pattern " +
                                     std::to_string(r % kAllPatterns.size()) + ") rank " + std::to_string(j);
            const int32_t got_id = ids.data<int32_t>()[r * k + j];
            const float got = logprobs.data<float>()[r * k + j];
            if (j >= static_cast<int>(want.size())) {  // k > V: padding
              EXPECT_EQ(got_id, -1) << what;
              EXPECT_EQ(got, -kInf) << what;
              continue;
            }
            const float w = want[j].second;
            ASSERT_EQ(got_id, want[j].first) << what << ": want logprob " << w << " got " << got;
            const bool close = (std::isnan(w) && std::isnan(got)) || w == got ||
                               std::abs(static_cast<double>(w) - got) <= 1e-5 * (1.0 + std::abs(w));
            ASSERT_TRUE(close) << what << " id " << got_id << ": want " << w << " got " << got;
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace lattice
