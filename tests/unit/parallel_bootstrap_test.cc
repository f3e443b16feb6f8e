// DiscoverLaunch: flags, torchrun-style env, LeaderWorkerSet env, a single process, the
// errors that name the variable, and the real mpirun path (4 ranks of the worker).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>

#include "parallel/bootstrap.h"
#include "tests/parallel/child_processes.h"

namespace lattice {
namespace {

using std::chrono::milliseconds;

// Every variable DiscoverLaunch reads: cleared for the test, restored after.
class ScopedLaunchEnv {
 public:
  ScopedLaunchEnv() {
    for (const char* name : kNames) {
      if (const char* value = std::getenv(name)) saved_[name] = value;
      ::unsetenv(name);
    }
  }
  ~ScopedLaunchEnv() {
    for (const char* name : kNames) ::unsetenv(name);
    for (const auto& [name, value] : saved_) ::setenv(name.c_str(), value.c_str(), 1);
  }
  void Set(const char* name, const std::string& value) { ::setenv(name, value.c_str(), 1); }

 private:
  static constexpr const char* kNames[] = {"OMPI_COMM_WORLD_RANK",
                                           "OMPI_COMM_WORLD_SIZE",
                                           "OMPI_COMM_WORLD_LOCAL_RANK",
                                           "PMIX_RANK",
                                           "RANK",
                                           "WORLD_SIZE",
                                           "LOCAL_RANK",
                                           "MASTER_ADDR",
                                           "MASTER_PORT",
                                           "LWS_WORKER_INDEX",
                                           "LWS_GROUP_SIZE",
                                           "LWS_LEADER_ADDRESS",
                                           "LATTICE_STORE_PORT"};
  std::map<std::string, std::string> saved_;
};

LaunchFlags NoStore() {
  LaunchFlags flags;
  flags.host_store = false;
  return flags;
}

void ExpectInvalid(const absl::StatusOr<LaunchInfo>& info, const std::string& fragment) {
  ASSERT_FALSE(info.ok()) << "wanted an error containing: " << fragment;
  EXPECT_EQ(info.status().code(), absl::StatusCode::kInvalidArgument) << info.status();
  EXPECT_NE(info.status().message().find(fragment), std::string::npos) << info.status();
}

TEST(ParallelBootstrap, NothingSetIsOneProcessHostingItsOwnStore) {
  ScopedLaunchEnv env;
  absl::StatusOr<LaunchInfo> info = DiscoverLaunch({});
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->rank, 0);
  EXPECT_EQ(info->world_size, 1);
  EXPECT_FALSE(info->under_mpi);
  EXPECT_EQ(info->source, "single");
  ASSERT_NE(info->store_server, nullptr);
  EXPECT_EQ(info->store_port, info->store_server->port());
  auto client = ConnectStore(*info);
  ASSERT_TRUE(client.ok()) << client.status();
  ASSERT_TRUE((*client)->Set("k", "v").ok());
  EXPECT_EQ(*(*client)->Get("k"), "v");
}

TEST(ParallelBootstrap, TorchrunStyleEnv) {
  ScopedLaunchEnv env;
  env.Set("RANK", "2");
  env.Set("WORLD_SIZE", "4");
  env.Set("LOCAL_RANK", "0");
  env.Set("MASTER_ADDR", "10.1.2.3");
  env.Set("MASTER_PORT", "29555");
  absl::StatusOr<LaunchInfo> info = DiscoverLaunch(NoStore());
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->rank, 2);
  EXPECT_EQ(info->world_size, 4);
  EXPECT_EQ(info->local_rank, 0);
  EXPECT_EQ(info->store_host, "10.1.2.3");
  EXPECT_EQ(info->store_port, 29555);
  EXPECT_EQ(info->source, "env");
  EXPECT_FALSE(info->under_mpi);
  EXPECT_EQ(info->store_server, nullptr);

  // Flags win over the env for the store address.
  LaunchFlags flags = NoStore();
  flags.store_host = "store.local";
  flags.store_port = 31000;
  info = DiscoverLaunch(flags);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->store_host, "store.local");
  EXPECT_EQ(info->store_port, 31000);
}

