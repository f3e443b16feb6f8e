// The sequence-dependent sampling controls on the GPU (penalties, min_tokens,
// logit_bias). cuda::ApplyLogitAdjustments against cpu::ApplyLogitAdjustments on random
// rows with random entry lists: bit for bit, with guard rows around the logits that no
// write may reach. Then the whole worker path on a fixture model: SequenceTable and
// ModelRunner over the CUDA model (prefill eagerly, decode steps replaying graphs, the
// adjustments after the replay) pick the CPU runner's tokens for rows with and without
// the controls, greedy and seeded. Runs on the GPU machine.
#include <algorithm>
#include <cstring>
#include <limits>
#include <random>
#include <span>
#include <vector>

#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include "kernels/cpu/ops.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/ops.h"
#include "parallel/communicator.h"
#include "tests/e2e/fixtures.h"
#include "worker/cuda/cuda_model.h"
#include "worker/model_runner.h"
#include "worker/sequence_table.h"

namespace lattice {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

std::vector<cpu::LogitAdjustment> RandomEntries(int64_t vocab, std::mt19937& rng) {
  std::uniform_int_distribution<int64_t> size(0, std::min<int64_t>(vocab, 300));
  std::vector<int32_t> tokens(vocab);
  for (int64_t i = 0; i < vocab; ++i) tokens[i] = static_cast<int32_t>(i);
  std::shuffle(tokens.begin(), tokens.end(), rng);
  tokens.resize(size(rng));
  std::uniform_int_distribution<int> count(0, 6), coin(0, 9);
  std::uniform_real_distribution<float> bias(-100.0f, 100.0f);
  std::vector<cpu::LogitAdjustment> entries;
  for (int32_t t : tokens) {
    cpu::LogitAdjustment e;
    e.token = t;
    e.output_count = coin(rng) < 5 ? 0 : count(rng);
    e.in_prompt = coin(rng) < 5;
    e.masked = coin(rng) == 0;
    e.bias = coin(rng) < 6 ? 0.0f : bias(rng);
    entries.push_back(e);
  }
  return entries;
}

TEST(CudaLogitAdjustments, MatchTheCpuBitForBit) {
  ASSERT_GT(cuda::DeviceCount(), 0);
  std::mt19937 rng(2024);
  std::normal_distribution<float> normal(0.0f, 4.0f);
  std::uniform_real_distribution<float> rep(0.3f, 2.5f), penalty(-2.0f, 2.0f);
  for (int64_t vocab : {1, 7, 769, 5125, 32000, 151936}) {
    for (int64_t rows : {1, 3, 64}) {
      // Guard rows 0 and rows + 1 (NaN) around the logits.
      Tensor host = Tensor::Empty(DType::kF32, {rows + 2, vocab});
      float* all = host.data<float>();
      for (int64_t i = 0; i < (rows + 2) * vocab; ++i) all[i] = normal(rng);
      for (int64_t i = 0; i < vocab; ++i) all[i] = all[(rows + 1) * vocab + i] = std::nanf("");
      for (int64_t i = 0; i < rows * vocab; i += 97) all[vocab + i] = -kInf;
      std::vector<std::vector<cpu::LogitAdjustment>> entries(rows);
      std::vector<float> penalties;
      std::vector<int32_t> packed;
      Tensor want = host.Clone();
      for (int64_t r = 0; r < rows; ++r) {
        entries[r] = RandomEntries(vocab, rng);
        const cpu::PenaltyParams p = {rep(rng), penalty(rng), penalty(rng)};
        penalties.insert(penalties.end(), {p.repetition_penalty, p.presence_penalty, p.frequency_penalty});
        cpu::ApplyLogitAdjustments(std::span<float>(want.data<float>() + (r + 1) * vocab, vocab), p, entries[r]);
        const size_t at = packed.size();
        packed.resize(at + entries[r].size() * cuda::kLogitAdjustmentWords);
        cuda::PackLogitAdjustments(entries[r], static_cast<int32_t>(r), packed.data() + at);
      }
      const int64_t n = static_cast<int64_t>(packed.size()) / cuda::kLogitAdjustmentWords;
      Tensor device = cuda::ToDevice(host);
      Tensor logits = device.Slice(1, rows + 1);
      Tensor entries_host = Tensor::Empty(DType::kI32, {n, cuda::kLogitAdjustmentWords});
      std::copy(packed.begin(), packed.end(), entries_host.data<int32_t>());
      Tensor penalties_host = Tensor::FromVector(penalties, {rows, 3});
      const Tensor entries_device = n > 0 ? cuda::ToDevice(entries_host) : cuda::EmptyDevice(DType::kI32, {0, 4});
      cuda::ApplyLogitAdjustments(logits, entries_device, cuda::ToDevice(penalties_host));
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      const Tensor got = cuda::ToHost(device);
      ASSERT_EQ(std::memcmp(got.raw_data(), want.raw_data(), want.nbytes()), 0) << "vocab " << vocab << " rows " << rows;
    }
  }
}

// ---- the worker path on a model ----

constexpr int32_t kBlockSize = 16;
constexpr int32_t kBlocksPerSeq = 4;
constexpr int kSteps = 10;

pb::SamplingParams Controls(int variant) {
  pb::SamplingParams s;
  s.set_top_p(1.0f);
  s.set_temperature(variant % 2 == 1 ? 0.9f : 0.0f);
  s.set_seed(100 + variant);
  if (variant >= 2) {
    s.set_repetition_penalty(1.4f);
    s.set_frequency_penalty(0.7f);
    s.set_presence_penalty(0.3f);
    s.set_min_tokens(4);
    s.add_min_tokens_stop_ids(2);
    (*s.mutable_logit_bias())[17] = 2.5f;
    (*s.mutable_logit_bias())[494] = -5.0f;
  }
  return s;
}

// Generates kSteps tokens for every prompt through a SequenceTable and `runner`: step 0
// sends each sequence new and whole, later steps one decode token each.
std::vector<std::vector<int32_t>> Generate(ModelRunner& runner, const std::vector<std::vector<int32_t>>& prompts) {
  SequenceTable table(0, kBlockSize, 1 + static_cast<int32_t>(prompts.size()) * kBlocksPerSeq);
  std::vector<std::vector<int32_t>> out(prompts.size());
  std::vector<int32_t> last(prompts.size());
  for (int step = 0; step < kSteps; ++step) {
    pb::StepRequest request;
    request.set_step(step);
    pb::DpBatch* batch = request.add_dp();
    for (size_t i = 0; i < prompts.size(); ++i) {
      pb::ScheduledSequence* s = batch->add_sequences();
      s->set_seq_id(static_cast<int64_t>(i));
      s->set_sample(true);
      if (step == 0) {
        s->set_is_new(true);
        s->mutable_token_ids()->Add(prompts[i].begin(), prompts[i].end());
        for (int32_t b = 0; b < kBlocksPerSeq; ++b) s->add_block_ids(1 + static_cast<int32_t>(i) * kBlocksPerSeq + b);
        *s->mutable_sampling() = Controls(static_cast<int>(i / 3));
        s->set_num_prompt_tokens(static_cast<int32_t>(prompts[i].size()));
      } else {
        s->set_start_position(static_cast<int32_t>(prompts[i].size()) + step - 1);
        s->add_token_ids(last[i]);
      }
    }
    absl::StatusOr<std::vector<ScheduledChunk>> chunks = table.Apply(request);
    EXPECT_TRUE(chunks.ok()) << chunks.status();
    if (!chunks.ok()) return out;
    for (const SampledToken& t : runner.Execute(step, 0, *chunks)) {
      out[t.seq_id].push_back(t.token);
      last[t.seq_id] = t.token;
    }
  }
  return out;
}

TEST(CudaLogitAdjustments, TheCudaRunnerPicksTheCpuRunnersTokens) {
  ASSERT_GT(cuda::DeviceCount(), 0);
  const std::string dir = testing::FixturesDir() / "llama_linear_headdim_f32";
  const absl::StatusOr<ModelConfig> config = LoadModelConfig(dir);
  ASSERT_TRUE(config.ok()) << config.status();
  const absl::StatusOr<std::unique_ptr<DecoderModel>> cpu = DecoderModel::Load(dir, *config);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  const nlohmann::json expected = testing::ReadJson(testing::FixturesDir() / "llama_linear_headdim_f32" / "expected.json");
  // Every prompt under every variant: sequence i is prompt i % 3 under variant i / 3.
  std::vector<std::vector<int32_t>> prompts;
  for (int variant = 0; variant < 4; ++variant) {
    for (const auto& p : expected["prompts"]) prompts.push_back(p["prompt_ids"].get<std::vector<int32_t>>());
  }
  const int32_t num_blocks = 1 + static_cast<int32_t>(prompts.size()) * kBlocksPerSeq;

  std::unique_ptr<Communicator> solo = MakeSoloCommunicator();
  ModelRunner cpu_runner(**cpu, {.num_blocks = num_blocks, .block_size = kBlockSize},
                         RunnerPlacement{solo.get(), solo.get(), nullptr});
  const std::vector<std::vector<int32_t>> want = Generate(cpu_runner, prompts);

  ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  CudaPlacement placement;
  placement.tp = solo.get();
  placement.stream = stream;
  CudaModelOptions options;
  options.dtype = DType::kF32;
  options.max_num_tokens = 256;
  options.max_num_seqs = 16;
  options.max_model_len = kBlocksPerSeq * kBlockSize;
  options.num_kv_blocks = num_blocks;
  absl::StatusOr<std::unique_ptr<CudaModel>> gpu = CudaModel::FromShard(**cpu, options, placement);
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  (*gpu)->InitializeCache();
  ModelRunner gpu_runner(**gpu, kBlockSize, 0);
  const std::vector<std::vector<int32_t>> got = Generate(gpu_runner, prompts);
  EXPECT_GT((*gpu)->num_graph_replays(), 0);
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(got[i], want[i]) << "sequence " << i << ": prompt " << i % 3 << ", variant " << i / 3;
    ASSERT_EQ(want[i].size(), static_cast<size_t>(kSteps));
  }
  // The controls changed the greedy tokens (prompt 0 alone repeats token 494 ten times).
  EXPECT_NE(want[6], want[0]);
  EXPECT_EQ(std::count(want[6].begin(), want[6].end(), 494), 0);
  gpu->reset();
  cudaStreamDestroy(stream);
}

}  // namespace
}  // namespace lattice
