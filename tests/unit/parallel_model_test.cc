// Every parallel layout of every fixture model, in one process on the thread
// backend, gives one rank's tokens and logprobs: TP (heads, KV replication, vocab
// padding, MLP and expert slices), PP (stages, micro-batches in flight), EP (experts
// over ranks, all-to-all dispatch) and DP attention (per-rank batches and KV).
#include <gtest/gtest.h>

#include <filesystem>
#include <thread>

#include "parallel/rank_layout.h"
#include "cli/offline_engine.h"
#include "worker/layout.h"

namespace lattice {
namespace {

namespace fs = std::filesystem;

std::string FixtureDir(const std::string& name) {
  return std::string(LATTICE_SOURCE_DIR) + "/tests/fixtures/models/" + name;
}

std::vector<GenerationRequest> Requests(int64_t vocab) {
  std::vector<GenerationRequest> requests;
  for (int n : {5, 19, 33, 2, 12}) {
    GenerationRequest r;
    r.sampling = DefaultSampling();
    for (int i = 0; i < n; ++i)
      r.prompt_ids.push_back(static_cast<int32_t>(3 + (i * 53 + n * 7) % (vocab - 3)));
    r.max_tokens = 7;
    r.ignore_eos = true;
    r.num_logprobs = 5;
    // One sampled request: seeded sampling must not depend on the layout either.
    if (n == 12) {
      r.sampling.set_temperature(0.8f);
      r.sampling.set_top_p(0.9f);
      r.sampling.set_seed(77);
    }
    requests.push_back(r);
  }
  return requests;
}

// Communicators for every rank of `layout`, one thread group per group of ranks.
struct ThreadGroups {
  std::vector<std::unique_ptr<Communicator>> owned;
  std::vector<RankComms> ranks;

  explicit ThreadGroups(const RankLayout& layout) : ranks(layout.world_size()) {
    Assign({[&] {
             std::vector<int> all(layout.world_size());
             for (int r = 0; r < layout.world_size(); ++r) all[r] = r;
             return std::vector<std::vector<int>>{all};
           }()},
           &RankComms::world);
    Assign(layout.TpGroups(), &RankComms::tp);
    Assign(layout.PpGroups(), &RankComms::pp);
    Assign(layout.EpGroups(), &RankComms::ep);
  }

