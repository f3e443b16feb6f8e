// The sampling controls that depend on a sequence's own tokens (repetition, presence
// and frequency penalties, min_tokens, logit_bias), with vLLM's semantics: their exact
// effect on hand-made rows (closed forms), their order, greedy under penalties; the
// worker's incremental token counts against counts rebuilt from scratch through a real
// scheduler with chunking, prefix hits and preemption; validation; and, on a fixture
// model, that scheduling never changes the tokens they produce.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <tuple>
#include <vector>

#include "cli/offline_engine.h"
#include "cli/sampling_flags.h"
#include "coordinator/scheduler.h"
#include "kernels/cpu/ops.h"
#include "tests/unit/fixture_model.h"
#include "worker/model.h"
#include "worker/sequence_table.h"

namespace lattice {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

cpu::LogitAdjustment Entry(int32_t token, int32_t count, bool in_prompt, float bias = 0.0f, bool masked = false) {
  return {.token = token, .output_count = count, .in_prompt = in_prompt, .masked = masked, .bias = bias};
}

std::vector<float> Adjusted(std::vector<float> row, const cpu::PenaltyParams& p,
                            const std::vector<cpu::LogitAdjustment>& entries) {
  cpu::ApplyLogitAdjustments(row, p, entries);
  return row;
}

uint32_t Bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

TEST(LogitAdjustments, RepetitionPenaltyDividesPositiveAndMultipliesOtherLogits) {
  const std::vector<float> row = {2.0f, -1.0f, 0.5f, 3.0f, 0.0f};
  // Prompt or output, it does not matter which; unlisted tokens are untouched.
  const std::vector<float> got = Adjusted(row, {.repetition_penalty = 2.0f},
                                          {Entry(0, 0, true), Entry(1, 1, false), Entry(4, 0, true)});
  EXPECT_EQ(got, (std::vector<float>{1.0f, -2.0f, 0.5f, 3.0f, 0.0f}));
  // Below 1 it favours repeats.
  EXPECT_EQ(Adjusted(row, {.repetition_penalty = 0.5f}, {Entry(0, 0, true), Entry(1, 2, true)}),
            (std::vector<float>{4.0f, -0.5f, 0.5f, 3.0f, 0.0f}));
}

TEST(LogitAdjustments, FrequencyCountsOccurrencesPresenceCountsOnceOutputOnly) {
  const std::vector<float> row(6, 1.0f);
  const cpu::PenaltyParams p = {.presence_penalty = 0.25f, .frequency_penalty = 0.5f};
  // Token 1 is only in the prompt: neither penalty touches it.
  const std::vector<float> got = Adjusted(row, p, {Entry(1, 0, true), Entry(2, 1, false), Entry(3, 3, true)});
  EXPECT_EQ(got, (std::vector<float>{1.0f, 1.0f, 1.0f - 0.5f - 0.25f, 1.0f - 1.5f - 0.25f, 1.0f, 1.0f}));
  // Negative values reward the output's tokens.
  EXPECT_EQ(Adjusted(row, {.presence_penalty = -2.0f, .frequency_penalty = -1.0f}, {Entry(5, 2, false)})[5],
            1.0f + 2.0f + 2.0f);
}

TEST(LogitAdjustments, MinTokensMaskAndLogitBias) {
  const std::vector<float> row = {0.5f, 1.5f, -3.0f, 7.0f};
  const std::vector<float> got = Adjusted(row, {}, {Entry(0, 0, false, 100.0f), Entry(2, 0, false, -1.5f),
                                                    Entry(3, 0, false, 5.0f, /*masked=*/true)});
  EXPECT_EQ(got, (std::vector<float>{100.5f, 1.5f, -4.5f, -kInf}));
  // A masked token stays -inf through every penalty.
  EXPECT_EQ(Adjusted(row, {.repetition_penalty = 3.0f, .presence_penalty = -2.0f, .frequency_penalty = -2.0f},
                     {Entry(3, 4, true, 0.0f, true)})[3],
            -kInf);
}

TEST(LogitAdjustments, BiasThenRepetitionThenFrequencyThenPresence) {
  // Bias first: (-1 + 4) / 2 = 1.5 (bias after the penalty would give -1 * 2 + 4 = 2).
  EXPECT_EQ(Adjusted({-1.0f}, {.repetition_penalty = 2.0f}, {Entry(0, 0, true, 4.0f)})[0], 1.5f);
  // Repetition before frequency and presence: 4 / 2 - 0.5 * 2 - 1 = 0 (the other order
  // gives (4 - 1 - 1) / 2 = 1).
  EXPECT_EQ(Adjusted({4.0f}, {.repetition_penalty = 2.0f, .presence_penalty = 1.0f, .frequency_penalty = 0.5f},
                     {Entry(0, 2, false)})[0],
            0.0f);
  // The sign test sees the biased logit: 1 - 3 = -2 is multiplied, not divided.
  EXPECT_EQ(Adjusted({1.0f}, {.repetition_penalty = 2.0f}, {Entry(0, 1, false, -3.0f)})[0], -4.0f);
}

TEST(LogitAdjustments, EachStepIsOneRoundedF32Operation) {
  // Values whose fused multiply-subtract would round differently from two steps.
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> logit(-20.0f, 20.0f), penalty(-2.0f, 2.0f), rep(0.1f, 3.0f);
  std::uniform_int_distribution<int> count(0, 50);
  for (int trial = 0; trial < 2000; ++trial) {
    const float l = logit(rng), bias = logit(rng);
    const cpu::PenaltyParams p = {rep(rng), penalty(rng), penalty(rng)};
    const int c = count(rng);
    volatile float x = l + bias;  // volatile: each step rounded to f32 here too
    x = x > 0.0f ? x / p.repetition_penalty : x * p.repetition_penalty;
    if (c > 0) {
      volatile float product = p.frequency_penalty * static_cast<float>(c);
      x = x - product;
      x = x - p.presence_penalty;
    }
    const float got = Adjusted({l}, p, {Entry(0, c, true, bias)})[0];
    ASSERT_EQ(Bits(got), Bits(x)) << trial;
  }
}

TEST(LogitAdjustments, DefaultsAreTheIdentity) {
  std::mt19937 rng(8);
  std::normal_distribution<float> dist(0.0f, 5.0f);
  std::vector<float> row(100);
  for (float& v : row) v = dist(rng);
  std::vector<cpu::LogitAdjustment> entries;
  for (int32_t t = 0; t < 100; t += 3) entries.push_back(Entry(t, t % 4, t % 2 == 0));
  const std::vector<float> got = Adjusted(row, {}, entries);
  for (size_t i = 0; i < row.size(); ++i) EXPECT_EQ(Bits(got[i]), Bits(row[i] + 0.0f)) << i;
}

TEST(LogitAdjustments, GreedyFollowsThePenalties) {
  const cpu::SamplingParams greedy{};
  const std::vector<float> row = {0.0f, 5.0f, 4.0f, 1.0f};
  EXPECT_EQ(cpu::Sample(row, greedy, 0), 1);
  // Token 1 is out twice: 5 - 2 * 1 - 0 = 3 < 4.
  EXPECT_EQ(cpu::Sample(Adjusted(row, {.frequency_penalty = 1.0f}, {Entry(1, 2, false)}), greedy, 0), 2);
  // In the prompt under a repetition penalty of 1.5: 5 / 1.5 < 4.
  EXPECT_EQ(cpu::Sample(Adjusted(row, {.repetition_penalty = 1.5f}, {Entry(1, 0, true)}), greedy, 0), 2);
  // A bias of 100 makes the least likely token the choice.
  EXPECT_EQ(cpu::Sample(Adjusted(row, {}, {Entry(0, 0, false, 100.0f)}), greedy, 0), 0);
}

TEST(LogitAdjustments, BiasOfMinus100BansAToken) {
  std::vector<float> row(50, 0.0f);
  row[7] = 8.0f;  // ~99.9% of the mass unbiased
  const std::vector<float> banned = Adjusted(row, {}, {Entry(7, 0, false, -100.0f)});
  EXPECT_NE(cpu::Sample(banned, {}, 0), 7);
  cpu::SamplingParams params;
  params.temperature = 1.0f;
  int unbiased_hits = 0;
  for (uint64_t seed = 0; seed < 500; ++seed) {
    params.seed = seed;
    EXPECT_NE(cpu::Sample(banned, params, 3), 7) << seed;
    unbiased_hits += cpu::Sample(row, params, 3) == 7;
  }
  EXPECT_GT(unbiased_hits, 450);
}

// ---- the worker's counts (SequenceTable) ----

constexpr int32_t kEos = 2;
constexpr int64_t kVocab = 64;

SequenceRequest ControlledRequest(std::vector<int32_t> prompt, int32_t max_tokens) {
  SequenceRequest r;
  r.prompt_ids = std::move(prompt);
  r.max_tokens = max_tokens;
  r.sampling.set_top_p(1.0f);
  r.sampling.set_repetition_penalty(1.3f);
  r.sampling.set_frequency_penalty(0.5f);
  r.sampling.set_min_tokens(3);
  (*r.sampling.mutable_logit_bias())[9] = -7.0f;
  r.stop_token_ids = {11};
  return r;
}

using EntryKey = std::tuple<int32_t, int32_t, bool, bool, float>;  // token, count, prompt, masked, bias

std::vector<EntryKey> Sorted(const std::vector<cpu::LogitAdjustment>& entries) {
  std::vector<EntryKey> keys;
  for (const cpu::LogitAdjustment& e : entries) keys.emplace_back(e.token, e.output_count, e.in_prompt, e.masked, e.bias);
  std::sort(keys.begin(), keys.end());
  return keys;
}

// What a row's entries must be, from the sequence's whole token list.
std::vector<EntryKey> Expected(const SequenceRequest& r, const std::vector<int32_t>& tokens) {
  std::map<int32_t, EntryKey> by_token;
  auto at = [&](int32_t t) -> EntryKey& {
    return by_token.try_emplace(t, EntryKey{t, 0, false, false, 0.0f}).first->second;
  };
  const int32_t num_outputs = static_cast<int32_t>(tokens.size() - r.prompt_ids.size());
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (i < r.prompt_ids.size()) {
      std::get<2>(at(tokens[i])) = true;
    } else {
      ++std::get<1>(at(tokens[i]));
    }
  }
  for (const auto& [t, bias] : r.sampling.logit_bias()) std::get<4>(at(t)) = bias;
  if (num_outputs < r.sampling.min_tokens()) {
    for (int32_t t : {kEos, 11}) std::get<3>(at(t)) = true;
  }
  std::vector<EntryKey> keys;
  for (const auto& [t, key] : by_token) keys.push_back(key);
  return keys;
}