TEST(ParallelBootstrap, RankZeroHostsTheStoreOnMasterPort) {
  ScopedLaunchEnv env;
  int port;
  {  // a port that was free a moment ago
    auto probe =
        *TcpStoreServer::Start({.bind_address = "127.0.0.1", .port = 0, .max_connections = 1});
    port = probe->port();
  }
  env.Set("RANK", "0");
  env.Set("WORLD_SIZE", "2");
  env.Set("MASTER_ADDR", "127.0.0.1");
  env.Set("MASTER_PORT", std::to_string(port));
  absl::StatusOr<LaunchInfo> info = DiscoverLaunch({});
  ASSERT_TRUE(info.ok()) << info.status();
  ASSERT_NE(info->store_server, nullptr);
  EXPECT_EQ(info->store_server->port(), port);
  // Rank 1 finds it through the same variables.
  env.Set("RANK", "1");
  absl::StatusOr<LaunchInfo> other = DiscoverLaunch({});
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_EQ(other->store_server, nullptr);
  auto a = ConnectStore(*info);
  auto b = ConnectStore(*other);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE((*a)->Set("from0", "hello").ok());
  EXPECT_EQ(*(*b)->Get("from0"), "hello");
}

TEST(ParallelBootstrap, EnvErrorsNameTheVariable) {
  {
    ScopedLaunchEnv env;
    env.Set("RANK", "1");
    ExpectInvalid(DiscoverLaunch(NoStore()), "WORLD_SIZE is not set");
  }
  {
    ScopedLaunchEnv env;
    env.Set("WORLD_SIZE", "2");
    ExpectInvalid(DiscoverLaunch(NoStore()), "RANK is not set");
  }
  {
    ScopedLaunchEnv env;
    env.Set("RANK", "abc");
    env.Set("WORLD_SIZE", "2");
    ExpectInvalid(DiscoverLaunch(NoStore()), "RANK=abc is not an integer");
  }
  {
    ScopedLaunchEnv env;
    env.Set("RANK", "4");
    env.Set("WORLD_SIZE", "4");
    ExpectInvalid(DiscoverLaunch(NoStore()), "RANK=4 is not in [0, WORLD_SIZE=4)");
  }
  {
    ScopedLaunchEnv env;
    env.Set("RANK", "0");
    env.Set("WORLD_SIZE", "0");
    ExpectInvalid(DiscoverLaunch(NoStore()), "WORLD_SIZE=0 must be >= 1");
  }
  {
    ScopedLaunchEnv env;
    env.Set("RANK", "1");
    env.Set("WORLD_SIZE", "2");
    env.Set("MASTER_PORT", "29500");
    ExpectInvalid(DiscoverLaunch(NoStore()), "MASTER_ADDR");
  }
  {
    ScopedLaunchEnv env;
    env.Set("RANK", "1");
    env.Set("WORLD_SIZE", "2");
    env.Set("MASTER_ADDR", "h");
    ExpectInvalid(DiscoverLaunch(NoStore()), "MASTER_PORT");
    env.Set("MASTER_PORT", "70000");
    ExpectInvalid(DiscoverLaunch(NoStore()), "MASTER_PORT=70000 is not a port");
    env.Set("MASTER_PORT", "x1");
    ExpectInvalid(DiscoverLaunch(NoStore()), "MASTER_PORT=x1 is not an integer");
  }
  {
    ScopedLaunchEnv env;
    env.Set("RANK", "0");
    env.Set("WORLD_SIZE", "1");
    env.Set("LOCAL_RANK", "zero");
    ExpectInvalid(DiscoverLaunch(NoStore()), "LOCAL_RANK=zero is not an integer");
  }
}

TEST(ParallelBootstrap, Flags) {
  ScopedLaunchEnv env;
  LaunchFlags flags = NoStore();
  flags.rank = 3;
  flags.world_size = 8;
  flags.store_host = "10.0.0.9";
  flags.store_port = 4000;
  absl::StatusOr<LaunchInfo> info = DiscoverLaunch(flags);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->rank, 3);
  EXPECT_EQ(info->world_size, 8);
  EXPECT_EQ(info->source, "flags");
  EXPECT_EQ(info->store_host, "10.0.0.9");
  EXPECT_EQ(info->store_port, 4000);

  // Flags take precedence over RANK/WORLD_SIZE in the env.
  env.Set("RANK", "0");
  env.Set("WORLD_SIZE", "2");
  info = DiscoverLaunch(flags);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->rank, 3);

  LaunchFlags half = NoStore();
  half.rank = 1;
  ExpectInvalid(DiscoverLaunch(half), "--rank is set but --world-size is not");
  half = NoStore();
  half.world_size = 2;
  ExpectInvalid(DiscoverLaunch(half), "--world-size is set but --rank is not");
  flags.rank = 8;
  ExpectInvalid(DiscoverLaunch(flags), "--rank=8 is not in [0, --world-size=8)");
  flags.rank = 0;
  flags.store_port = 0;
  ExpectInvalid(DiscoverLaunch(flags), "--store-port=0 is not a port");
}

