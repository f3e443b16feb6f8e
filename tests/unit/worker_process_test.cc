// The worker process's pure parts: byte sizes (--kv-cache-memory) and rank discovery
// from flags and env; what fails before any connection (a CUDA device, a coordinator
// that never answers). The control-plane protocol is tested end to end with real
// workers against the real coordinator.
#include "worker/worker_process.h"

#include "worker/device_model.h"
#include "worker/model_config.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <map>
#include <string>

namespace lattice {
namespace {

std::string FixtureDir(const std::string& name) {
  return std::string(LATTICE_SOURCE_DIR) + "/tests/fixtures/models/" + name;
}

TEST(ParseByteSizeTest, PlainBytesAndBinaryUnits) {
  EXPECT_EQ(*ParseByteSize("0"), 0);
  EXPECT_EQ(*ParseByteSize("4096"), 4096);
  EXPECT_EQ(*ParseByteSize("7B"), 7);
  EXPECT_EQ(*ParseByteSize("512K"), 512 << 10);
  EXPECT_EQ(*ParseByteSize("512M"), int64_t{512} << 20);
  EXPECT_EQ(*ParseByteSize("256m"), int64_t{256} << 20);
  EXPECT_EQ(*ParseByteSize("2G"), int64_t{2} << 30);
  EXPECT_EQ(*ParseByteSize("3T"), int64_t{3} << 40);
  EXPECT_EQ(*ParseByteSize("2Gi"), int64_t{2} << 30);
  EXPECT_EQ(*ParseByteSize("2GiB"), int64_t{2} << 30);
  EXPECT_EQ(*ParseByteSize("2gb"), int64_t{2} << 30);
  EXPECT_EQ(*ParseByteSize("1KiB"), 1024);
}

TEST(ParseByteSizeTest, RejectsWhatIsNotASize) {
  for (const char* text : {"", "M", "-1", "-1G", "1.5G", "1 G", " 1G", "1G ", "1X", "1iB", "1GG",
                           "1Gb2", "+5", "0x10", "1e9"}) {
    const absl::StatusOr<int64_t> parsed = ParseByteSize(text);
    ASSERT_FALSE(parsed.ok()) << "'" << text << "' parsed as " << *parsed;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(parsed.status().message().find(std::string("'") + text + "'"), std::string::npos)
        << parsed.status();
  }
}

TEST(ParseByteSizeTest, RejectsOverflow) {
  EXPECT_EQ(*ParseByteSize("8388607T"), int64_t{8388607} << 40);  // the largest whole T
  EXPECT_FALSE(ParseByteSize("8388608T").ok());
  EXPECT_EQ(*ParseByteSize("9223372036854775807"), INT64_MAX);
  EXPECT_FALSE(ParseByteSize("9223372036854775808").ok());
  EXPECT_FALSE(ParseByteSize("99999999999999999999G").ok());
}

// Clears the variables DiscoverWorkerRank reads for one test and restores them after.
class ScopedRankEnv {
 public:
  ScopedRankEnv() {
    for (const char* name : {"LWS_WORKER_INDEX", "RANK"}) {
      if (const char* value = std::getenv(name)) saved_[name] = value;
      ::unsetenv(name);
    }
  }
  ~ScopedRankEnv() {
    ::unsetenv("LWS_WORKER_INDEX");
    ::unsetenv("RANK");
    for (const auto& [name, value] : saved_) ::setenv(name.c_str(), value.c_str(), 1);
  }
  void Set(const char* name, const char* value) { ::setenv(name, value, 1); }

