// `lattice bench offline` end to end: the seeded workload generated in-process on one
// rank and on a tp2 x pp2 run of real processes, its result JSON consistent, and the
// same workload giving the same token counts on both.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/e2e/fixtures.h"
#include "tests/e2e/run_process.h"

namespace lattice {
namespace {

using nlohmann::json;

json RunOffline(const std::vector<std::string>& flags) {
  const std::string path = ::testing::TempDir() + "/bench_offline.json";
  std::remove(path.c_str());
  std::vector<std::string> argv = {LATTICE_BINARY, "bench", "offline", "--model",
                                   (testing::FixturesDir() / "llama_gqa_f32").string(), "--result-json", path};
  argv.insert(argv.end(), flags.begin(), flags.end());
  const testing::ProcessResult r = testing::RunProcess(argv);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("Throughput:"), std::string::npos) << r.out;
  return testing::ReadJson(path);
}

TEST(BenchOffline, ReportsConsistentThroughputOnOneRankAndOnTp2Pp2) {
  const std::vector<std::string> workload = {"--num-prompts", "12", "--random-input-len", "24", "--random-range-ratio",
                                             "0.5", "--random-output-len", "6", "--ignore-eos", "--seed", "3"};
  std::vector<json> results;
  for (const std::vector<std::string>& layout :
       {std::vector<std::string>{}, std::vector<std::string>{"--tp", "2", "--pp", "2"}}) {
    std::vector<std::string> flags = workload;
    flags.insert(flags.end(), layout.begin(), layout.end());
    const json j = RunOffline(flags);
    ASSERT_TRUE(j.is_object());
    EXPECT_EQ(j["num_requests"], 12);
    const int64_t input = j["total_input_tokens"];
    const int64_t output = j["total_output_tokens"];
    EXPECT_GE(input, 12 * 12);  // lengths uniform in [len * 0.5, len * 1.5]
    EXPECT_LE(input, 12 * 36);
    EXPECT_GE(output, 12 * 3);
    EXPECT_LE(output, 12 * 9);
    EXPECT_EQ(j["total_num_tokens"], input + output);
    const double elapsed = j["elapsed_time"];
    ASSERT_GT(elapsed, 0);
    EXPECT_NEAR(j["requests_per_second"].get<double>(), 12 / elapsed, 1e-6 * 12 / elapsed);
    EXPECT_NEAR(j["tokens_per_second"].get<double>(), (input + output) / elapsed, 1e-6 * (input + output) / elapsed);
    EXPECT_GT(j["num_steps"].get<int64_t>(), 6);
    EXPECT_EQ(j["layout"], layout.empty() ? "tp1 pp1 dp1 ep1" : "tp2 pp2 dp1 ep1");
    EXPECT_EQ(j["random_input_len"], 24);
    results.push_back(j);
  }
  // The same seed is the same workload; --ignore-eos makes the outputs its lengths.
  EXPECT_EQ(results[0]["total_input_tokens"], results[1]["total_input_tokens"]);
  EXPECT_EQ(results[0]["total_output_tokens"], results[1]["total_output_tokens"]);
}

TEST(BenchOffline, BadFlagsAreClearErrors) {
  const std::string model = (testing::FixturesDir() / "llama_gqa_f32").string();
  testing::ProcessResult r =
      testing::RunProcess({LATTICE_BINARY, "bench", "offline", "--model", model, "--num-prompts", "0"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--num-prompts"), std::string::npos) << r.err;
  r = testing::RunProcess({LATTICE_BINARY, "bench", "offline", "--model", model, "--random-input-len", "100000"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("max_model_len"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace lattice
