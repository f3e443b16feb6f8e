// Every fixture model on the GPU against the CPU reference: the prompts of its
// expected.json generated greedily together (one batch: varlen prefill, then decode
// steps that replay CUDA graphs), on one GPU and, where two are present, as tp2, pp2
// and (MoE) ep2 and dp2 ep2 (data-parallel attention: each DP rank its own prompts and
// steps, one of them empty), with one thread per GPU and the worker's NCCL groups; dp2
// tp2 ep4 where four are present. The first 8 tokens must equal the
// CPU's and the top-5 logprobs agree within the tolerance of the activations' dtype:
// run in f32 (every checkpoint upcast) the GPU path must agree to 2e-3, which pins the
// code down; in the checkpoint's 16-bit dtype every op's output is rounded as in any
// bf16/f16 engine, which through 4 layers of these random models moves logprobs by up
// to ~0.2 (bf16) and ~0.03 (f16), so the bounds there are 0.3 and 0.06.
#include <algorithm>
#include <map>
#include <thread>

#include <gtest/gtest.h>
#include <nccl.h>

#include "kernels/cuda/device.h"
#include "parallel/nccl/nccl_communicator.h"
#include "tests/e2e/fixtures.h"
#include "worker/cuda/cuda_model.h"
#include "worker/layout.h"

namespace lattice {
namespace {

constexpr int kNumTokens = 8;
constexpr int kTopLogprobs = 5;
constexpr int32_t kBlockSize = 16;

struct Generated {
  std::vector<std::vector<int32_t>> tokens;  // per prompt
  std::vector<std::vector<std::vector<std::pair<int32_t, float>>>> logprobs;  // per prompt, per token
};

std::vector<std::vector<int32_t>> Prompts(const std::string& fixture) {
  const nlohmann::json expected = testing::ReadJson(testing::FixturesDir() / fixture / "expected.json");
  std::vector<std::vector<int32_t>> prompts;
  for (const auto& p : expected["prompts"]) prompts.push_back(p["prompt_ids"].get<std::vector<int32_t>>());
  return prompts;
}

// The step that extends each sequence by `chunks[s]` at its current length; sequence s
// owns blocks [s * blocks_per_seq, (s + 1) * blocks_per_seq).
ForwardBatch MakeBatch(const std::vector<std::vector<int32_t>>& chunks, const std::vector<int32_t>& lengths,
                       int32_t blocks_per_seq) {
  ForwardBatch batch;
  batch.max_blocks_per_seq = blocks_per_seq;
  batch.query_start_loc.push_back(0);
  for (size_t s = 0; s < chunks.size(); ++s) {
    std::vector<int32_t> table(blocks_per_seq);
    for (int32_t b = 0; b < blocks_per_seq; ++b) table[b] = static_cast<int32_t>(s) * blocks_per_seq + b;
    for (size_t i = 0; i < chunks[s].size(); ++i) {
      const int32_t position = lengths[s] + static_cast<int32_t>(i);
      batch.token_ids.push_back(chunks[s][i]);
      batch.positions.push_back(position);
      batch.slot_mapping.push_back(SlotFor(table, kBlockSize, position));
    }
    batch.query_start_loc.push_back(batch.num_tokens());
    batch.seq_lens.push_back(lengths[s] + static_cast<int32_t>(chunks[s].size()));
    batch.block_tables.insert(batch.block_tables.end(), table.begin(), table.end());
    batch.logits_indices.push_back(batch.num_tokens() - 1);
  }
  return batch;
}

std::vector<std::pair<int32_t, float>> TopLogprobs(std::span<const float> logits) {
  std::vector<float> logprobs(logits.size());
  cpu::LogSoftmax(logits, logprobs);
  return cpu::TopK(logprobs, kTopLogprobs);
}

Generated GenerateOnCpu(const std::string& fixture, const std::vector<std::vector<int32_t>>& prompts) {
  const std::string dir = testing::FixturesDir() / fixture;
  const absl::StatusOr<ModelConfig> config = LoadModelConfig(dir);
  EXPECT_TRUE(config.ok()) << config.status();
  const absl::StatusOr<std::unique_ptr<DecoderModel>> model = DecoderModel::Load(dir, *config);
  EXPECT_TRUE(model.ok()) << model.status();
  const int32_t blocks_per_seq = 4;
  KvCache cache((*model)->kv_cache_shape(), {static_cast<int32_t>(prompts.size()) * blocks_per_seq, kBlockSize});
  Generated out;
  out.tokens.resize(prompts.size());
  out.logprobs.resize(prompts.size());
  std::vector<std::vector<int32_t>> chunks = prompts;
  std::vector<int32_t> lengths(prompts.size(), 0);
  for (int step = 0; step < kNumTokens; ++step) {
    const ForwardBatch batch = MakeBatch(chunks, lengths, blocks_per_seq);
    const Tensor logits = (*model)->Forward(batch, cache);
    const int64_t vocab = config->vocab_size;
    for (size_t s = 0; s < prompts.size(); ++s) {
      const std::span<const float> row(logits.data<float>() + s * vocab, vocab);
      const int32_t token = cpu::Sample(row, {}, 0);
      out.tokens[s].push_back(token);
      out.logprobs[s].push_back(TopLogprobs(row));
      lengths[s] += static_cast<int32_t>(chunks[s].size());
      chunks[s] = {token};
    }
  }
  return out;
}

struct Layout {
  int tp = 1, pp = 1, dp = 1;
  bool ep = false;   // experts over the stage's dp * tp ranks instead of TP-sliced
  bool f32 = false;  // activations in f32 whatever the checkpoint's dtype
  bool graphs = true;