 private:
  std::map<std::string, std::string> saved_;
};

TEST(DiscoverWorkerRankTest, NothingSetLetsTheCoordinatorAssign) {
  ScopedRankEnv env;
  EXPECT_EQ(*DiscoverWorkerRank(std::nullopt), -1);
}

TEST(DiscoverWorkerRankTest, FlagWinsOverEveryVariable) {
  ScopedRankEnv env;
  env.Set("LWS_WORKER_INDEX", "3");
  env.Set("RANK", "5");
  EXPECT_EQ(*DiscoverWorkerRank(2), 2);
  EXPECT_EQ(*DiscoverWorkerRank(0), 0);
  // An explicit -1 asks the coordinator even where the launcher set a rank.
  EXPECT_EQ(*DiscoverWorkerRank(-1), -1);
}

TEST(DiscoverWorkerRankTest, LeaderWorkerSetIndexBeforeRank) {
  ScopedRankEnv env;
  env.Set("RANK", "5");
  EXPECT_EQ(*DiscoverWorkerRank(std::nullopt), 5);
  env.Set("LWS_WORKER_INDEX", "3");
  EXPECT_EQ(*DiscoverWorkerRank(std::nullopt), 3);
}

TEST(DiscoverWorkerRankTest, EmptyVariablesCountAsUnset) {
  ScopedRankEnv env;
  env.Set("LWS_WORKER_INDEX", "");
  EXPECT_EQ(*DiscoverWorkerRank(std::nullopt), -1);
  env.Set("RANK", "4");
  EXPECT_EQ(*DiscoverWorkerRank(std::nullopt), 4);
}

TEST(DiscoverWorkerRankTest, BadValuesNameTheirSource) {
  {
    ScopedRankEnv env;
    env.Set("LWS_WORKER_INDEX", "two");
    env.Set("RANK", "1");  // not consulted: the first variable set decides
    const absl::StatusOr<int> rank = DiscoverWorkerRank(std::nullopt);
    ASSERT_FALSE(rank.ok());
    EXPECT_EQ(rank.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(rank.status().message().find("LWS_WORKER_INDEX='two'"), std::string::npos)
        << rank.status();
  }
  for (const char* value : {"-1", "1x", " 1", "99999999999"}) {
    ScopedRankEnv env;
    env.Set("RANK", value);
    const absl::StatusOr<int> rank = DiscoverWorkerRank(std::nullopt);
    ASSERT_FALSE(rank.ok()) << "RANK='" << value << "'";
    EXPECT_NE(rank.status().message().find("RANK="), std::string::npos) << rank.status();
  }
  const absl::StatusOr<int> flag = DiscoverWorkerRank(-2);
  ASSERT_FALSE(flag.ok());
  EXPECT_NE(flag.status().message().find("--rank -2"), std::string::npos) << flag.status();
}

TEST(RunWorkerTest, AnUnknownDeviceIsInvalidArgument) {
  WorkerOptions options;
  options.coordinator = "127.0.0.1:1";
  options.device = "tpu";
  const absl::Status status = RunWorker(options);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("--device tpu"), std::string::npos) << status;
}

// Without a GPU (CI), the CUDA model says why instead of failing later: UNAVAILABLE
// in a CUDA build, UNIMPLEMENTED in a build without nvcc.
TEST(RunWorkerTest, TheCudaModelExplainsAMissingGpuOrBackend) {
  const absl::StatusOr<ModelConfig> config = LoadModelConfig(FixtureDir("llama_gqa_f32"));
  ASSERT_TRUE(config.ok()) << config.status();
  DeviceModelOptions options;
  options.model_dir = FixtureDir("llama_gqa_f32");
  const absl::StatusOr<std::unique_ptr<DeviceModel>> model = MakeCudaModel(*config, options);
  if (model.ok()) GTEST_SKIP() << "a GPU is present";
  EXPECT_TRUE(model.status().code() == absl::StatusCode::kUnavailable ||
              model.status().code() == absl::StatusCode::kUnimplemented)
      << model.status();
  EXPECT_NE(model.status().message().find("--device cuda"), std::string::npos) << model.status();
}

// A port that refuses connections: bound, never listened on.
int ClosedPort(int* fd) {
  *fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (::bind(*fd, reinterpret_cast<sockaddr*>(&addr), len) != 0) return -1;
  ::getsockname(*fd, reinterpret_cast<sockaddr*>(&addr), &len);
  return ntohs(addr.sin_port);
}

TEST(RunWorkerTest, GivesUpOnACoordinatorThatNeverAnswersAfterTheConnectTimeout) {
  int fd = -1;
  const int port = ClosedPort(&fd);
  ASSERT_GT(port, 0);
  WorkerOptions options;
  options.coordinator = "127.0.0.1:" + std::to_string(port);
  options.rank = 0;
  options.connect_timeout = std::chrono::milliseconds(700);
  const auto start = std::chrono::steady_clock::now();
  const absl::Status status = RunWorker(options);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ::close(fd);
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
  EXPECT_NE(status.message().find(options.coordinator), std::string::npos) << status;
  EXPECT_GE(elapsed, std::chrono::milliseconds(600));
  EXPECT_LT(elapsed, std::chrono::seconds(10));
}

}  // namespace
}  // namespace lattice

namespace lattice {
namespace {

TEST(KvCacheMemory, BytesOrAFractionOfAvailableMemory) {
  EXPECT_EQ(ParseKvCacheMemory("512M").value(), int64_t{512} << 20);
  const absl::StatusOr<int64_t> half = ParseKvCacheMemory("0.5");
  ASSERT_TRUE(half.ok()) << half.status();
  const absl::StatusOr<int64_t> quarter = ParseKvCacheMemory("0.25");
  ASSERT_TRUE(quarter.ok());
  EXPECT_GT(*half, 0);
  // MemAvailable moves a little between the two reads.
  EXPECT_NEAR(static_cast<double>(*quarter) / static_cast<double>(*half), 0.5, 0.05);
  for (const char* bad : {"0.0", "1.5", "-0.2", "0.x"}) EXPECT_FALSE(ParseKvCacheMemory(bad).ok()) << bad;
}

}  // namespace
}  // namespace lattice
