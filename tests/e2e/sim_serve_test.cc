// `lattice serve --device sim`: simulated GPU workers (threads of the serving process)
// behind the real coordinator, loaded by `lattice bench serve`. Every request completes,
// both DP instances and the pipeline's micro-batches are used, the coordinator reports
// its scheduler's time, and no token comes faster than the simulated GPUs allow.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/e2e/fixtures.h"
#include "tests/e2e/run_process.h"

namespace lattice {
namespace {

using nlohmann::json;

TEST(SimServe, SimulatedTp2Pp2Dp2ServesABenchRun) {
  const std::string model = std::string(LATTICE_SOURCE_DIR) + "/bench/models/llama-3.1-8b";
  testing::BackgroundProcess server = testing::StartWithFirstLine(
      {LATTICE_BINARY, "serve", "--model", model, "--device", "sim", "--sim-hardware", "h100", "--tp", "2", "--pp",
       "2", "--dp", "2", "--host", "127.0.0.1", "--port", "0"},
      60);
  const size_t colon = server.first_line.rfind(':');
  ASSERT_NE(colon, std::string::npos) << server.first_line;
  const std::string path = ::testing::TempDir() + "/sim_bench.json";
  const testing::ProcessResult r = testing::RunProcess(
      {LATTICE_BINARY, "bench", "serve", "--port", server.first_line.substr(colon + 1), "--num-prompts", "48",
       "--random-input-len", "256", "--random-output-len", "12", "--ignore-eos", "--disable-tqdm",
       "--result-json", path, "--time-limit", "60"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const json j = testing::ReadJson(path);
  EXPECT_EQ(j["completed"], 48);
  EXPECT_EQ(j["failed"], 0);
  EXPECT_EQ(j["total_output_tokens"], 48 * 12);
  // A decode step of a tp2 pp2 shard of the 8B on H100s takes milliseconds.
  EXPECT_GT(j["mean_tpot_ms"].get<double>(), 1.0);
  const json& before = j["server_status"]["before"];
  const json& after = j["server_status"]["after"];
  ASSERT_EQ(after["instances"].size(), 2u);  // a dense model's dp2: two instances
  for (size_t i = 0; i < 2; ++i) {
    const json& a = after["instances"][i];
    const json& b = before["instances"][i];
    EXPECT_EQ(a["workers"].size(), 4u);
    EXPECT_GT(std::stoll(a["num_steps"].get<std::string>()), std::stoll(b["num_steps"].get<std::string>()));
    EXPECT_GT(std::stoll(a["num_overlapped_steps"].get<std::string>()), 0) << "pp2 keeps 2 micro-batches in flight";
    EXPECT_GT(std::stoll(a["scheduler_busy_us"].get<std::string>()), 0);
    EXPECT_EQ(a["kv_blocks_used"], 0);
  }
  EXPECT_EQ(testing::StopProcess(server, 30), 0);
}

TEST(SimServe, UnknownHardwareIsAClearError) {
  const testing::ProcessResult r = testing::RunProcess(
      {LATTICE_BINARY, "serve", "--model", std::string(LATTICE_SOURCE_DIR) + "/bench/models/llama-3.1-8b", "--device",
       "sim", "--sim-hardware", "tpu.json", "--port", "0"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--sim-hardware"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace lattice