// A real scheduler (tiny blocks, a tiny budget, a cache that forces preemption, prefix
// hits) feeds a real SequenceTable; fabricated tokens repeat a lot. At every sampled
// chunk the incremental entries equal the ones rebuilt from the whole sequence.
TEST(SequenceTableControls, IncrementalCountsEqualCountsFromScratch) {
  SchedulerOptions o;
  o.block_size = 2;
  o.num_blocks = 11;
  o.max_num_batched_tokens = 5;
  o.max_model_len = 256;
  o.vocab_size = kVocab;
  o.eos_token_ids = {kEos};
  Scheduler scheduler(o);
  SequenceTable table(0, o.block_size, o.num_blocks);
  std::map<int64_t, SequenceRequest> requests;
  std::map<int64_t, std::vector<int32_t>> tokens;
  const std::vector<std::vector<int32_t>> prompts = {
      {5, 6, 5, 7, 8, 9}, {5, 6, 5, 7, 8, 9, 20}, {30, 31, 30}, {40, 41, 42, 43, 40, 41}};
  for (const auto& prompt : prompts) {
    SequenceRequest r = ControlledRequest(prompt, 12);
    ASSERT_TRUE(scheduler.Validate(r).ok()) << scheduler.Validate(r);
    const int64_t id = scheduler.Add(r);
    requests[id] = r;
    tokens[id] = prompt;
  }
  int checked = 0;
  for (int steps = 0; scheduler.HasUnfinished() && steps < 500; ++steps) {
    std::optional<pb::StepRequest> step = scheduler.Schedule();
    ASSERT_TRUE(step.has_value());
    absl::StatusOr<std::vector<ScheduledChunk>> chunks = table.Apply(*step);
    ASSERT_TRUE(chunks.ok()) << chunks.status();
    pb::StepResult result;
    result.set_step(step->step());
    for (const ScheduledChunk& c : *chunks) {
      if (!c.sample) {
        EXPECT_TRUE(c.adjustments.empty());
        continue;
      }
      const std::vector<int32_t>& all = tokens.at(c.seq_id);
      ASSERT_EQ(c.start_position + c.token_ids.size(), all.size());
      EXPECT_EQ(Sorted(c.adjustments), Expected(requests.at(c.seq_id), all)) << "step " << step->step();
      EXPECT_EQ(c.penalties.repetition_penalty, 1.3f);
      EXPECT_EQ(c.penalties.frequency_penalty, 0.5f);
      ++checked;
      // Few distinct tokens; the eos and the stop id as the first two outputs only, while
      // min_tokens (3) holds them back: a model cannot sample them then; here they check
      // that they stop nothing.
      const size_t num_outputs = all.size() - requests.at(c.seq_id).prompt_ids.size();
      const int32_t token = num_outputs < 2 ? std::array<int32_t, 4>{kEos, 11, 5, kEos}[(c.seq_id + num_outputs) % 4]
                                            : std::array<int32_t, 4>{5, 30, 40, 6}[(c.seq_id + all.size()) % 4];
      pb::SampledToken* t = result.add_tokens();
      t->set_seq_id(c.seq_id);
      t->set_token_id(token);
    }
    for (const SequenceUpdate& u : scheduler.Complete(*step, {result})) {
      tokens[u.seq_id].insert(tokens[u.seq_id].end(), u.token_ids.begin(), u.token_ids.end());
      // Nothing stops: the eos and the stop id came only before min_tokens.
      if (u.finish_reason != FinishReason::kNone) {
        EXPECT_EQ(u.finish_reason, FinishReason::kLength);
      }
    }
  }
  EXPECT_FALSE(scheduler.HasUnfinished());
  EXPECT_GT(scheduler.stats().num_preemptions, 0);
  EXPECT_GT(scheduler.stats().prefix_cache_hits, 0);
  EXPECT_GT(checked, 20);
}