TEST(ParallelBootstrap, LeaderWorkerSet) {
  ScopedLaunchEnv env;
  env.Set("LWS_WORKER_INDEX", "3");
  env.Set("LWS_GROUP_SIZE", "4");
  env.Set("LWS_LEADER_ADDRESS", "lattice-0.lattice.default");
  absl::StatusOr<LaunchInfo> info = DiscoverLaunch(NoStore());
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->rank, 3);
  EXPECT_EQ(info->world_size, 4);
  EXPECT_EQ(info->store_host, "lattice-0.lattice.default");
  EXPECT_EQ(info->store_port, kDefaultStorePort);
  EXPECT_EQ(info->source, "lws");

  env.Set("LATTICE_STORE_PORT", "31000");
  info = DiscoverLaunch(NoStore());
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->store_port, 31000);

  LaunchFlags flags = NoStore();
  flags.store_port = 32000;
  info = DiscoverLaunch(flags);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->store_port, 32000);

  env.Set("LATTICE_STORE_PORT", "0");
  ExpectInvalid(DiscoverLaunch(NoStore()), "LATTICE_STORE_PORT=0 is not a port");
}

TEST(ParallelBootstrap, LeaderWorkerSetErrors) {
  {
    ScopedLaunchEnv env;
    env.Set("LWS_WORKER_INDEX", "1");
    ExpectInvalid(DiscoverLaunch(NoStore()), "LWS_GROUP_SIZE is not set");
  }
  {
    ScopedLaunchEnv env;
    env.Set("LWS_GROUP_SIZE", "2");
    ExpectInvalid(DiscoverLaunch(NoStore()), "LWS_WORKER_INDEX is not set");
  }
  {
    ScopedLaunchEnv env;
    env.Set("LWS_WORKER_INDEX", "1");
    env.Set("LWS_GROUP_SIZE", "2");
    ExpectInvalid(DiscoverLaunch(NoStore()), "LWS_LEADER_ADDRESS");
  }
  {
    ScopedLaunchEnv env;
    env.Set("LWS_WORKER_INDEX", "2");
    env.Set("LWS_GROUP_SIZE", "2");
    env.Set("LWS_LEADER_ADDRESS", "leader");
    ExpectInvalid(DiscoverLaunch(NoStore()), "LWS_WORKER_INDEX=2 is not in [0, LWS_GROUP_SIZE=2)");
  }
}

TEST(ParallelBootstrap, MpirunFourRanks) {
  const std::string out_path =
      ::testing::TempDir() + "/parallel_mpirun_out." + std::to_string(::getpid()) + ".txt";
  testing::ChildSpec mpirun{
      .argv = {"/usr/bin/mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "4", "--mca",
               "btl", "self,tcp", "--mca", "btl_tcp_if_include", "lo", "--mca",
               "oob_tcp_if_include", "lo", testing::ParallelTestWorker(), "mpi"},
      .env = {"OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1",
              "OMPI_MCA_plm_rsh_agent=", "OMPI_MCA_rmaps_base_oversubscribe=1"},
      .stdout_path = out_path};
  const std::vector<testing::ChildResult> results =
      testing::RunChildren({mpirun}, milliseconds(60'000));
  std::ifstream in(out_path);
  std::stringstream output;
  output << in.rdbuf();
  std::remove(out_path.c_str());
  ASSERT_TRUE(results[0].ok()) << results[0].Describe() << "\n" << output.str();
  for (int r = 0; r < 4; ++r) {
    EXPECT_NE(output.str().find("rank " + std::to_string(r) + " of 4 ok"), std::string::npos)
        << output.str();
  }
}

}  // namespace
}  // namespace lattice
