// The engine in-process on a fixture model: block accounting, validation, and
// that the scheduler's choices (budget, block size, cache size) never change tokens.
#include "cli/offline_engine.h"

#include <gtest/gtest.h>

#include "tests/unit/fixture_model.h"
#include "worker/model.h"

namespace lattice {
namespace {

class EngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { model_ = testing::LoadFixtureModel("mixtral_f32"); }
  static void TearDownTestSuite() { delete model_; }

  static std::vector<GenerationRequest> Requests() {
    std::vector<GenerationRequest> requests;
    for (int n : {3, 17, 30, 1}) {
      GenerationRequest r;
      r.sampling = DefaultSampling();
      for (int i = 0; i < n; ++i) r.prompt_ids.push_back(3 + (i * 37 + n) % 500);
      r.max_tokens = 6 + n % 5;
      r.ignore_eos = true;
      r.num_logprobs = 2;
      r.sampling.set_temperature(n == 17 ? 0.9f : 0.0f);
      r.sampling.set_seed(11);
      requests.push_back(r);
    }
    return requests;
  }

  static std::vector<GenerationResult> RunWith(EngineOptions options, int32_t* used_after = nullptr,
                                               SchedulerStats* stats = nullptr) {
    Engine engine(*model_, options);
    absl::StatusOr<std::vector<GenerationResult>> results = engine.Generate(Requests());
    EXPECT_TRUE(results.ok()) << results.status();
    if (used_after) *used_after = engine.num_used_blocks();
    if (stats) *stats = engine.stats();
    return results.ok() ? *results : std::vector<GenerationResult>{};
  }

  static DecoderModel* model_;
};

DecoderModel* EngineTest::model_ = nullptr;

TEST_F(EngineTest, EveryBlockIsFreedAndSchedulingNeverChangesTokens) {
  EngineOptions roomy;
  roomy.num_kv_blocks = 64;
  roomy.block_size = 16;
  int32_t used_after = -1;
  const std::vector<GenerationResult> reference = RunWith(roomy, &used_after);
  ASSERT_EQ(reference.size(), 4u);
  EXPECT_EQ(used_after, 0);
  for (const GenerationResult& r : reference) EXPECT_EQ(r.logprobs.size(), r.output_ids.size());

  struct Variant {
    const char* name;
    EngineOptions options;
  };
  std::vector<Variant> variants;
  variants.push_back({"budget 4", roomy});
  variants.back().options.max_num_batched_tokens = 4;
  variants.push_back({"block size 3", roomy});
  variants.back().options.block_size = 3;
  variants.push_back({"one sequence at a time", roomy});
  variants.back().options.max_num_seqs = 1;
  variants.push_back({"3 blocks", roomy});
  variants.back().options.num_kv_blocks = 3;
  variants.push_back({"no prefix caching", roomy});
  variants.back().options.enable_prefix_caching = false;
  for (const Variant& v : variants) {
    SchedulerStats stats;
    const std::vector<GenerationResult> got = RunWith(v.options, &used_after, &stats);
    EXPECT_EQ(used_after, 0) << v.name;
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
  options.num_kv_blocks = 4;
  Engine engine(*model_, options);
  GenerationRequest ok;
  ok.sampling = DefaultSampling();
  ok.prompt_ids = {1, 2, 3};
  EXPECT_TRUE(engine.Validate(ok).ok());

  GenerationRequest r = ok;
  r.prompt_ids.clear();
  EXPECT_EQ(engine.Validate(r).code(), absl::StatusCode::kInvalidArgument);
  r = ok;
  r.prompt_ids[1] = -1;
  EXPECT_NE(engine.Validate(r).message().find("prompt_ids[1]"), std::string::npos);
  r = ok;
  r.sampling.set_top_k(-2);
  EXPECT_NE(engine.Validate(r).message().find("top_k"), std::string::npos);
  r = ok;
  r.sampling.set_min_p(2);
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
  EXPECT_EQ(engine.num_used_blocks(), 0);
}

}  // namespace
}  // namespace lattice

namespace lattice {
namespace {

TEST_F(EngineTest, ASharedPrefixComesFromTheCacheAndChangesNothing) {
  EngineOptions options;
  options.num_kv_blocks = 32;
  options.block_size = 4;
  Engine cached(*model_, options);
  options.enable_prefix_caching = false;
  Engine uncached(*model_, options);
  GenerationRequest first;
  first.sampling = DefaultSampling();
  for (int i = 0; i < 30; ++i) first.prompt_ids.push_back(5 + i * 3);
  first.max_tokens = 5;
  first.ignore_eos = true;
  first.num_logprobs = 3;
  GenerationRequest second = first;
  second.prompt_ids.resize(26);  // shares 6 full blocks of 4 with the first
  second.prompt_ids.push_back(499);

  ASSERT_TRUE(cached.Generate({first}).ok());
  const absl::StatusOr<std::vector<GenerationResult>> hit = cached.Generate({second});
  const absl::StatusOr<std::vector<GenerationResult>> miss = uncached.Generate({second});
  ASSERT_TRUE(hit.ok() && miss.ok());
  EXPECT_EQ((*hit)[0].num_cached_tokens, 24);
  EXPECT_EQ((*miss)[0].num_cached_tokens, 0);
  EXPECT_EQ((*hit)[0].output_ids, (*miss)[0].output_ids);
  for (size_t t = 0; t < (*hit)[0].logprobs.size(); ++t) {
    EXPECT_NEAR((*hit)[0].logprobs[t][0].second, (*miss)[0].logprobs[t][0].second, 1e-5);
  }
  // 30 + 4 decodes for the first request; then 3 + 4 for the second instead of 27 + 4.
  EXPECT_EQ(cached.stats().num_computed_tokens, 34 + 7);
  EXPECT_EQ(uncached.stats().num_computed_tokens, 31);
  EXPECT_GT(cached.stats().prefix_cache_hits, 0);
  EXPECT_EQ(cached.num_used_blocks(), 0);
}

}  // namespace
}  // namespace lattice