pb::StepRequest NewSequenceStep(const std::vector<int32_t>& tokens, int32_t start, int32_t num_prompt_tokens,
                                const pb::SamplingParams& sampling, std::vector<int32_t> prefix) {
  pb::StepRequest step;
  step.set_step(0);
  pb::ScheduledSequence* s = step.add_dp()->add_sequences();
  s->set_seq_id(1);
  s->set_is_new(true);
  s->set_start_position(start);
  s->mutable_token_ids()->Add(tokens.begin(), tokens.end());
  s->add_block_ids(1);
  s->add_block_ids(2);
  s->set_sample(true);
  *s->mutable_sampling() = sampling;
  s->set_num_prompt_tokens(num_prompt_tokens);
  s->mutable_prefix_token_ids()->Add(prefix.begin(), prefix.end());
  return step;
}

TEST(SequenceTableControls, MinTokensMaskingEndsExactlyAtMinTokens) {
  pb::SamplingParams sampling;
  sampling.set_min_tokens(2);
  sampling.add_min_tokens_stop_ids(kEos);
  sampling.add_min_tokens_stop_ids(kEos);  // a repeat is one entry
  SequenceTable table(0, 4, 8);
  // Outputs so far: 0, 1, 2, 3 at the four samples.
  absl::StatusOr<std::vector<ScheduledChunk>> chunks = table.Apply(NewSequenceStep({3, 4, 5}, 0, 3, sampling, {}));
  ASSERT_TRUE(chunks.ok()) << chunks.status();
  std::vector<std::vector<cpu::LogitAdjustment>> seen = {(*chunks)[0].adjustments};
  for (int32_t t = 0; t < 3; ++t) {
    pb::StepRequest step;
    step.set_step(t + 1);
    pb::ScheduledSequence* s = step.add_dp()->add_sequences();
    s->set_seq_id(1);
    s->set_start_position(3 + t);
    s->add_token_ids(7);
    s->set_sample(true);
    chunks = table.Apply(step);
    ASSERT_TRUE(chunks.ok()) << chunks.status();
    seen.push_back((*chunks)[0].adjustments);
  }
  ASSERT_EQ(seen[0].size(), 1u);
  EXPECT_TRUE(seen[0][0].masked);
  EXPECT_EQ(seen[0][0].token, kEos);
  ASSERT_EQ(seen[1].size(), 1u);
  EXPECT_TRUE(seen[1][0].masked);
  EXPECT_TRUE(seen[2].empty());  // two outputs: nothing left to do (no penalties)
  EXPECT_TRUE(seen[3].empty());
}

