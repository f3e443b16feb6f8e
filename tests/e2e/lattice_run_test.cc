// `lattice run` end to end: the real binary against every fixture model, compared
// with the Hugging Face reference outputs recorded in expected.json, and the
// scheduler paths (chunked prefill, tiny blocks, preemption, stop tokens, sampling)
// that must not change a request's tokens; the sampling controls (penalties,
// min_tokens, logit_bias) do what they say and depend on nothing else.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tests/e2e/fixtures.h"
#include "tests/e2e/run_process.h"

namespace lattice {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::FixtureNames;
using testing::FixturesDir;
using testing::ReadJson;

constexpr double kLogprobTolerance = 1e-3;

struct RunOutput {
  int exit_code;
  std::vector<json> results;
  std::string err;
};

RunOutput RunLattice(const fs::path& model, const std::vector<json>& prompts, std::vector<std::string> extra) {
  std::vector<std::string> argv = {LATTICE_BINARY, "run", "--model", model.string(), "--json"};
  for (const json& p : prompts) {
    argv.push_back("--prompt-ids");
    argv.push_back(absl::StrJoin(p.get<std::vector<int>>(), ","));
  }
  argv.insert(argv.end(), extra.begin(), extra.end());
  const testing::ProcessResult r = testing::RunProcess(argv);
  return {r.exit_code, testing::ParseJsonLines(r.out), r.err};
}

std::vector<json> PromptsOf(const json& expected) {
  std::vector<json> prompts;
  for (const json& p : expected["prompts"]) prompts.push_back(p["prompt_ids"]);
  return prompts;
}

// Same greedy tokens; top-5 logprobs within tolerance rank by rank (so that two
// near-equal candidates may swap), and for every token id present in both.
void ExpectMatchesReference(const json& expected, const std::vector<json>& results, const std::string& what) {
  ASSERT_EQ(results.size(), expected["prompts"].size()) << what;
  for (size_t i = 0; i < results.size(); ++i) {
    const json& want = expected["prompts"][i];
    const json& got = results[i];
    EXPECT_EQ(got["prompt_ids"], want["prompt_ids"]) << what;
    ASSERT_EQ(got["output_ids"], want["output_ids"]) << what << " prompt " << i;
    EXPECT_EQ(got["finish_reason"], "length") << what;
    ASSERT_EQ(got["logprobs"].size(), want["logprobs"].size()) << what;
    for (size_t t = 0; t < want["logprobs"].size(); ++t) {
      const json& w = want["logprobs"][t];
      const json& g = got["logprobs"][t];
      ASSERT_EQ(g.size(), w.size()) << what;
      for (size_t k = 0; k < w.size(); ++k) {
        EXPECT_NEAR(g[k][1].get<double>(), w[k][1].get<double>(), kLogprobTolerance)
            << what << " prompt " << i << " token " << t << " rank " << k;
        for (size_t j = 0; j < g.size(); ++j) {
          if (g[j][0] == w[k][0]) {
            EXPECT_NEAR(g[j][1].get<double>(), w[k][1].get<double>(), kLogprobTolerance)
                << what << " prompt " << i << " token " << t << " id " << w[k][0];
          }
        }
      }
    }
  }
}

class FixtureTest : public ::testing::TestWithParam<std::string> {
 protected:
  fs::path model() const { return FixturesDir() / GetParam(); }
  json expected() const { return ReadJson(model() / "expected.json"); }
  std::vector<std::string> Args(std::vector<std::string> extra = {}) const {
    std::vector<std::string> args = {"--max-tokens", std::to_string(expected()["max_tokens"].get<int>()),
                                     "--logprobs", "5", "--ignore-eos"};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }
};

TEST_P(FixtureTest, MatchesHuggingFaceBatched) {
  const json want = expected();
  const RunOutput out = RunLattice(model(), PromptsOf(want), Args());
  ASSERT_EQ(out.exit_code, 0) << out.err;
  ExpectMatchesReference(want, out.results, "batched");
}

TEST_P(FixtureTest, MatchesHuggingFaceOnePromptAtATime) {
  const json want = expected();
  for (size_t i = 0; i < want["prompts"].size(); ++i) {
    const RunOutput out = RunLattice(model(), {want["prompts"][i]["prompt_ids"]}, Args());
    ASSERT_EQ(out.exit_code, 0) << out.err;
    json single = want;
    single["prompts"] = json::array({want["prompts"][i]});
    ExpectMatchesReference(single, out.results, "alone");
  }
}

TEST_P(FixtureTest, ChunkedPrefillAndSmallBlocksChangeNothing) {
  const json want = expected();
  std::vector<std::vector<std::string>> variants = {{"--block-size", "1"}, {"--block-size", "7"}};
  // Dynamic NTK rope rescales with the length reached by each step, in Hugging Face as
  // here, so splitting a prompt into chunks legitimately changes its keys.
  if (GetParam().find("dynamic") == std::string::npos) {
    variants.push_back({"--max-num-batched-tokens", "5"});
    variants.push_back({"--max-num-batched-tokens", "16", "--block-size", "4"});
  }
  for (const auto& extra : variants) {
    const RunOutput out = RunLattice(model(), PromptsOf(want), Args(extra));
    ASSERT_EQ(out.exit_code, 0) << out.err;
    ExpectMatchesReference(want, out.results, absl::StrJoin(extra, " "));
  }
}

TEST_P(FixtureTest, PreemptionUnderATinyCacheChangesNothing) {
  const json want = expected();
  if (GetParam().find("dynamic") != std::string::npos) {
    // Recomputing a preempted sequence is a chunking change, which dynamic rope sees
    // (see above); a cache of 4 blocks still serialises its two sequences.
    const RunOutput out = RunLattice(model(), PromptsOf(want), Args({"--num-kv-blocks", "4"}));
    ASSERT_EQ(out.exit_code, 0) << out.err;
    ExpectMatchesReference(want, out.results, "4 KV blocks");
    return;
  }
  // 12 blocks of 4 tokens cannot hold the three sequences at once once they are
  // admitted in 16-token chunks: the newest is preempted, recomputed later, and
  // must come out the same.
  const RunOutput out = RunLattice(
      model(), PromptsOf(want),
      Args({"--block-size", "4", "--num-kv-blocks", "12", "--max-num-batched-tokens", "16"}));
  ASSERT_EQ(out.exit_code, 0) << out.err;
  ExpectMatchesReference(want, out.results, "12 KV blocks of 4");
  EXPECT_EQ(out.err.find("preemptions=0"), std::string::npos) << out.err;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, FixtureTest, ::testing::ValuesIn(FixtureNames()),
                         [](const auto& info) { return info.param; });

TEST(LatticeRun, EveryArchitectureHasAFixture) {
  std::set<std::string> archs;
  for (const std::string& name : FixtureNames()) {
    archs.insert(ReadJson(FixturesDir() / name / "config.json")["architectures"][0]);
  }
  for (const char* arch : {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM",
                           "MixtralForCausalLM", "Qwen2MoeForCausalLM", "Qwen3MoeForCausalLM"}) {
    EXPECT_TRUE(archs.count(arch)) << arch;
  }
}

TEST(LatticeRun, StopsAtEndOfSequence) {
  const fs::path source = FixturesDir() / "llama_gqa_f32";
  const json want = ReadJson(source / "expected.json");
  const json& prompt = want["prompts"][0];
  const int eos = prompt["output_ids"][3];
  const fs::path dir = fs::path(::testing::TempDir()) / "lattice_eos_model";
  fs::remove_all(dir);
  fs::copy(source, dir);
  std::ofstream(dir / "generation_config.json") << json{{"eos_token_id", json::array({99999, eos})}}.dump();
  const RunOutput out = RunLattice(dir, {prompt["prompt_ids"]}, {"--max-tokens", "10"});
  ASSERT_EQ(out.exit_code, 0) << out.err;
  ASSERT_EQ(out.results.size(), 1u);
  const auto full = prompt["output_ids"].get<std::vector<int>>();
  const auto first = std::find(full.begin(), full.end(), eos);
  EXPECT_EQ(out.results[0]["output_ids"].get<std::vector<int>>(), std::vector<int>(full.begin(), first + 1));
  EXPECT_EQ(out.results[0]["finish_reason"], "stop");
  EXPECT_TRUE(out.results[0]["logprobs"].empty());
}

TEST(LatticeRun, SeededSamplingDoesNotDependOnTheBatch) {
  const fs::path model = FixturesDir() / "qwen3moe_sharded_f32";
  const std::vector<std::string> sampling = {"--max-tokens", "12", "--ignore-eos", "--temperature", "1.5",
                                             "--top-p", "0.95", "--top-k", "50", "--seed", "1234"};
  const json a = json::array({5, 6, 7, 8}), b = json::array({9, 10, 11, 12, 13, 14, 15, 16, 17, 18});
  const RunOutput alone = RunLattice(model, {a}, sampling);
  const RunOutput batched = RunLattice(model, {b, a, b}, sampling);
  ASSERT_EQ(alone.exit_code, 0) << alone.err;
  ASSERT_EQ(batched.exit_code, 0) << batched.err;
  EXPECT_EQ(alone.results[0]["output_ids"], batched.results[1]["output_ids"]);
  EXPECT_EQ(batched.results[0]["output_ids"], batched.results[2]["output_ids"]);
  std::vector<std::string> other_seed = sampling;
  other_seed.back() = "4321";
  const RunOutput reseeded = RunLattice(model, {a}, other_seed);
  ASSERT_EQ(reseeded.exit_code, 0) << reseeded.err;
  EXPECT_NE(alone.results[0]["output_ids"], reseeded.results[0]["output_ids"]);
  // Sampling at a high temperature is not greedy decoding.
  const RunOutput greedy = RunLattice(model, {a}, {"--max-tokens", "12", "--ignore-eos"});
  EXPECT_NE(alone.results[0]["output_ids"], greedy.results[0]["output_ids"]);
}

struct BadRun {
  std::string name;
  std::vector<std::string> args;
  std::string message;
};

TEST(LatticeRun, BadInputIsAClearError) {
  const std::string model = (FixturesDir() / "llama_gqa_f32").string();
  const std::vector<BadRun> cases = {
      {"token outside vocab", {"--model", model, "--prompt-ids", "1,512"}, "outside the vocabulary"},
      {"not a number", {"--model", model, "--prompt-ids", "1,x"}, "'x'"},
      {"empty id", {"--model", model, "--prompt-ids", "1,,2"}, "is not a token id"},
      {"zero max tokens", {"--model", model, "--prompt-ids", "1", "--max-tokens", "0"}, "max_tokens"},
      {"bad top-p", {"--model", model, "--prompt-ids", "1", "--top-p", "1.5"}, "top_p"},
      {"negative temperature", {"--model", model, "--prompt-ids", "1", "--temperature", "-1"}, "temperature"},
      {"too long", {"--model", model, "--prompt-ids", "1", "--max-tokens", "100000"}, "maximum length"},
      {"cache too small", {"--model", model, "--prompt-ids", "1", "--max-tokens", "40", "--num-kv-blocks", "2"},
       "KV blocks"},
      {"no model", {"--model", "/nonexistent/model", "--prompt-ids", "1"}, "/nonexistent/model"},
      {"dummy weights on the cpu", {"--model", model, "--prompt-ids", "1", "--load-format", "dummy"},
       "--load-format dummy needs --device cuda"},
  };
  for (const BadRun& c : cases) {
    std::vector<std::string> argv = {LATTICE_BINARY, "run"};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    const testing::ProcessResult r = testing::RunProcess(argv);
    EXPECT_EQ(r.exit_code, 2) << c.name << ": " << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << c.name << ": " << r.err;
    EXPECT_TRUE(r.out.empty()) << c.name;
  }
}

// ---- the sampling controls: vLLM's penalties, min_tokens and logit_bias ----

// Greedy decoding of this prompt repeats token 494 ten times (its expected.json).
const std::vector<int> kRepeatingPrompt = {254, 334, 124, 270, 119, 247, 336};
constexpr int kRepeatedToken = 494;

fs::path RepeatingModel() { return FixturesDir() / "llama_linear_headdim_f32"; }

std::vector<int> OutputIds(const RunOutput& out, size_t i = 0) {
  EXPECT_GT(out.results.size(), i) << out.err;
  return out.results.size() > i ? out.results[i]["output_ids"].get<std::vector<int>>() : std::vector<int>{};
}

int MaxRepeats(const std::vector<int>& ids) {
  int most = 0;
  for (int id : ids) most = std::max(most, static_cast<int>(std::count(ids.begin(), ids.end(), id)));
  return most;
}

TEST(LatticeRunSamplingControls, PenaltiesBreakAGreedyRepeat) {
  const std::vector<std::string> greedy = {"--max-tokens", "10", "--ignore-eos"};
  const RunOutput plain = RunLattice(RepeatingModel(), {json(kRepeatingPrompt)}, greedy);
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  ASSERT_EQ(OutputIds(plain), std::vector<int>(10, kRepeatedToken));
  // The frequency penalty grows with each repeat, the repetition penalty divides the
  // (positive) logit of every seen token: both end the run of 494s at once. The
  // presence penalty is one fixed step, which 494's lead outlasts for a while.
  for (const auto& [flags, most] : std::vector<std::pair<std::vector<std::string>, int>>{
           {{"--frequency-penalty", "2"}, 4}, {{"--repetition-penalty", "3"}, 4}, {{"--presence-penalty", "2"}, 9}}) {
    std::vector<std::string> args = greedy;
    args.insert(args.end(), flags.begin(), flags.end());
    const RunOutput out = RunLattice(RepeatingModel(), {json(kRepeatingPrompt)}, args);
    ASSERT_EQ(out.exit_code, 0) << flags[0] << ": " << out.err;
    const std::vector<int> ids = OutputIds(out);
    ASSERT_EQ(ids.size(), 10u) << flags[0];
    EXPECT_LE(MaxRepeats(ids), most) << flags[0] << ": " << json(ids).dump();
    EXPECT_EQ(ids[0], kRepeatedToken) << flags[0];  // nothing is out yet: no penalty on the first token
  }
}

TEST(LatticeRunSamplingControls, LogitBiasForcesAndBansTokens) {
  const std::vector<std::string> greedy = {"--max-tokens", "10", "--ignore-eos"};
  std::vector<std::string> force = greedy;
  force.insert(force.end(), {"--logit-bias", "77:100"});
  const RunOutput forced = RunLattice(RepeatingModel(), {json(kRepeatingPrompt)}, force);
  ASSERT_EQ(forced.exit_code, 0) << forced.err;
  EXPECT_EQ(OutputIds(forced), std::vector<int>(10, 77));
  // Seeded sampling at a high temperature never draws a token biased by -100.
  std::vector<std::string> ban = {"--max-tokens", "10", "--ignore-eos", "--temperature", "0.7", "--seed", "3",
                                  "--logit-bias", absl::StrCat(kRepeatedToken, ":-100, 17:-100")};
  const RunOutput banned = RunLattice(RepeatingModel(), {json(kRepeatingPrompt)}, ban);
  ASSERT_EQ(banned.exit_code, 0) << banned.err;
  for (int id : OutputIds(banned)) {
    EXPECT_NE(id, kRepeatedToken);
    EXPECT_NE(id, 17);
  }
}

// A copy of llama_gqa_f32 whose eos ids are its first prompt's fourth greedy token (and
// one past the vocabulary, which min_tokens must leave alone).
TEST(LatticeRunSamplingControls, MinTokensKeepsTheEndOfSequenceAway) {
  const fs::path source = FixturesDir() / "llama_gqa_f32";
  const json want = ReadJson(source / "expected.json");
  const json& prompt = want["prompts"][0];
  const auto full = prompt["output_ids"].get<std::vector<int>>();
  const int eos = full[3];
  const fs::path dir = fs::path(::testing::TempDir()) / "lattice_min_tokens_model";
  fs::remove_all(dir);
  fs::copy(source, dir);
  std::ofstream(dir / "generation_config.json") << json{{"eos_token_id", json::array({99999, eos})}}.dump();
  const RunOutput plain = RunLattice(dir, {prompt["prompt_ids"]}, {"--max-tokens", "10"});
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  ASSERT_EQ(OutputIds(plain), std::vector<int>(full.begin(), full.begin() + 4));  // stops at the eos
  for (int min_tokens : {4, 7}) {
    const RunOutput out =
        RunLattice(dir, {prompt["prompt_ids"]}, {"--max-tokens", "10", "--min-tokens", std::to_string(min_tokens)});
    ASSERT_EQ(out.exit_code, 0) << out.err;
    const std::vector<int> ids = OutputIds(out);
    ASSERT_GE(ids.size(), static_cast<size_t>(min_tokens)) << json(ids).dump();
    EXPECT_EQ(std::vector<int>(ids.begin(), ids.begin() + 3), std::vector<int>(full.begin(), full.begin() + 3));
    EXPECT_EQ(std::count(ids.begin(), ids.begin() + min_tokens, eos), 0) << json(ids).dump();
    // Done at the first eos after min_tokens, or at the length.
    const auto first_eos = std::find(ids.begin(), ids.end(), eos);
    EXPECT_EQ(out.results[0]["finish_reason"], first_eos == ids.end() ? "length" : "stop");
    EXPECT_TRUE(first_eos == ids.end() || first_eos + 1 == ids.end());
  }
}

TEST(LatticeRunSamplingControls, BadValuesAreAClearError) {
  const std::string model = RepeatingModel().string();
  const std::vector<BadRun> cases = {
      {"zero repetition penalty", {"--repetition-penalty", "0"}, "repetition_penalty"},
      {"presence penalty past 2", {"--presence-penalty", "2.5"}, "presence_penalty"},
      {"frequency penalty below -2", {"--frequency-penalty", "-3"}, "frequency_penalty"},
      {"min tokens past max tokens", {"--min-tokens", "20", "--max-tokens", "10"}, "min_tokens"},
      {"negative min tokens", {"--min-tokens", "-1"}, "min_tokens"},
      {"bias of a token outside the vocabulary", {"--logit-bias", "3:1,512:1"}, "logit_bias token 512"},
      {"bias past 100", {"--logit-bias", "3:100.5"}, "logit_bias"},
      {"bias without a value", {"--logit-bias", "3"}, "--logit-bias"},
      {"bias not a number", {"--logit-bias", "3:x"}, "--logit-bias"},
  };
  for (const BadRun& c : cases) {
    std::vector<std::string> argv = {LATTICE_BINARY, "run", "--model", model, "--prompt-ids", "1,2"};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    const testing::ProcessResult r = testing::RunProcess(argv);
    EXPECT_EQ(r.exit_code, 2) << c.name << ": " << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << c.name << ": " << r.err;
    EXPECT_TRUE(r.out.empty()) << c.name;
  }
}

// Every control at once, seeded sampling and greedy, in one batch: tp2 and pp2 (and a
// tiny cache that preempts) give one rank's tokens.
TEST(LatticeRunSamplingControls, LayoutsAndPreemptionChangeNothing) {
  const json expected = ReadJson(RepeatingModel() / "expected.json");
  std::vector<json> prompts = PromptsOf(expected);
  prompts.push_back(json(kRepeatingPrompt));
  const std::vector<std::string> controls = {
      "--max-tokens", "12", "--repetition-penalty", "1.3", "--frequency-penalty", "0.4", "--presence-penalty", "0.5",
      "--min-tokens", "3", "--logit-bias", "5:4,494:-2"};
  for (const char* temperature : {"0", "0.8"}) {
    std::vector<std::string> args = controls;
    args.insert(args.end(), {"--temperature", temperature, "--seed", "9"});
    const RunOutput one = RunLattice(RepeatingModel(), prompts, args);
    ASSERT_EQ(one.exit_code, 0) << one.err;
    ASSERT_EQ(one.results.size(), prompts.size());
    EXPECT_LT(MaxRepeats(OutputIds(one, 3)), 10);
    for (const std::vector<std::string>& variant : std::vector<std::vector<std::string>>{
             {"--tp", "2"}, {"--pp", "2"}, {"--num-kv-blocks", "16", "--block-size", "4", "--max-num-batched-tokens", "8"}}) {
      std::vector<std::string> with = args;
      with.insert(with.end(), variant.begin(), variant.end());
      const RunOutput run = RunLattice(RepeatingModel(), prompts, with);
      ASSERT_EQ(run.exit_code, 0) << variant[0] << ": " << run.err;
      ASSERT_EQ(run.results.size(), prompts.size());
      for (size_t i = 0; i < prompts.size(); ++i) {
        EXPECT_EQ(run.results[i]["output_ids"], one.results[i]["output_ids"])
            << "T=" << temperature << " " << variant[0] << " prompt " << i;
        EXPECT_EQ(run.results[i]["finish_reason"], one.results[i]["finish_reason"]);
      }
    }
  }
}

// Where no GPU is visible (CI), --device cuda says so instead of failing later, on one
// rank and on several (every rank process exits); a build without nvcc says it has no
// CUDA backend.
TEST(LatticeRun, CudaWithoutAGpuIsAClearError) {
  const std::string model = (FixturesDir() / "llama_gqa_f32").string();
  for (const std::vector<std::string>& layout : {std::vector<std::string>{}, {"--tp", "2"}, {"--pp", "2"}}) {
    std::vector<std::string> argv = {LATTICE_BINARY, "run", "--model", model, "--prompt-ids", "1", "--device", "cuda"};
    argv.insert(argv.end(), layout.begin(), layout.end());
    const testing::ProcessResult r = testing::RunProcess(argv);
    if (r.exit_code == 0) GTEST_SKIP() << "a GPU is present";
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_TRUE(r.err.find("no CUDA device is visible") != std::string::npos ||
                r.err.find("no CUDA backend") != std::string::npos)
        << r.err;
    EXPECT_TRUE(r.out.empty());
  }
}

}  // namespace
}  // namespace lattice
