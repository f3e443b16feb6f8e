// `lattice run` across real processes: every layout of every fixture model, started
// by `lattice run` itself (gloo over loopback) and by mpirun, gives one rank's greedy
// tokens and top-5 logprobs within 1e-4; the pipeline overlaps micro-batches; a bad
// layout is an error before any weight loads.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "tests/e2e/fixtures.h"
#include "tests/e2e/run_process.h"

namespace lattice {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::FixtureNames;
using testing::FixturesDir;
using testing::ReadJson;

struct RunOutput {
  int exit_code;
  std::vector<json> results;
  std::string err;
};

RunOutput RunLattice(const std::vector<std::string>& prefix, const fs::path& model, const std::vector<std::string>& extra) {
  std::vector<std::string> argv = prefix;
  argv.push_back(LATTICE_BINARY);
  for (const char* a : {"run", "--model"}) argv.push_back(a);
  argv.push_back(model.string());
  const json expected = ReadJson(model / "expected.json");
  for (const json& p : expected["prompts"]) {
    argv.push_back("--prompt-ids");
    argv.push_back(absl::StrJoin(p["prompt_ids"].get<std::vector<int>>(), ","));
  }
  for (const char* a : {"--max-tokens", "10", "--logprobs", "5", "--ignore-eos", "--json"}) argv.push_back(a);
  argv.insert(argv.end(), extra.begin(), extra.end());
  const testing::ProcessResult r = testing::RunProcess(argv);
  RunOutput run{r.exit_code, {}, r.err};
  run.results = testing::ParseJsonLines(r.out);
  return run;
}

void ExpectSame(const std::vector<json>& want, const std::vector<json>& got, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_EQ(got[i]["output_ids"], want[i]["output_ids"]) << what << " prompt " << i;
    ASSERT_EQ(got[i]["logprobs"].size(), want[i]["logprobs"].size()) << what;
    for (size_t t = 0; t < want[i]["logprobs"].size(); ++t) {
      for (size_t k = 0; k < want[i]["logprobs"][t].size(); ++k) {
        EXPECT_NEAR(got[i]["logprobs"][t][k][1].get<double>(), want[i]["logprobs"][t][k][1].get<double>(), 1e-4)
            << what << " prompt " << i << " token " << t << " rank " << k;
      }
    }
  }
}

std::vector<std::string> Split(const char* flags) { return absl::StrSplit(flags, ' ', absl::SkipEmpty()); }

class ParallelRunTest : public ::testing::TestWithParam<std::string> {
 protected:
  fs::path model() const { return FixturesDir() / GetParam(); }
  bool is_moe() const { return ReadJson(model() / "config.json").value("num_experts", 0) > 0 ||
                               ReadJson(model() / "config.json").contains("num_local_experts"); }
};

TEST_P(ParallelRunTest, EveryLayoutMatchesOneRank) {
  const RunOutput one = RunLattice({}, model(), {});
  ASSERT_EQ(one.exit_code, 0) << one.err;
  std::vector<const char*> layouts = {"--tp 2", "--tp 4", "--pp 2", "--pp 3", "--tp 2 --pp 2",
                                      "--pp 2 --pp-layers 1,3 --num-micro-batches 3"};
  if (is_moe()) {
    for (const char* l : {"--tp 2 --ep 2", "--tp 4 --ep 4", "--dp 2 --tp 1 --ep 2", "--dp 2 --tp 2 --ep 4"}) {
      layouts.push_back(l);
    }
  } else {
    layouts.push_back("--dp 2");
  }
  for (const char* layout : layouts) {
    const RunOutput run = RunLattice({}, model(), Split(layout));
    ASSERT_EQ(run.exit_code, 0) << layout << ": " << run.err;
    ExpectSame(one.results, run.results, layout);
  }
}