  void Assign(const std::vector<std::vector<int>>& groups, Communicator* RankComms::*member) {
    for (const std::vector<int>& group : groups) {
      std::vector<std::unique_ptr<Communicator>> comms =
          MakeThreadCommunicators(static_cast<int>(group.size()));
      for (size_t i = 0; i < group.size(); ++i) {
        ranks[group[i]].*member = comms[i].get();
        owned.push_back(std::move(comms[i]));
      }
    }
  }
};

struct LayoutRun {
  std::vector<GenerationResult> results;
  std::vector<std::vector<TraceEvent>> traces;  // per rank
};

LayoutRun RunLayout(const std::string& dir, const ModelConfig& config,
                    const ParallelConfig& parallel, const DistributedOptions& options,
                    const std::vector<GenerationRequest>& requests) {
  absl::StatusOr<RankLayout> layout = RankLayout::Create(parallel.world_size(), parallel);
  EXPECT_TRUE(layout.ok()) << layout.status();
  EXPECT_TRUE(ValidateLayoutForModel(config, parallel, options.pp_layers).ok());
  ThreadGroups groups(*layout);
  std::vector<std::unique_ptr<DecoderModel>> models(layout->world_size());
  for (int r = 0; r < layout->world_size(); ++r) {
    absl::StatusOr<std::unique_ptr<DecoderModel>> model =
        DecoderModel::Load(dir, config, ShardFor(config, *layout, r, options.pp_layers));
    EXPECT_TRUE(model.ok()) << model.status();
    models[r] = std::move(*model);
  }
  LayoutRun run;
  run.traces.resize(layout->world_size());
  std::vector<std::thread> followers;
  for (int r = 1; r < layout->world_size(); ++r) {
    followers.emplace_back([&, r] {
      EXPECT_TRUE(
          RunFollower(*models[r], *layout, r, groups.ranks[r], options, &run.traces[r]).ok());
    });
  }
  absl::StatusOr<DriverResult> driven =
      RunDriver(*models[0], *layout, groups.ranks[0], options, requests, &run.traces[0]);
  for (std::thread& t : followers) t.join();
  EXPECT_TRUE(driven.ok()) << driven.status();
  if (driven.ok()) run.results = std::move(driven->results);
  return run;
}

void ExpectSameAsOneRank(const std::vector<GenerationResult>& want,
                         const std::vector<GenerationResult>& got, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_EQ(got[i].output_ids, want[i].output_ids) << what << " request " << i;
    ASSERT_EQ(got[i].logprobs.size(), want[i].logprobs.size()) << what;
    for (size_t t = 0; t < want[i].logprobs.size(); ++t) {
      for (size_t k = 0; k < want[i].logprobs[t].size(); ++k) {
        EXPECT_NEAR(got[i].logprobs[t][k].second, want[i].logprobs[t][k].second, 1e-4)
            << what << " request " << i << " token " << t << " rank " << k;
      }
    }
  }
}

struct Layout {
  const char* name;
  ParallelConfig parallel;
  bool moe_only;
};

const Layout kLayouts[] = {
    {"tp2", {.tp = 2}, false},
    {"tp4", {.tp = 4}, false},
    {"pp2", {.pp = 2}, false},
    {"pp3", {.pp = 3}, false},
    {"tp2xpp2", {.tp = 2, .pp = 2}, false},
    {"dp2", {.dp = 2}, false},
    {"ep2", {.tp = 2, .ep = 2}, true},
    {"ep4", {.tp = 4, .ep = 4}, true},
    {"dp2xtp1xep2", {.tp = 1, .dp = 2, .ep = 2}, true},
    {"dp2xtp2xep4", {.tp = 2, .dp = 2, .ep = 4}, true},
};

class ParallelModelTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ParallelModelTest, EveryLayoutMatchesOneRank) {
  const std::string dir = FixtureDir(GetParam());
  absl::StatusOr<ModelConfig> config = LoadModelConfig(dir);
  ASSERT_TRUE(config.ok()) << config.status();
  const std::vector<GenerationRequest> requests = Requests(config->vocab_size);
  DistributedOptions options;
  options.engine.num_kv_blocks = 64;
  options.engine.block_size = 8;
  // One rank, through the same driver.
  const LayoutRun reference = RunLayout(dir, *config, {}, options, requests);
  ASSERT_EQ(reference.results.size(), requests.size());
  for (const Layout& layout : kLayouts) {
    if (layout.moe_only && config->num_experts == 0) continue;
    if (layout.parallel.pp > config->num_hidden_layers) continue;
    SCOPED_TRACE(layout.name);
    const LayoutRun run = RunLayout(dir, *config, layout.parallel, options, requests);
    ExpectSameAsOneRank(reference.results, run.results, layout.name);
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ParallelModelTest,
                         ::testing::Values("llama_gqa_f32", "llama_mqa_tied_bf16",
                                           "llama_linear_headdim_f32", "llama_dynamic_f32",
                                           "mistral_swa_bf16", "qwen2_tied_swa_f16",
                                           "qwen3_yarn_bf16", "mixtral_f32", "qwen2moe_shared_bf16",
                                           "qwen3moe_sharded_f32"),
                         [](const auto& info) { return info.param; });

TEST(ParallelModel, DriverMatchesTheInProcessEngine) {
  const std::string dir = FixtureDir("qwen2moe_shared_bf16");
  absl::StatusOr<ModelConfig> config = LoadModelConfig(dir);
  ASSERT_TRUE(config.ok());
  const std::vector<GenerationRequest> requests = Requests(config->vocab_size);
  EngineOptions engine_options;
  engine_options.num_kv_blocks = 64;
  engine_options.block_size = 8;
  absl::StatusOr<std::unique_ptr<DecoderModel>> model = DecoderModel::Load(dir, *config);
  ASSERT_TRUE(model.ok());
  Engine engine(**model, engine_options);
  absl::StatusOr<std::vector<GenerationResult>> want = engine.Generate(requests);
  ASSERT_TRUE(want.ok());
  DistributedOptions options;
  options.engine = engine_options;
  const LayoutRun run = RunLayout(dir, *config, {}, options, requests);
  ExpectSameAsOneRank(*want, run.results, "driver, one rank");
}

TEST(ParallelModel, MicroBatchesOverlapAcrossStages) {
  const std::string dir = FixtureDir("qwen2moe_shared_bf16");
  absl::StatusOr<ModelConfig> config = LoadModelConfig(dir);
  ASSERT_TRUE(config.ok());
  std::vector<GenerationRequest> requests;
  for (int i = 0; i < 8; ++i) {
    GenerationRequest r;
    r.sampling = DefaultSampling();
    for (int t = 0; t < 40; ++t) r.prompt_ids.push_back(3 + (i * 31 + t * 7) % 500);
    r.max_tokens = 6;
    r.ignore_eos = true;
    requests.push_back(r);
  }
  DistributedOptions options;
  options.engine.num_kv_blocks = 64;
  options.engine.max_num_seqs = 2;  // several micro-batches' worth of sequences
  options.num_micro_batches = 2;
  const LayoutRun run = RunLayout(dir, *config, {.pp = 2}, options, requests);
  ASSERT_EQ(run.results.size(), requests.size());
  const std::vector<TraceEvent>& stage0 = run.traces[0];
  const std::vector<TraceEvent>& stage1 = run.traces[1];
  ASSERT_EQ(stage0.size(), stage1.size());
  // Stage 0 starts step s+1 before stage 1 finishes step s: the pipeline is full.
  int overlaps = 0;
  for (size_t s = 0; s + 1 < stage0.size(); ++s) {
    ASSERT_EQ(stage0[s].step, stage1[s].step);
    if (stage0[s + 1].begin_ns < stage1[s].end_ns) ++overlaps;
  }
  EXPECT_GT(overlaps, 0);
  // Two micro-batch slots alternate.
  EXPECT_NE(stage0[0].micro_batch, stage0[1].micro_batch);
}

}  // namespace
}  // namespace lattice
