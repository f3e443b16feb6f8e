// `lattice bench serve` end to end: a real `lattice serve` on a fixture model, the bench
// as a real process against it, and its result JSON checked for every field and against
// what the server itself counted (requests, computed tokens, prefix-cache hits). Also:
// prefix-cache hits from prefix_repetition, a time limit that cancels what is in flight,
// a full queue's failures recorded rather than fatal, and bad flags exiting 2.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <numeric>
#include <thread>

#include "lattice/v1/lattice.grpc.pb.h"
#include "tests/e2e/fixtures.h"
#include "tests/e2e/run_process.h"

namespace lattice {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// `lattice serve --port 0` on the smallest fixture, stopped when destroyed.
class BenchServer {
 public:
  explicit BenchServer(std::vector<std::string> flags = {}) {
    std::vector<std::string> argv = {LATTICE_BINARY,
                                     "serve",
                                     "--model",
                                     (testing::FixturesDir() / "llama_gqa_f32").string(),
                                     "--host",
                                     "127.0.0.1",
                                     "--port",
                                     "0",
                                     "--kv-cache-memory",
                                     "8M"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    process_ = testing::StartWithFirstLine(argv, 60);
    const size_t colon = process_.first_line.rfind(':');
    EXPECT_NE(colon, std::string::npos) << "no listening line: " << process_.first_line;
    port_ = process_.first_line.substr(colon + 1);
    stub_ = v1::Lattice::NewStub(
        grpc::CreateChannel("127.0.0.1:" + port_, grpc::InsecureChannelCredentials()));
  }
  ~BenchServer() {
    stub_.reset();  // our connection closed first, the server's shutdown need not wait it out
    EXPECT_EQ(testing::StopProcess(process_, 30), 0) << "lattice serve did not stop cleanly";
  }

  const std::string& port() const { return port_; }
  v1::ClusterStatus Status() {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::ClusterStatus status;
    EXPECT_TRUE(stub_->GetClusterStatus(&context, {}, &status).ok());
    EXPECT_EQ(status.instances_size(), 1);
    return status;
  }
  // Waits (bounded) until nothing runs and no KV block is held.
  v1::ClusterStatus Idle() {
    v1::ClusterStatus status;
    for (int i = 0; i < 100; ++i) {
      status = Status();
      if (status.instances(0).num_running() == 0 && status.instances(0).num_waiting() == 0 &&
          status.instances(0).kv_blocks_used() == 0) {
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return status;
  }

 private:
  testing::BackgroundProcess process_;
  std::string port_;
  std::unique_ptr<v1::Lattice::Stub> stub_;
};

struct BenchRun {
  testing::ProcessResult process;
  json result;  // the --result-json file; null when none was written
};

// Runs `lattice bench serve` (killed after 60 s: a hang fails, it does not stall CI).
BenchRun RunBench(const std::vector<std::string>& args) {
  const fs::path result_path =
      fs::temp_directory_path() / ("bench_serve_" + std::to_string(::getpid()) + ".json");
  fs::remove(result_path);
  std::vector<std::string> argv = {"/usr/bin/timeout",
                                   "60",
                                   LATTICE_BINARY,
                                   "bench",
                                   "serve",
                                   "--host",
                                   "127.0.0.1",
                                   "--result-json",
                                   result_path.string()};
  argv.insert(argv.end(), args.begin(), args.end());
  BenchRun run;
  run.process = testing::RunProcess(argv);
  if (fs::exists(result_path) && fs::file_size(result_path) > 0)
    run.result = testing::ReadJson(result_path);
  fs::remove(result_path);
  return run;
}

int64_t Sum(const json& values) {
  int64_t sum = 0;
  for (const json& v : values) sum += v.get<int64_t>();
  return sum;
}

// The per-request arrays agree with each other and with the totals; every statistic
// exists and is ordered.
void ExpectConsistent(const json& r) {
  for (const char* key : {"date",
                          "backend",
                          "server",
                          "model_id",
                          "model",
                          "dataset_name",
                          "num_prompts",
                          "seed",
                          "request_rate",
                          "burstiness",
                          "max_concurrency",
                          "ignore_eos",
                          "temperature",
                          "top_p",
                          "top_k",
                          "logprobs",
                          "time_limit",
                          "num_requests_sent",
                          "stopped_at_time_limit",
                          "completed",
                          "failed",
                          "duration",
                          "total_input_tokens",
                          "total_output_tokens",
                          "total_cached_tokens",
                          "request_throughput",
                          "output_throughput",
                          "total_token_throughput",
                          "input_lens",
                          "output_lens",
                          "cached_lens",
                          "ttfts",
                          "itls",
                          "errors"}) {
    ASSERT_TRUE(r.contains(key)) << key;
  }
  const int64_t sent = r["num_requests_sent"];
  EXPECT_EQ(r["completed"].get<int64_t>() + r["failed"].get<int64_t>(), sent);
  for (const char* array :
       {"input_lens", "output_lens", "cached_lens", "ttfts", "itls", "errors"}) {
    ASSERT_EQ(r[array].size(), static_cast<size_t>(sent)) << array;
  }
  int64_t completed = 0, input = 0;
  std::vector<double> ttfts;
  for (int64_t i = 0; i < sent; ++i) {
    if (r["errors"][i] != "") {
      EXPECT_EQ(r["output_lens"][i], 0);
      EXPECT_TRUE(r["itls"][i].empty());
      continue;
    }
    ++completed;
    input += r["input_lens"][i].get<int64_t>();
    ttfts.push_back(r["ttfts"][i].get<double>() * 1000);
    EXPECT_GT(r["ttfts"][i].get<double>(), 0.0);
    // One ITL per output token after the first.
    EXPECT_EQ(r["itls"][i].size(), r["output_lens"][i].get<size_t>() - 1) << "request " << i;
    EXPECT_LE(r["cached_lens"][i].get<int64_t>(), r["input_lens"][i].get<int64_t>());
  }
  EXPECT_EQ(r["completed"], completed);
  EXPECT_EQ(r["total_input_tokens"], input);
  EXPECT_EQ(r["total_output_tokens"], Sum(r["output_lens"]));
  EXPECT_EQ(r["total_cached_tokens"], Sum(r["cached_lens"]));
  for (const char* metric : {"ttft", "tpot", "itl", "e2el"}) {
    auto get = [&](const char* stat) {
      return r[std::string(stat) + "_" + metric + "_ms"].get<double>();
    };
    EXPECT_EQ(get("p50"), get("median")) << metric;
    EXPECT_LE(get("median"), get("p90")) << metric;
    EXPECT_LE(get("p90"), get("p99")) << metric;
    EXPECT_LE(get("p99"), get("max")) << metric;
    EXPECT_LE(get("mean"), get("max")) << metric;
    EXPECT_GE(get("std"), 0.0) << metric;
    if (completed > 0) {
      EXPECT_GT(get("max"), 0.0) << metric;
    }
  }
  if (!ttfts.empty()) {
    EXPECT_NEAR(r["max_ttft_ms"].get<double>(), *std::max_element(ttfts.begin(), ttfts.end()),
                1e-6);
    EXPECT_LE(r["max_ttft_ms"].get<double>(), r["max_e2el_ms"].get<double>());
  }
  const double duration = r["duration"];
  ASSERT_GT(duration, 0.0);
  EXPECT_NEAR(r["request_throughput"].get<double>(), completed / duration, 1e-9);
  EXPECT_NEAR(r["output_throughput"].get<double>(),
              r["total_output_tokens"].get<double>() / duration, 1e-6);
  EXPECT_NEAR(
      r["total_token_throughput"].get<double>(),
      (r["total_input_tokens"].get<double>() + r["total_output_tokens"].get<double>()) / duration,
      1e-6);
}

// What the server computed for these requests, absent preemption: each prompt's uncached
// tokens, and each output token but the last (sampled, never run through the model).
void ExpectServerCounted(const json& r, const v1::InstanceStatus& before,
                         const v1::InstanceStatus& after) {
  ASSERT_EQ(after.num_preemptions(), before.num_preemptions())
      << "preemption recomputes; pick a larger KV pool";
  EXPECT_EQ(after.num_computed_tokens() - before.num_computed_tokens(),
            r["total_input_tokens"].get<int64_t>() - r["total_cached_tokens"].get<int64_t>() +
                r["total_output_tokens"].get<int64_t>() - r["completed"].get<int64_t>());
  EXPECT_EQ(after.prefix_cache_hits() - before.prefix_cache_hits(),
            r["total_cached_tokens"].get<int64_t>());
  EXPECT_EQ(after.kv_blocks_used(), 0);
}

TEST(BenchServe, ReportsWhatTheServerCounted) {
  BenchServer server;
  const v1::ClusterStatus before = server.Status();
  const BenchRun run = RunBench({"--port", server.port(), "--num-prompts", "24", "--request-rate",
                                 "20", "--max-concurrency", "8", "--random-input-len", "16",
                                 "--random-output-len", "8", "--ignore-eos", "--seed", "3"});
  ASSERT_EQ(run.process.exit_code, 0) << run.process.err;
  ASSERT_FALSE(run.result.is_null());
  const json& r = run.result;
  ExpectConsistent(r);
  EXPECT_EQ(r["completed"], 24);
  EXPECT_EQ(r["failed"], 0);
  EXPECT_EQ(r["num_requests_sent"], 24);
  EXPECT_EQ(r["input_lens"], json(std::vector<int>(24, 16)));
  EXPECT_EQ(r["output_lens"], json(std::vector<int>(24, 8)));
  EXPECT_EQ(r["total_output_tokens"], 24 * 8);
  EXPECT_EQ(r["total_input_tokens"], 24 * 16);
  EXPECT_EQ(r["errors"], json(std::vector<std::string>(24, "")));
  // The settings of the run.
  EXPECT_EQ(r["request_rate"], 20.0);
  EXPECT_EQ(r["burstiness"], 1.0);
  EXPECT_EQ(r["max_concurrency"], 8);
  EXPECT_EQ(r["num_prompts"], 24);
  EXPECT_EQ(r["seed"], 3);
  EXPECT_EQ(r["dataset_name"], "random");
  EXPECT_EQ(r["random_input_len"], 16);
  EXPECT_EQ(r["ignore_eos"], true);
  EXPECT_EQ(r["stopped_at_time_limit"], false);
  EXPECT_EQ(r["server"], "127.0.0.1:" + server.port());
  EXPECT_EQ(r["model"]["vocab_size"], 512);
  EXPECT_EQ(r["model"]["max_model_len"], 256);
  EXPECT_EQ(r["model_id"], "LlamaForCausalLM");
  EXPECT_EQ(r["date"].get<std::string>().size(), 15u);  // YYYYMMDD-HHMMSS
  // 24 requests at 20/s: the seeded arrivals span about a second.
  EXPECT_GT(r["duration"].get<double>(), 0.3);
  // The server saw exactly these requests.
  const v1::ClusterStatus after = server.Idle();
  EXPECT_EQ(after.num_requests_total() - before.num_requests_total(), 24);
  ExpectServerCounted(r, before.instances(0), after.instances(0));
  // The human table on stdout; progress lines on stderr (not a terminal here).
  EXPECT_EQ(run.process.out.rfind("============ Serving Benchmark Result ============\n", 0), 0u)
      << run.process.out;
  EXPECT_NE(run.process.out.find("Successful requests:                     24"), std::string::npos);
  EXPECT_NE(run.process.out.find("P99 ITL (ms):"), std::string::npos);
  EXPECT_NE(run.process.err.find("24/24 done (0 failed)"), std::string::npos) << run.process.err;
}

TEST(BenchServe, PrefixRepetitionHitsThePrefixCache) {
  BenchServer server;
  const v1::ClusterStatus before = server.Status();
  const BenchRun run =
      RunBench({"--port", server.port(), "--dataset-name", "prefix_repetition", "--num-prompts",
                "16", "--prefix-repetition-prefix-len", "64", "--prefix-repetition-suffix-len", "8",
                "--prefix-repetition-num-prefixes", "2", "--prefix-repetition-output-len", "4",
                "--max-concurrency", "2", "--ignore-eos", "--disable-tqdm"});
  ASSERT_EQ(run.process.exit_code, 0) << run.process.err;
  const json& r = run.result;
  ExpectConsistent(r);
  EXPECT_EQ(r["completed"], 16);
  EXPECT_EQ(r["input_lens"], json(std::vector<int>(16, 72)));
  // At most the two first requests of each prefix miss; hits are whole 16-token blocks
  // of the 64-token prefix.
  int hits = 0;
  for (const json& cached : r["cached_lens"]) {
    EXPECT_EQ(cached.get<int>() % 16, 0);
    EXPECT_LE(cached.get<int>(), 64);
    hits += cached.get<int>() > 0;
  }
  EXPECT_GE(hits, 12);
  const v1::ClusterStatus after = server.Idle();
  EXPECT_GT(after.instances(0).prefix_cache_hits(), before.instances(0).prefix_cache_hits());
  ExpectServerCounted(r, before.instances(0), after.instances(0));
  EXPECT_TRUE(run.process.err.empty()) << "--disable-tqdm: " << run.process.err;
}

TEST(BenchServe, TimeLimitCancelsWhatIsInFlight) {
  BenchServer server;
  const v1::ClusterStatus before = server.Status();
  // Four long requests always in flight, far more than fit in the limit.
  const auto start = std::chrono::steady_clock::now();
  const BenchRun run =
      RunBench({"--port", server.port(), "--num-prompts", "1000", "--max-concurrency", "4",
                "--random-input-len", "16", "--random-output-len", "200", "--ignore-eos",
                "--time-limit", "1.5"});
  const double wall_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_EQ(run.process.exit_code, 0) << run.process.err;
  const json& r = run.result;
  ExpectConsistent(r);
  EXPECT_EQ(r["stopped_at_time_limit"], true);
  EXPECT_EQ(r["time_limit"], 1.5);
  EXPECT_LT(r["num_requests_sent"].get<int>(), 1000);
  EXPECT_GE(r["failed"].get<int>(), 1) << "nothing was in flight at the limit";
  for (const json& error : r["errors"]) {
    if (error != "") {
      EXPECT_NE(error.get<std::string>().find("cancelled at the time limit"), std::string::npos)
          << error;
    }
  }
  EXPECT_LT(wall_s, 10.0);
  EXPECT_NE(run.process.err.find("stopped at the time limit"), std::string::npos)
      << run.process.err;
  // The server got the requests sent (one cancelled the instant it was sent may never have
  // reached it), and the cancelled ones freed their blocks.
  const v1::ClusterStatus after = server.Idle();
  const int64_t received = after.num_requests_total() - before.num_requests_total();
  EXPECT_LE(received, r["num_requests_sent"].get<int64_t>());
  EXPECT_GE(received, r["completed"].get<int64_t>());
  EXPECT_EQ(after.instances(0).kv_blocks_used(), 0);
  EXPECT_EQ(after.instances(0).num_running(), 0);
}

TEST(BenchServe, AFullQueueFailsRequestsNotTheRun) {
  BenchServer server({"--max-queued-requests", "1", "--max-num-seqs", "1"});
  const BenchRun run =
      RunBench({"--port", server.port(), "--num-prompts", "12", "--random-input-len", "8",
                "--random-output-len", "40", "--ignore-eos"});
  ASSERT_EQ(run.process.exit_code, 0) << run.process.err;
  const json& r = run.result;
  ExpectConsistent(r);
  EXPECT_EQ(r["num_requests_sent"], 12);
  EXPECT_GE(r["completed"].get<int>(), 1);  // the first always fits
  EXPECT_GE(r["failed"].get<int>(), 1);
  for (const json& error : r["errors"]) {
    if (error != "") {
      EXPECT_EQ(error.get<std::string>().rfind("RESOURCE_EXHAUSTED: ", 0), 0u) << error;
    }
  }
  EXPECT_NE(run.process.err.find("failed: RESOURCE_EXHAUSTED"), std::string::npos)
      << run.process.err;
  EXPECT_NE(run.process.out.find("Failed requests:"), std::string::npos);
}

TEST(BenchServe, LengthsFileSetsTheLengths) {
  BenchServer server;
  const fs::path lengths =
      fs::temp_directory_path() / ("bench_lengths_" + std::to_string(::getpid()) + ".txt");
  std::ofstream(lengths) << "# input output\n5 3\n20 2\n";
  const BenchRun run =
      RunBench({"--port", server.port(), "--dataset-name", "lengths", "--dataset-path",
                lengths.string(), "--num-prompts", "10", "--ignore-eos", "--disable-tqdm"});
  fs::remove(lengths);
  ASSERT_EQ(run.process.exit_code, 0) << run.process.err;
  ExpectConsistent(run.result);
  for (size_t i = 0; i < 10; ++i) {
    const int input = run.result["input_lens"][i], output = run.result["output_lens"][i];
    EXPECT_TRUE((input == 5 && output == 3) || (input == 20 && output == 2))
        << input << " " << output;
  }
}

// A port nothing listens on: bound, then closed.
std::string UnusedPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return std::to_string(ntohs(addr.sin_port));
}

TEST(BenchServe, BadFlagsExitTwoNamingTheProblem) {
  const std::string port = UnusedPort();
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"--port", port, "--num-prompts", "0"}, "--num-prompts must be in [1, 1000000], got 0"},
      {{"--port", port, "--request-rate", "0"}, "--request-rate"},
      {{"--port", port, "--max-concurrency", "0"}, "--max-concurrency"},
      {{"--port", port, "--dataset-name", "sharegpt"}, "--dataset-name"},
      {{"--port", port, "--no-such-flag"}, "no-such-flag"},
      {{"--port", port, "--num-prompts", "many"}, "--num-prompts"},
      {{"--port", port, "--ready-check-timeout-sec", "1"}, "127.0.0.1:" + port},
  };
  for (const Case& c : cases) {
    const BenchRun run = RunBench(c.args);
    EXPECT_EQ(run.process.exit_code, 2) << c.message << ": " << run.process.err;
    EXPECT_NE(run.process.err.find(c.message), std::string::npos) << run.process.err;
    EXPECT_TRUE(run.result.is_null());
  }
  // Lengths that cannot fit the served model are named against its limit.
  BenchServer server;
  const BenchRun run =
      RunBench({"--port", server.port(), "--random-input-len", "300", "--random-output-len", "8"});
  EXPECT_EQ(run.process.exit_code, 2);
  EXPECT_NE(run.process.err.find("max_model_len of 256"), std::string::npos) << run.process.err;
  EXPECT_EQ(server.Status().num_requests_total(), 0);
}

}  // namespace
}  // namespace lattice