  int world() const { return tp * pp * dp; }
  ParallelConfig config() const { return {.tp = tp, .pp = pp, .dp = dp, .ep = ep ? dp * tp : 1}; }
};

// One NCCL id per process group of more than one rank, by name ("tp.0", "ep.0", ...).
using GroupIds = std::map<std::string, ncclUniqueId>;

std::vector<std::pair<std::string, std::vector<std::vector<int>>>> GroupKinds(const RankLayout& layout) {
  return {{"tp", layout.TpGroups()}, {"pp", layout.PpGroups()}, {"dp", layout.DpGroups()}, {"ep", layout.EpGroups()}};
}

// `rank`'s communicator of one kind: NCCL over the group's id, solo for a group of one.
std::unique_ptr<Communicator> Join(const std::string& kind, const std::vector<std::vector<int>>& groups, int rank,
                                   const GroupIds& ids, cudaStream_t stream) {
  for (size_t g = 0; g < groups.size(); ++g) {
    const auto it = std::find(groups[g].begin(), groups[g].end(), rank);
    if (it == groups[g].end()) continue;
    if (groups[g].size() == 1) return MakeSoloCommunicator();
    return MakeNcclCommunicator(ids.at(kind + "." + std::to_string(g)), static_cast<int>(it - groups[g].begin()),
                                static_cast<int>(groups[g].size()), stream);
  }
  return nullptr;
}

// Prompt i belongs to DP rank i % dp, and DP rank d starts d steps late: so DP rank 1
// has no sequences in step 0 (its peers prefill) and DP rank 0 none in the last step
// (its peers decode).
bool OnDpRank(size_t prompt, int dp_rank, int dp) { return static_cast<int>(prompt) % dp == dp_rank; }
int NumSteps(int dp) { return kNumTokens + dp - 1; }

// One rank of the layout on GPU `rank`: returns what it sampled (TP rank 0 of the last
// stage, for its DP rank's prompts).
Generated RunRank(const std::string& fixture, const Layout& layout, int rank, const GroupIds& ids,
                  const std::vector<std::vector<int32_t>>& prompts) {
  EXPECT_EQ(cudaSetDevice(rank), cudaSuccess);
  cudaStream_t stream = nullptr;
  EXPECT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  const std::string dir = testing::FixturesDir() / fixture;
  const absl::StatusOr<ModelConfig> config = LoadModelConfig(dir);
  const absl::StatusOr<RankLayout> rank_layout = RankLayout::Create(layout.world(), layout.config());
  EXPECT_TRUE(rank_layout.ok()) << rank_layout.status();
  std::map<std::string, std::unique_ptr<Communicator>> comms;  // made in the same order on every rank
  for (const auto& [kind, groups] : GroupKinds(*rank_layout)) comms[kind] = Join(kind, groups, rank, ids, stream);
  const RankCoords coords = rank_layout->Coords(rank);
  CudaPlacement placement;
  placement.stream = stream;
  placement.tp = comms["tp"].get();
  placement.pp = layout.pp > 1 ? comms["pp"].get() : nullptr;
  if (layout.ep) {
    placement.ep = comms["ep"].get();
    placement.dp = layout.dp > 1 ? comms["dp"].get() : nullptr;
  }
  const ModelShard shard = ShardFor(*config, *rank_layout, rank, {});
  const absl::StatusOr<std::unique_ptr<DecoderModel>> cpu = DecoderModel::Load(dir, *config, shard);
  EXPECT_TRUE(cpu.ok()) << cpu.status();
  CudaModelOptions options;
  options.dtype = layout.f32 ? DType::kF32 : config->dtype;
  options.max_num_tokens = 256;
  options.max_num_seqs = 16;
  options.max_model_len = 64;
  options.num_kv_blocks = static_cast<int32_t>(prompts.size()) * 4;
  options.cuda_graphs = layout.graphs;
  absl::StatusOr<std::unique_ptr<CudaModel>> model = CudaModel::FromShard(**cpu, options, placement);
  EXPECT_TRUE(model.ok()) << model.status();
  (*model)->InitializeCache();

  std::vector<size_t> mine;  // this DP rank's prompts
  for (size_t i = 0; i < prompts.size(); ++i) {
    if (OnDpRank(i, coords.dp_rank, layout.dp)) mine.push_back(i);
  }
  Generated out;
  out.tokens.resize(prompts.size());
  out.logprobs.resize(prompts.size());
  std::vector<std::vector<int32_t>> chunks;
  for (size_t i : mine) chunks.push_back(prompts[i]);
  std::vector<int32_t> lengths(mine.size(), 0);
  int64_t empty_steps = 0;
  for (int step = 0; step < NumSteps(layout.dp); ++step) {
    const bool active = step >= coords.dp_rank && step < coords.dp_rank + kNumTokens;
    const size_t n = active ? mine.size() : 0;
    empty_steps += n == 0;
    const ForwardBatch batch =
        MakeBatch(std::vector<std::vector<int32_t>>(chunks.begin(), chunks.begin() + n), lengths, 4);
    std::vector<SamplingRow> rows(n);
    for (size_t s = 0; s < n; ++s) {
      rows[s].position = lengths[s] + static_cast<int64_t>(chunks[s].size());
      rows[s].num_logprobs = kTopLogprobs;
    }
    const std::vector<DeviceSample> sampled = (*model)->Execute(batch, rows);
    if (n == 0) {
      EXPECT_TRUE(sampled.empty());
      continue;
    }
    // Every rank of the DP group follows the sampled tokens: TP rank 0 of the last stage
    // shares them over TP, then the last stage over the pipeline.
    Tensor tokens = Tensor::Empty(DType::kI32, {static_cast<int64_t>(n)});
    if ((*model)->samples()) {
      for (size_t s = 0; s < n; ++s) tokens.data<int32_t>()[s] = sampled[s].token;
    }
    if (layout.tp * layout.pp > 1) {
      Tensor device = cuda::ToDevice(tokens);
      if (layout.tp > 1) comms["tp"]->Broadcast(device, 0);
      if (layout.pp > 1) comms["pp"]->Broadcast(device, layout.pp - 1);
      cudaStreamSynchronize(stream);
      tokens = cuda::ToHost(device);
    }
    for (size_t s = 0; s < n; ++s) {
      const int32_t token = tokens.data<int32_t>()[s];
      out.tokens[mine[s]].push_back(token);
      if ((*model)->samples()) out.logprobs[mine[s]].push_back(sampled[s].logprobs);
      lengths[s] += static_cast<int32_t>(chunks[s].size());
      chunks[s] = {token};
    }
  }
  EXPECT_EQ(empty_steps, layout.dp - 1);
  if (options.cuda_graphs && !RopeDependsOnLength(RopeScalingFor(*config))) {
    EXPECT_GT((*model)->num_graph_replays(), 0);
  }
  if (!options.cuda_graphs) {
    EXPECT_EQ((*model)->num_graph_replays(), 0);
  }
  model->reset();
  comms.clear();
  cudaStreamDestroy(stream);
  return out;
}

double Tolerance(DType dtype) { return dtype == DType::kF32 ? 2e-3 : dtype == DType::kF16 ? 0.06 : 0.3; }

void Compare(const std::string& fixture, const Layout& layout) {
  const int world = layout.world();
  if (cuda::DeviceCount() < world) {
    GTEST_SKIP() << "needs " << world << " GPUs";
  }
  const std::vector<std::vector<int32_t>> prompts = Prompts(fixture);
  const Generated want = GenerateOnCpu(fixture, prompts);
  const absl::StatusOr<RankLayout> rank_layout = RankLayout::Create(world, layout.config());
  ASSERT_TRUE(rank_layout.ok()) << rank_layout.status();
  GroupIds ids;
  for (const auto& [kind, groups] : GroupKinds(*rank_layout)) {
    for (size_t g = 0; g < groups.size(); ++g) {
      if (groups[g].size() > 1) {
        ASSERT_EQ(ncclGetUniqueId(&ids[kind + "." + std::to_string(g)]), ncclSuccess);
      }
    }
  }
  std::vector<Generated> got(world);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] { got[r] = RunRank(fixture, layout, r, ids, prompts); });
  }
  for (std::thread& t : threads) t.join();
  const DType dtype = layout.f32 ? DType::kF32 : LoadModelConfig(testing::FixturesDir() / fixture)->dtype;
  double max_error = 0;
  for (size_t s = 0; s < prompts.size(); ++s) {
    // The sampler of the prompt's DP rank: TP rank 0 of the last stage.
    const int sampler = rank_layout->RankOf(layout.pp - 1, static_cast<int>(s) % layout.dp, 0);
    ASSERT_EQ(got[sampler].tokens[s], want.tokens[s]) << fixture << " prompt " << s;
    for (int i = 0; i < kNumTokens; ++i) {
      const auto& w = want.logprobs[s][i];
      const auto& g = got[sampler].logprobs[s][i];
      ASSERT_EQ(g.size(), w.size());
      for (size_t j = 0; j < w.size(); ++j) {
        max_error = std::max(max_error, static_cast<double>(std::abs(g[j].second - w[j].second)));
        EXPECT_NEAR(g[j].second, w[j].second, Tolerance(dtype))
            << fixture << " prompt " << s << " token " << i << " rank " << j;
      }
      EXPECT_EQ(g[0].first, w[0].first) << fixture << " prompt " << s << " token " << i;
    }
  }
  std::printf("%s %s%s%s %s: max |logprob - cpu| = %.2e\n", fixture.c_str(), layout.config().ToString().c_str(),
              layout.ep ? " (ep)" : "", layout.graphs ? "" : " eager", std::string(DTypeName(dtype)).c_str(),
              max_error);
}

