// `lattice run` end to end: the real binary against every fixture model, compared
// with the Hugging Face reference outputs recorded in expected.json, and the
// scheduler paths (chunked prefill, tiny blocks, preemption, stop tokens, sampling)
// that must not change a request's tokens.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

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