TEST(SequenceTableControls, PrefixTokensAreCountedAndMustCoverTheSkippedPositions) {
  pb::SamplingParams sampling;
  sampling.set_presence_penalty(1.0f);
  SequenceTable table(0, 4, 8);
  // Tokens 0..3 came from the prefix cache; the prompt has 5 tokens, 6 and 5 are outputs.
  absl::StatusOr<std::vector<ScheduledChunk>> chunks =
      table.Apply(NewSequenceStep({8, 6, 5}, 4, 5, sampling, {5, 6, 5, 7}));
  ASSERT_TRUE(chunks.ok()) << chunks.status();
  EXPECT_EQ(Sorted((*chunks)[0].adjustments),
            (std::vector<EntryKey>{{5, 1, true, false, 0.0f}, {6, 1, true, false, 0.0f}, {7, 0, true, false, 0.0f},
                                   {8, 0, true, false, 0.0f}}));
  SequenceTable other(0, 4, 8);
  EXPECT_EQ(other.Apply(NewSequenceStep({8, 6, 5}, 4, 5, sampling, {5, 6})).status().code(),
            absl::StatusCode::kInvalidArgument);
  // A running sequence must continue where the counts end.
  pb::StepRequest gap;
  gap.set_step(1);
  pb::ScheduledSequence* s = gap.add_dp()->add_sequences();
  s->set_seq_id(1);
  s->set_start_position(9);
  s->add_token_ids(3);
  EXPECT_EQ(table.Apply(gap).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(SequenceTableControls, NoControlsNoEntries) {
  SequenceTable table(0, 4, 8);
  pb::SamplingParams sampling;
  sampling.set_repetition_penalty(1.0f);  // set, but off
  absl::StatusOr<std::vector<ScheduledChunk>> chunks = table.Apply(NewSequenceStep({3, 3, 3}, 0, 3, sampling, {}));
  ASSERT_TRUE(chunks.ok());
  EXPECT_TRUE((*chunks)[0].adjustments.empty());
}

// ---- validation ----

TEST(SamplingControlsValidation, BadValuesNameTheField) {
  SchedulerOptions o;
  o.num_blocks = 64;
  o.max_model_len = 256;
  o.vocab_size = kVocab;
  Scheduler scheduler(o);
  const auto message = [&](const std::function<void(SequenceRequest&)>& edit) {
    SequenceRequest r;
    r.prompt_ids = {1, 2};
    r.max_tokens = 4;
    r.sampling.set_top_p(1.0f);
    edit(r);
    const absl::Status status = scheduler.Validate(r);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    return std::string(status.message());
  };
  EXPECT_NE(message([](auto& r) { r.sampling.set_repetition_penalty(0.0f); }).find("repetition_penalty"),
            std::string::npos);
  EXPECT_NE(message([](auto& r) { r.sampling.set_repetition_penalty(-1.0f); }).find("repetition_penalty"),
            std::string::npos);
  EXPECT_NE(message([](auto& r) { r.sampling.set_presence_penalty(2.5f); }).find("presence_penalty"),
            std::string::npos);
  EXPECT_NE(message([](auto& r) { r.sampling.set_frequency_penalty(-2.01f); }).find("frequency_penalty"),
            std::string::npos);
  EXPECT_NE(message([](auto& r) { r.sampling.set_frequency_penalty(std::nanf("")); }).find("frequency_penalty"),
            std::string::npos);
  EXPECT_NE(message([](auto& r) { r.sampling.set_min_tokens(-1); }).find("min_tokens"), std::string::npos);
  EXPECT_NE(message([](auto& r) { r.sampling.set_min_tokens(5); }).find("min_tokens"), std::string::npos);
  EXPECT_NE(message([](auto& r) { (*r.sampling.mutable_logit_bias())[64] = 1.0f; }).find("logit_bias token 64"),
            std::string::npos);
  EXPECT_NE(message([](auto& r) { (*r.sampling.mutable_logit_bias())[-3] = 1.0f; }).find("logit_bias token -3"),
            std::string::npos);
  EXPECT_NE(message([](auto& r) { (*r.sampling.mutable_logit_bias())[5] = 100.5f; }).find("logit_bias"),
            std::string::npos);
  // The edges are fine.
  SequenceRequest ok;
  ok.prompt_ids = {1};
  ok.max_tokens = 4;
  ok.sampling.set_top_p(1.0f);
  ok.sampling.set_repetition_penalty(1e-3f);
  ok.sampling.set_presence_penalty(-2.0f);
  ok.sampling.set_frequency_penalty(2.0f);
  ok.sampling.set_min_tokens(4);
  (*ok.sampling.mutable_logit_bias())[63] = -100.0f;
  (*ok.sampling.mutable_logit_bias())[0] = 100.0f;
  EXPECT_TRUE(scheduler.Validate(ok).ok()) << scheduler.Validate(ok);
}

TEST(LogitBiasFlag, ParsesIdBiasPairsAndNamesTheFlag) {
  absl::StatusOr<std::vector<std::pair<int32_t, float>>> parsed = ParseLogitBias("5:1.5, 7:-100 ,0:100", "--logit-bias");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, (std::vector<std::pair<int32_t, float>>{{5, 1.5f}, {7, -100.0f}, {0, 100.0f}}));
  for (const char* bad : {"5", "5:", ":1", "x:1", "5:y", "5:1,", "5:1,5:2", "5:inf"}) {
    const absl::Status status = ParseLogitBias(bad, "--logit-bias").status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(status.message().find("--logit-bias"), std::string::npos) << status;
  }
}

// ---- on a model: scheduling never changes the tokens ----

class ControlsEngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { model_ = testing::LoadFixtureModel("llama_linear_headdim_f32"); }
  static void TearDownTestSuite() { delete model_; }

  static std::vector<GenerationRequest> Requests() {
    std::vector<GenerationRequest> requests;
    const std::vector<int32_t> shared = {254, 334, 124, 270, 119, 247, 336, 12, 99, 45, 3, 77, 18, 201};
    for (int n = 0; n < 4; ++n) {
      GenerationRequest r;
      r.sampling = DefaultSampling();
      r.prompt_ids = shared;  // shared full blocks: prefix hits
      r.prompt_ids.resize(7 + n * 2);
      r.max_tokens = 12;
      r.num_logprobs = 1;
      r.sampling.set_temperature(n == 2 ? 0.8f : 0.0f);
      r.sampling.set_seed(5 + n);
      r.sampling.set_repetition_penalty(n == 3 ? 1.0f : 1.2f);
      r.sampling.set_frequency_penalty(n == 1 ? 1.5f : 0.3f);
      r.sampling.set_presence_penalty(0.2f);
      r.sampling.set_min_tokens(n);
      (*r.sampling.mutable_logit_bias())[100 + n] = 3.0f;
      r.stop_token_ids = {450};
      requests.push_back(r);
    }
    return requests;
  }

  static std::vector<GenerationResult> RunWith(EngineOptions options, SchedulerStats* stats = nullptr) {
    Engine engine(*model_, options);
    absl::StatusOr<std::vector<GenerationResult>> results = engine.Generate(Requests());
    EXPECT_TRUE(results.ok()) << results.status();
    if (stats) *stats = engine.stats();
    EXPECT_EQ(engine.num_used_blocks(), 0);
    return results.ok() ? *results : std::vector<GenerationResult>{};
  }

  static DecoderModel* model_;
};

