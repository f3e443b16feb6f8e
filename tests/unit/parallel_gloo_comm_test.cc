// The gloo backend with real processes on loopback: this test hosts a TcpStoreServer
// and starts N copies of parallel_test_worker, one per rank; each builds its
// communicator through the store and runs every closed-form check (or a whole layout
// of process groups), exiting 0 only if all passed. Every wait is bounded.
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "parallel/tcp_store.h"
#include "tests/parallel/child_processes.h"

namespace lattice {
namespace {

using std::chrono::milliseconds;
using testing::ChildSpec;
using testing::RunChildren;

std::unique_ptr<TcpStoreServer> StartStore() {
  auto server =
      TcpStoreServer::Start({.bind_address = "127.0.0.1", .port = 0, .max_connections = 4096});
  EXPECT_TRUE(server.ok()) << server.status();
  return *std::move(server);
}

void ExpectAllOk(const std::vector<testing::ChildResult>& results) {
  for (size_t r = 0; r < results.size(); ++r) {
    EXPECT_TRUE(results[r].ok()) << "rank " << r << ": " << results[r].Describe();
  }
}

class ParallelGlooCommSizes : public ::testing::TestWithParam<int> {};

TEST_P(ParallelGlooCommSizes, EveryCheckInRealProcesses) {
  const int size = GetParam();
  auto store = StartStore();
  std::vector<ChildSpec> children;
  for (int r = 0; r < size; ++r) {
    children.push_back({.argv = {testing::ParallelTestWorker(), "gloo", std::to_string(r),
                                 std::to_string(size), std::to_string(store->port()), "checks"},
                        .env = {},
                        .stdout_path = ""});
  }
  ExpectAllOk(RunChildren(children, milliseconds(90'000)));
}

INSTANTIATE_TEST_SUITE_P(Parallel, ParallelGlooCommSizes, ::testing::Values(2, 3, 4, 8));

TEST(ParallelGlooComm, WholeLayoutOfProcessGroups) {
  // 8 processes: tp2 pp2 dp2 with ep over each stage's 4 ranks; then tp1 pp4 dp2.
  const std::vector<std::array<int, 4>> layouts = {{2, 2, 2, 4}, {1, 4, 2, 1}};
  for (const auto& [tp, pp, dp, ep] : layouts) {
    auto store = StartStore();
    std::vector<ChildSpec> children;
    for (int r = 0; r < tp * pp * dp; ++r) {
      children.push_back({.argv = {testing::ParallelTestWorker(), "groups", std::to_string(r),
                                   std::to_string(store->port()), std::to_string(tp),
                                   std::to_string(pp), std::to_string(dp), std::to_string(ep)},
                          .env = {},
                          .stdout_path = ""});
    }
    SCOPED_TRACE(absl::StrCat("tp", tp, " pp", pp, " dp", dp, " ep", ep));
    ExpectAllOk(RunChildren(children, milliseconds(90'000)));
  }
}

TEST(ParallelGlooComm, APeerThatDiesAbortsTheOtherInsteadOfHanging) {
  auto store = StartStore();
  std::vector<ChildSpec> children;
  for (int r = 0; r < 2; ++r) {
    children.push_back({.argv = {testing::ParallelTestWorker(), "peer-dies", std::to_string(r),
                                 std::to_string(store->port()), "5000"},
                        .env = {},
                        .stdout_path = ""});
  }
  const auto start = std::chrono::steady_clock::now();
  const std::vector<testing::ChildResult> results = RunChildren(children, milliseconds(30'000));
  EXPECT_TRUE(results[1].ok()) << results[1].Describe();
  EXPECT_FALSE(results[0].timed_out);
  EXPECT_EQ(results[0].signal, SIGABRT) << results[0].Describe();
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(20'000));
}

}  // namespace
}  // namespace lattice
