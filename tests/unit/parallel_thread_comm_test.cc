// The solo and thread communicators: every closed-form check on 1, 2, 3, 4 and 8
// ranks, barrier semantics, mismatch detection, and whole layouts of ProcessGroups.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>

#include "parallel/communicator.h"
#include "parallel/process_groups.h"
#include "tests/parallel/collective_checks.h"

namespace lattice {
namespace {

// Runs body(rank) on one thread per rank and joins them.
template <typename Body>
void OnThreads(int size, Body body) {
  std::vector<std::thread> threads;
  for (int r = 0; r < size; ++r) threads.emplace_back([&body, r] { body(r); });
  for (std::thread& t : threads) t.join();
}

TEST(ParallelThreadComm, SoloPassesEveryCheck) {
  std::unique_ptr<Communicator> solo = MakeSoloCommunicator();
  EXPECT_EQ(solo->size(), 1);
  EXPECT_EQ(solo->backend(), "solo");
  const std::vector<std::string> failures = testing::RunCollectiveChecks(*solo);
  for (const std::string& f : failures) ADD_FAILURE() << f;
}

class ParallelThreadCommSizes : public ::testing::TestWithParam<int> {};

TEST_P(ParallelThreadCommSizes, EveryCheck) {
  const int size = GetParam();
  auto comms = MakeThreadCommunicators(size, std::chrono::seconds(30));
  std::vector<std::vector<std::string>> failures(size);
  OnThreads(size, [&](int r) {
    ASSERT_EQ(comms[r]->rank(), r);
    ASSERT_EQ(comms[r]->size(), size);
    failures[r] = testing::RunCollectiveChecks(*comms[r]);
  });
  for (const auto& rank_failures : failures) {
    for (const std::string& f : rank_failures) ADD_FAILURE() << f;
  }
}

INSTANTIATE_TEST_SUITE_P(Parallel, ParallelThreadCommSizes, ::testing::Values(1, 2, 3, 4, 8));

TEST(ParallelThreadComm, BarrierHoldsEveryoneUntilAllArrive) {
  constexpr int kSize = 4, kRounds = 50;
  auto comms = MakeThreadCommunicators(kSize, std::chrono::seconds(30));
  std::atomic<int> arrived{0};
  std::atomic<int> violations{0};
  OnThreads(kSize, [&](int r) {
    for (int round = 1; round <= kRounds; ++round) {
      arrived.fetch_add(1);
      comms[r]->Barrier();
      // Nobody leaves round k before all kSize * k arrivals of it happened.
      if (arrived.load() < kSize * round) violations.fetch_add(1);
      comms[r]->Barrier();  // nobody starts round k+1 before everyone checked round k
    }
  });
  EXPECT_EQ(violations.load(), 0);
}

TEST(ParallelThreadComm, SumsInRankOrderSoEveryRankAgreesBitwise) {
  // 1e8 + 1 - 1e8 in f32 depends on the order; rank order gives 0 everywhere.
  auto comms = MakeThreadCommunicators(3, std::chrono::seconds(30));
  const float values[3] = {1e8f, 1.0f, -1e8f};
  std::vector<float> results(3);
  OnThreads(3, [&](int r) {
    Tensor t = Tensor::FromVector({values[r]}, {1});
    comms[r]->AllReduce(t);
    results[r] = t.data<float>()[0];
  });
  EXPECT_EQ(results[0], (1e8f + 1.0f) + -1e8f);
  EXPECT_EQ(results[1], results[0]);
  EXPECT_EQ(results[2], results[0]);
}

TEST(ParallelThreadCommDeathTest, MismatchedCollectivesAbort) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        auto comms = MakeThreadCommunicators(2, std::chrono::seconds(5));
        OnThreads(2, [&](int r) {
          Tensor t = Tensor::Zeros(DType::kF32, {r == 0 ? 4 : 5});
          comms[r]->AllReduce(t);
        });
      },
      "AllReduce\\(sum\\) mismatch");
  EXPECT_DEATH(
      {
        auto comms = MakeThreadCommunicators(2, std::chrono::seconds(5));
        OnThreads(2, [&](int r) {
          Tensor t = Tensor::Zeros(DType::kF32, {4});
          if (r == 0) comms[r]->AllReduce(t);
          if (r == 1) comms[r]->Barrier();
        });
      },
      "rank [01] called (AllReduce\\(sum\\)|Barrier) while rank [01] called");
}

TEST(ParallelThreadCommDeathTest, RecvChecksTheSizeAndTimesOut) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        auto comms = MakeThreadCommunicators(2, std::chrono::seconds(5));
        comms[0]->Send(Tensor::Zeros(DType::kF32, {3}), 1);
        Tensor t = Tensor::Zeros(DType::kF32, {4});
        comms[1]->Recv(t, 0);
      },
      "message of 12 bytes into f32\\[4\\] \\(16 bytes\\)");
  EXPECT_DEATH(
      {
        auto comms = MakeThreadCommunicators(2, std::chrono::milliseconds(200));
        Tensor t = Tensor::Zeros(DType::kF32, {4});
        comms[1]->Recv(t, 0, 7);
      },
      "rank 1 waited 200ms in Recv from 0, tag 7");
  EXPECT_DEATH(
      {
        auto comms = MakeThreadCommunicators(2, std::chrono::milliseconds(200));
        comms[0]->Barrier();
      },
      "rank 0 waited 200ms in Barrier for the other ranks \\(1 of 2 arrived\\)");
}

TEST(ParallelThreadComm, WholeLayoutsOfProcessGroups) {
  const ParallelConfig configs[] = {
      {.tp = 2, .pp = 2, .dp = 2, .ep = 4},
      {.tp = 4, .pp = 1, .dp = 1, .ep = 1},
      {.tp = 1, .pp = 3, .dp = 1, .ep = 1},
      {.tp = 2, .pp = 1, .dp = 3, .ep = 6},
  };
  for (const ParallelConfig& config : configs) {
    SCOPED_TRACE(config.ToString());
    const RankLayout layout = *RankLayout::Create(config.world_size(), config);
    std::vector<ProcessGroups> groups = MakeThreadProcessGroups(layout);
    ASSERT_EQ(static_cast<int>(groups.size()), layout.world_size());
    std::vector<std::string> failures;
    std::mutex mu;
    OnThreads(layout.world_size(), [&](int rank) {
      ProcessGroups& g = groups[rank];
      auto check = [&](const char* name, Communicator& comm, const std::vector<int>& ranks) {
        int64_t want = 0;
        for (int r : ranks) want += r + 1;
        const int64_t got = testing::SumOverGroup(comm, rank + 1);
        const auto it = std::find(ranks.begin(), ranks.end(), rank);
        if (got != want || comm.size() != static_cast<int>(ranks.size()) ||
            comm.rank() != it - ranks.begin()) {
          std::lock_guard<std::mutex> lock(mu);
          failures.push_back(std::string(name) + " of rank " + std::to_string(rank));
        }
      };
      std::vector<int> world(layout.world_size());
      for (int r = 0; r < layout.world_size(); ++r) world[r] = r;
      check("world", *g.world, world);
      check("tp", *g.tp, layout.TpGroup(rank));
      check("pp", *g.pp, layout.PpGroup(rank));
      check("dp", *g.dp, layout.DpGroup(rank));
      check("ep", *g.ep, layout.EpGroup(rank));
      if (g.coords.rank != rank) {
        std::lock_guard<std::mutex> lock(mu);
        failures.push_back("coords of rank " + std::to_string(rank));
      }
    });
    for (const std::string& f : failures) ADD_FAILURE() << f;
  }
}

}  // namespace
}  // namespace lattice