DecoderModel* ControlsEngineTest::model_ = nullptr;

TEST_F(ControlsEngineTest, ChunkingPrefixHitsAndPreemptionChangeNothing) {
  EngineOptions roomy;
  roomy.num_kv_blocks = 64;
  roomy.block_size = 4;
  roomy.enable_prefix_caching = false;
  const std::vector<GenerationResult> reference = RunWith(roomy);
  ASSERT_EQ(reference.size(), 4u);
  // The controls did something: the unpenalised greedy output of this prompt repeats
  // one token ten times.
  std::map<int32_t, int> counts;
  for (int32_t t : reference[0].output_ids) ++counts[t];
  for (const auto& [t, c] : counts) EXPECT_LT(c, 6) << t;

  struct Variant {
    const char* name;
    EngineOptions options;
  };
  std::vector<Variant> variants = {{"prefix caching", roomy}, {"budget 3", roomy}, {"8 blocks", roomy},
                                   {"one at a time", roomy}};
  variants[0].options.enable_prefix_caching = true;
  variants[1].options.max_num_batched_tokens = 3;
  variants[1].options.enable_prefix_caching = true;
  variants[2].options.num_kv_blocks = 8;
  variants[2].options.enable_prefix_caching = true;
  variants[3].options.max_num_seqs = 1;
  variants[3].options.enable_prefix_caching = true;
  for (const Variant& v : variants) {
    SchedulerStats stats;
    const std::vector<GenerationResult> got = RunWith(v.options, &stats);
    ASSERT_EQ(got.size(), reference.size()) << v.name;
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].output_ids, reference[i].output_ids) << v.name << " request " << i;
      EXPECT_EQ(got[i].finish_reason, reference[i].finish_reason) << v.name << " request " << i;
    }
    if (std::string(v.name) == "8 blocks") {
      EXPECT_GT(stats.num_preemptions, 0);
    }
    if (std::string(v.name) == "one at a time") {
      EXPECT_GT(stats.prefix_cache_hits, 0);
    }
  }
}

}  // namespace
}  // namespace lattice