bool IsMoe(const std::string& fixture) { return LoadModelConfig(testing::FixturesDir() / fixture)->num_experts > 0; }

class CudaModelTest : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaModelTest, OneGpuMatchesTheCpu) { Compare(GetParam(), {}); }
TEST_P(CudaModelTest, OneGpuInF32MatchesTheCpu) { Compare(GetParam(), {.f32 = true}); }
TEST_P(CudaModelTest, Tp2InF32MatchesTheCpu) { Compare(GetParam(), {.tp = 2, .f32 = true}); }
TEST_P(CudaModelTest, Tp2MatchesTheCpu) { Compare(GetParam(), {.tp = 2}); }
TEST_P(CudaModelTest, Pp2MatchesTheCpu) { Compare(GetParam(), {.pp = 2}); }
// EP with one DP group: prefill through the all-to-all dispatch, decode graphs through
// the experts-on-every-token path; eager, decode through the all-to-all too.
TEST_P(CudaModelTest, Ep2MatchesTheCpu) {
  if (!IsMoe(GetParam())) GTEST_SKIP() << "dense";
  Compare(GetParam(), {.tp = 2, .ep = true});
}
TEST_P(CudaModelTest, Ep2EagerInF32MatchesTheCpu) {
  if (!IsMoe(GetParam())) GTEST_SKIP() << "dense";
  Compare(GetParam(), {.tp = 2, .ep = true, .f32 = true, .graphs = false});
}
// Data-parallel attention: two DP ranks with their own batches share the experts; each
// is empty in one step (one eager, one replaying a decode graph).
TEST_P(CudaModelTest, Dp2Ep2MatchesTheCpu) {
  if (!IsMoe(GetParam())) GTEST_SKIP() << "dense";
  Compare(GetParam(), {.dp = 2, .ep = true});
}
TEST_P(CudaModelTest, Dp2Ep2InF32MatchesTheCpu) {
  if (!IsMoe(GetParam())) GTEST_SKIP() << "dense";
  Compare(GetParam(), {.dp = 2, .ep = true, .f32 = true});
}
TEST_P(CudaModelTest, Dp2Ep2EagerInF32MatchesTheCpu) {
  if (!IsMoe(GetParam())) GTEST_SKIP() << "dense";
  Compare(GetParam(), {.dp = 2, .ep = true, .f32 = true, .graphs = false});
}
// Four GPUs: two DP groups of tp2, experts over all four.
TEST_P(CudaModelTest, Dp2Tp2Ep4InF32MatchesTheCpu) {
  if (!IsMoe(GetParam())) GTEST_SKIP() << "dense";
  Compare(GetParam(), {.tp = 2, .dp = 2, .ep = true, .f32 = true});
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CudaModelTest, ::testing::ValuesIn(testing::FixtureNames()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace lattice
