// The engine in-process on a fixture model: block accounting, validation, and
// that the scheduler's choices (budget, block size, cache size) never change tokens.
#include "worker/engine.h"

#include <gtest/gtest.h>

#include "worker/model.h"

namespace lattice {
namespace {

class EngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string dir = std::string(LATTICE_SOURCE_DIR) + "/tests/fixtures/models/mixtral_f32";
    absl::StatusOr<ModelConfig> config = LoadModelConfig(dir);
    ASSERT_TRUE(config.ok()) << config.status();
    absl::StatusOr<std::unique_ptr<DecoderModel>> model = DecoderModel::Load(dir, *config);
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = model->release();
  }
  static void TearDownTestSuite() { delete model_; }

  static std::vector<GenerationRequest> Requests() {
    std::vector<GenerationRequest> requests;
    for (int n : {3, 17, 30, 1}) {
      GenerationRequest r;
      for (int i = 0; i < n; ++i) r.prompt_ids.push_back(3 + (i * 37 + n) % 500);
      r.max_tokens = 6 + n % 5;
      r.ignore_eos = true;
      r.num_logprobs = 2;
      r.sampling.temperature = n == 17 ? 0.9f : 0.0f;
      r.sampling.seed = 11;
      requests.push_back(r);
    }
    return requests;
  }

  static std::vector<GenerationResult> RunWith(EngineOptions options, int32_t* free_after = nullptr,
                                               EngineStats* stats = nullptr) {
    Engine engine(*model_, options);
    absl::StatusOr<std::vector<GenerationResult>> results = engine.Generate(Requests());
    EXPECT_TRUE(results.ok()) << results.status();
    if (free_after) *free_after = engine.num_free_blocks();
    if (stats) *stats = engine.stats();
    return results.ok() ? *results : std::vector<GenerationResult>{};
  }

  static DecoderModel* model_;
};

DecoderModel* EngineTest::model_ = nullptr;

TEST_F(EngineTest, EveryBlockIsFreedAndSchedulingNeverChangesTokens) {
  EngineOptions roomy;
  roomy.kv_cache = {.num_blocks = 64, .block_size = 16};
  int32_t free_after = -1;
  const std::vector<GenerationResult> reference = RunWith(roomy, &free_after);
  ASSERT_EQ(reference.size(), 4u);
  EXPECT_EQ(free_after, 64);
  for (const GenerationResult& r : reference) EXPECT_EQ(r.logprobs.size(), r.output_ids.size());

  struct Variant {
    const char* name;
    EngineOptions options;
  };
  std::vector<Variant> variants;
  variants.push_back({"budget 4", roomy});
  variants.back().options.max_num_batched_tokens = 4;
  variants.push_back({"block size 3", roomy});
  variants.back().options.kv_cache.block_size = 3;
  variants.push_back({"one sequence at a time", roomy});
  variants.back().options.max_num_seqs = 1;
  variants.push_back({"3 blocks", roomy});
  variants.back().options.kv_cache = {.num_blocks = 3, .block_size = 16};
  for (const Variant& v : variants) {
    EngineStats stats;
    const std::vector<GenerationResult> got = RunWith(v.options, &free_after, &stats);
    EXPECT_EQ(free_after, v.options.kv_cache.num_blocks) << v.name;
    ASSERT_EQ(got.size(), reference.size()) << v.name;
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].output_ids, reference[i].output_ids) << v.name << " request " << i;
      ASSERT_EQ(got[i].logprobs.size(), reference[i].logprobs.size());
      for (size_t t = 0; t < got[i].logprobs.size(); ++t) {
        EXPECT_EQ(got[i].logprobs[t][0].first, reference[i].logprobs[t][0].first);
        EXPECT_NEAR(got[i].logprobs[t][0].second, reference[i].logprobs[t][0].second, 1e-4);
      }
    }
    if (std::string(v.name) == "budget 4") {
      EXPECT_LE(stats.max_tokens_in_step, 4);
    }
    if (std::string(v.name) == "3 blocks") {
      EXPECT_GT(stats.num_preemptions, 0);
    }
  }
}

TEST_F(EngineTest, ValidationNamesTheProblem) {
  EngineOptions options;
  options.kv_cache = {.num_blocks = 4, .block_size = 16};
  Engine engine(*model_, options);
  GenerationRequest ok;
  ok.prompt_ids = {1, 2, 3};
  EXPECT_TRUE(engine.Validate(ok).ok());

  GenerationRequest r = ok;
  r.prompt_ids.clear();
  EXPECT_EQ(engine.Validate(r).code(), absl::StatusCode::kInvalidArgument);
  r = ok;
  r.prompt_ids[1] = -1;
  EXPECT_NE(engine.Validate(r).message().find("prompt_ids[1]"), std::string::npos);
  r = ok;
  r.sampling.top_k = -2;
  EXPECT_NE(engine.Validate(r).message().find("top_k"), std::string::npos);
  r = ok;
  r.sampling.min_p = 2;
  EXPECT_NE(engine.Validate(r).message().find("min_p"), std::string::npos);
  r = ok;
  r.num_logprobs = 100000;
  EXPECT_NE(engine.Validate(r).message().find("logprobs"), std::string::npos);
  r = ok;
  r.max_tokens = 62;  // 65 tokens: 5 blocks of 16, the cache has 4
  EXPECT_EQ(engine.Validate(r).code(), absl::StatusCode::kResourceExhausted);

  // One bad request rejects the whole call before anything runs.
  std::vector<GenerationRequest> batch = {ok, r};
  absl::StatusOr<std::vector<GenerationResult>> results = engine.Generate(batch);
  ASSERT_FALSE(results.ok());
  EXPECT_NE(results.status().message().find("request 1"), std::string::npos);
  EXPECT_EQ(engine.num_free_blocks(), 4);
}

}  // namespace
}  // namespace lattice