TEST_P(ParallelRunTest, MpirunTp2Pp2MatchesOneRank) {
  const RunOutput one = RunLattice({}, model(), {});
  ASSERT_EQ(one.exit_code, 0) << one.err;
  const RunOutput run = RunLattice({"/usr/bin/mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "4"}, model(),
                             Split("--tp 2 --pp 2"));
  ASSERT_EQ(run.exit_code, 0) << run.err;
  ExpectSame(one.results, run.results, "mpirun -np 4 tp2xpp2");
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ParallelRunTest, ::testing::ValuesIn(FixtureNames()),
                         [](const auto& info) { return info.param; });

TEST(ParallelRun, PipelineStagesOverlapMicroBatches) {
  const fs::path model = FixturesDir() / "mixtral_f32";
  const fs::path trace = fs::path(::testing::TempDir()) / "lattice_pipeline_trace";
  std::vector<std::string> argv = {LATTICE_BINARY, "run", "--model", model.string(), "--max-tokens", "8",
                                   "--ignore-eos", "--pp", "2", "--num-micro-batches", "2", "--max-num-seqs", "2",
                                   "--trace", trace.string()};
  for (int i = 0; i < 8; ++i) {
    std::vector<int> ids;
    for (int t = 0; t < 48; ++t) ids.push_back(3 + (i * 31 + t * 7) % 500);
    argv.push_back("--prompt-ids");
    argv.push_back(absl::StrJoin(ids, ","));
  }
  const testing::ProcessResult r = testing::RunProcess(argv);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<json> stages[2];
  for (int rank = 0; rank < 2; ++rank) {
    std::ifstream in(trace.string() + ".rank" + std::to_string(rank) + ".jsonl");
    for (std::string line; std::getline(in, line);) stages[rank].push_back(json::parse(line));
  }
  ASSERT_EQ(stages[0].size(), stages[1].size());
  ASSERT_GT(stages[0].size(), 4u);
  int overlaps = 0;
  for (size_t s = 0; s + 1 < stages[0].size(); ++s) {
    ASSERT_EQ(stages[0][s]["step"], stages[1][s]["step"]);
    EXPECT_EQ(stages[1][s]["stage"], 1);
    // Stage 0 began step s+1 while stage 1 was still on step s.
    if (stages[0][s + 1]["begin_ns"].get<int64_t>() < stages[1][s]["end_ns"].get<int64_t>()) ++overlaps;
  }
  EXPECT_GT(overlaps, 0);
}

// A free loopback port (bound and released: good enough for a test).
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

TEST(ParallelRun, AnyLauncherThatSetsRankAndWorldSize) {
  const fs::path model = FixturesDir() / "qwen3moe_sharded_f32";
  const RunOutput one = RunLattice({}, model, {});
  ASSERT_EQ(one.exit_code, 0) << one.err;
  // torchrun-style variables, then Kubernetes LeaderWorkerSet's.
  for (const bool lws : {false, true}) {
    const std::string port = std::to_string(FreePort());
    auto env = [&](int rank) -> testing::EnvOverrides {
      if (lws) {
        return {"LWS_WORKER_INDEX=" + std::to_string(rank), "LWS_GROUP_SIZE=2", "LWS_LEADER_ADDRESS=127.0.0.1",
                "LATTICE_STORE_PORT=" + port};
      }
      return {"RANK=" + std::to_string(rank), "WORLD_SIZE=2", "MASTER_ADDR=127.0.0.1", "MASTER_PORT=" + port};
    };
    std::vector<std::string> argv = {LATTICE_BINARY, "run", "--model", model.string(), "--max-tokens", "10",
                                     "--logprobs", "5", "--ignore-eos", "--json", "--tp", "2"};
    const json expected = ReadJson(model / "expected.json");
    for (const json& p : expected["prompts"]) {
      argv.push_back("--prompt-ids");
      argv.push_back(absl::StrJoin(p["prompt_ids"].get<std::vector<int>>(), ","));
    }
    const int follower = testing::StartProcess(argv, env(1));
    const testing::ProcessResult leader = testing::RunProcess(argv, env(0));
    EXPECT_EQ(testing::WaitProcess(follower, 60), 0) << leader.err;
    ASSERT_EQ(leader.exit_code, 0) << leader.err;
    const std::vector<json> results = testing::ParseJsonLines(leader.out);
    ExpectSame(one.results, results, lws ? "LeaderWorkerSet" : "RANK/WORLD_SIZE");
  }
}

TEST(ParallelRun, BadLayoutIsAnErrorBeforeAnyWeightLoads) {
  // A copy of a model whose weights are garbage: a layout error must come first.
  const fs::path dir = fs::path(::testing::TempDir()) / "lattice_bad_layout_model";
  fs::remove_all(dir);
  fs::create_directories(dir);
  fs::copy(FixturesDir() / "mixtral_f32" / "config.json", dir / "config.json");
  fs::copy(FixturesDir() / "mixtral_f32" / "expected.json", dir / "expected.json");
  std::ofstream(dir / "model.safetensors") << "not a safetensors file";
  const fs::path dense = FixturesDir() / "llama_gqa_f32";
  struct Case {
    fs::path model;
    const char* flags;
    const char* message;
  };
  const Case cases[] = {
      {dir, "--tp 8", "tp 8 is larger than the model's num_attention_heads 4"},
      {dir, "--tp 3", "num_attention_heads 4 is not divisible by tp 3"},
      {dir, "--pp 5", "pp 5 is larger than the model's num_hidden_layers 4"},
      {dir, "--tp 2 --ep 3", "ep 3"},
      {dir, "--dp 3 --ep 3", "num_experts 4 is not divisible by ep 3"},
      {dir, "--pp 2 --pp-layers 1,2", "sums to 3"},
      {dir, "--pp 2 --pp-layers 1,2,1", "lists 3 stages"},
      {dense, "--tp 2 --ep 2", "is dense"},
      {dir, "--tp 0", "--tp"},
  };
  for (const Case& c : cases) {
    const RunOutput run = RunLattice({}, c.model, Split(c.flags));
    EXPECT_NE(run.exit_code, 0) << c.flags;
    EXPECT_NE(run.err.find(c.message), std::string::npos) << c.flags << ": " << run.err;
    EXPECT_EQ(run.err.find("safetensors"), std::string::npos) << c.flags << ": " << run.err;
  }
  // mpirun with a world size that is not tp * pp * dp.
  const RunOutput run = RunLattice({"/usr/bin/mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "3"}, dir,
                             Split("--tp 2"));
  EXPECT_NE(run.exit_code, 0);
  EXPECT_NE(run.err.find("the launcher started 3 ranks but tp2"), std::string::npos) << run.err;
  EXPECT_EQ(run.err.find("safetensors"), std::string::npos) << run.err;
}

}  // namespace
}  // namespace lattice
