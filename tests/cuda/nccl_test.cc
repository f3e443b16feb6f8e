// The NCCL communicator on every visible GPU: one thread per GPU, each joining with
// ncclCommInitRank, running the same closed-form checks as the CPU backends (device
// tensors, rings through SendRecv, bf16/f16 reductions). With one GPU the group has
// one rank. Built wherever nvcc exists, run on the GPU machine (not part of ctest).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <mutex>
#include <thread>

#include "kernels/cuda/device.h"
#include "parallel/nccl/nccl_communicator.h"
#include "parallel/tcp_store.h"
#include "tests/parallel/collective_checks.h"

namespace lattice {
namespace {

// The checks' view of one GPU: copies in and out, synchronising `stream` first.
testing::CommCheckEnv DeviceEnv(cudaStream_t stream) {
  testing::CommCheckEnv env;
  env.upload = [](const Tensor& host) { return cuda::ToDevice(host); };
  env.download = [stream](const Tensor& t) {
    EXPECT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    return cuda::ToHost(t);
  };
  env.buffered_send = false;
  env.half_reductions = true;
  return env;
}

// Runs body(rank, stream) on one thread per GPU, each with its device set and a stream.
template <typename Body>
void OnGpus(int n, Body body) {
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&body, r] {
      ASSERT_EQ(cudaSetDevice(r), cudaSuccess);
      cudaStream_t stream;
      ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
      body(r, stream);
      ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
      ASSERT_EQ(cudaStreamDestroy(stream), cudaSuccess);
    });
  }
  for (std::thread& t : threads) t.join();
}

void RunChecksOn(int n) {
  ncclUniqueId id;
  ASSERT_EQ(ncclGetUniqueId(&id), ncclSuccess);
  std::vector<std::vector<std::string>> failures(n);
  OnGpus(n, [&](int r, cudaStream_t stream) {
    std::unique_ptr<Communicator> comm = MakeNcclCommunicator(id, r, n, stream);
    ASSERT_EQ(comm->rank(), r);
    ASSERT_EQ(comm->size(), n);
    ASSERT_EQ(comm->backend(), "nccl");
    failures[r] = testing::RunCollectiveChecks(*comm, DeviceEnv(stream));
  });
  for (const auto& rank_failures : failures) {
    for (const std::string& f : rank_failures) ADD_FAILURE() << f;
  }
}

TEST(CudaNccl, EveryCheckOnEveryGpu) {
  const int n = cuda::DeviceCount();
  ASSERT_GT(n, 0) << "no GPU";
  RunChecksOn(n);
}

TEST(CudaNccl, EveryCheckOnOneGpu) {
  ASSERT_GT(cuda::DeviceCount(), 0) << "no GPU";
  RunChecksOn(1);
}

TEST(CudaNccl, ProcessGroupsThroughTheStore) {
  const int n = cuda::DeviceCount();
  ASSERT_GT(n, 0) << "no GPU";
  // All GPUs as tp when there are few; tp2 x dp when there are more, with ep over the stage.
  const ParallelConfig config = n >= 4 && n % 2 == 0
                                    ? ParallelConfig{.tp = 2, .pp = 1, .dp = n / 2, .ep = n}
                                    : ParallelConfig{.tp = n, .pp = 1, .dp = 1, .ep = 1};
  const RankLayout layout = *RankLayout::Create(n, config);
  auto server =
      *TcpStoreServer::Start({.bind_address = "127.0.0.1", .port = 0, .max_connections = 64});
  std::vector<std::string> failures;
  std::mutex mu;
  OnGpus(n, [&](int rank, cudaStream_t stream) {
    auto store = *TcpStoreClient::Connect("127.0.0.1", server->port());
    absl::StatusOr<ProcessGroups> groups = MakeNcclProcessGroups(layout, rank, *store, stream);
    ASSERT_TRUE(groups.ok()) << groups.status();
    const testing::CommCheckEnv env = DeviceEnv(stream);
    auto check = [&](const char* name, Communicator& comm, const std::vector<int>& ranks) {
      int64_t want = 0;
      for (int r : ranks) want += r + 1;
      const int64_t got = testing::SumOverGroup(comm, rank + 1, env);
      if (got != want) {
        std::lock_guard<std::mutex> lock(mu);
        failures.push_back(std::string(name) + " of rank " + std::to_string(rank) + ": " +
                           std::to_string(got) + ", want " + std::to_string(want));
      }
    };
    std::vector<int> world(n);
    for (int r = 0; r < n; ++r) world[r] = r;
    check("world", *groups->world, world);
    check("tp", *groups->tp, layout.TpGroup(rank));
    check("pp", *groups->pp, layout.PpGroup(rank));
    check("dp", *groups->dp, layout.DpGroup(rank));
    check("ep", *groups->ep, layout.EpGroup(rank));
    groups->world->Barrier();
  });
  for (const std::string& f : failures) ADD_FAILURE() << f;
}

}  // namespace
}  // namespace lattice
