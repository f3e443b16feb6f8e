// One rank of a multi-process parallel test, started by tests/unit/parallel_*_test.cc
// (directly, or through mpirun). Exits 0 only when every check passed; prints the
// failures to stderr otherwise.
//
//   parallel_test_worker gloo <rank> <size> <store_port> <group>
//       every closed-form check on one gloo group
//   parallel_test_worker groups <rank> <store_port> <tp> <pp> <dp> <ep>
//       MakeGlooProcessGroups over the whole layout; group sums and a pp ring
//   parallel_test_worker peer-dies <rank> <store_port> <timeout_ms>
//       rank 1 exits right after a barrier; rank 0's Recv must abort, not hang
//   parallel_test_worker mpi
//       under mpirun: DiscoverLaunch, the store, a world gloo group, checks, ok line
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "parallel/bootstrap.h"
#include "parallel/gloo_communicator.h"
#include "parallel/process_groups.h"
#include "parallel/tcp_store.h"
#include "tests/parallel/collective_checks.h"

namespace lattice {
namespace {

int Int(const char* text) {
  int value = 0;
  if (!absl::SimpleAtoi(text, &value)) {
    std::fprintf(stderr, "not an integer: %s\n", text);
    std::exit(2);
  }
  return value;
}

template <typename T>
T OrDie(absl::StatusOr<T> value) {
  if (!value.ok()) {
    std::fprintf(stderr, "%s\n", std::string(value.status().ToString()).c_str());
    std::exit(3);
  }
  return *std::move(value);
}

int Report(const std::vector<std::string>& failures) {
  for (const std::string& f : failures) std::fprintf(stderr, "%s\n", f.c_str());
  return failures.empty() ? 0 : 1;
}

int Gloo(int rank, int size, int port, const std::string& group) {
  auto store = OrDie(TcpStoreClient::Connect("127.0.0.1", port));
  GlooOptions options;
  options.timeout = std::chrono::seconds(60);
  options.max_pending_send_bytes = 4096;  // small: some Sends wait for the reaper
  auto comm = OrDie(MakeGlooCommunicator(*store, group, rank, size, options));
  return Report(testing::RunCollectiveChecks(*comm));
}

int Groups(int rank, int port, const ParallelConfig& config) {
  auto store = OrDie(TcpStoreClient::Connect("127.0.0.1", port));
  const RankLayout layout = OrDie(RankLayout::Create(config.world_size(), config));
  GlooOptions options;
  options.timeout = std::chrono::seconds(60);
  ProcessGroups groups = OrDie(MakeGlooProcessGroups(layout, rank, *store, options));
  std::vector<std::string> failures;
  auto check_group = [&](const char* name, Communicator& comm, const std::vector<int>& ranks) {
    int64_t want = 0;
    for (int r : ranks) want += r + 1;
    const int64_t got = testing::SumOverGroup(comm, rank + 1);
    if (got != want || comm.size() != static_cast<int>(ranks.size())) {
      failures.push_back(std::string(name) + ": sum of rank+1 is " + std::to_string(got) +
                         ", want " + std::to_string(want));
    }
  };
  std::vector<int> world(layout.world_size());
  for (int r = 0; r < layout.world_size(); ++r) world[r] = r;
  check_group("world", *groups.world, world);
  check_group("tp", *groups.tp, layout.TpGroup(rank));
  check_group("pp", *groups.pp, layout.PpGroup(rank));
  check_group("dp", *groups.dp, layout.DpGroup(rank));
  check_group("ep", *groups.ep, layout.EpGroup(rank));
  // Stage k hands a tensor to stage k+1 (the pipeline's one transfer).
  Communicator& pp = *groups.pp;
  if (pp.size() > 1) {
    Tensor t = Tensor::Empty(DType::kF32, {4});
    if (pp.rank() > 0) {
      pp.Recv(t, pp.rank() - 1);
      if (t.data<float>()[3] != static_cast<float>(layout.PpGroup(rank)[pp.rank() - 1])) {
        failures.push_back("pp: wrong tensor from the previous stage");
      }
    }
    for (float& v : t.span<float>()) v = static_cast<float>(rank);
    if (pp.rank() + 1 < pp.size()) pp.Send(t, pp.rank() + 1);
  }
  groups.world->Barrier();
  return Report(failures);
}

int PeerDies(int rank, int port, int timeout_ms) {
  auto store = OrDie(TcpStoreClient::Connect("127.0.0.1", port));
  GlooOptions options;
  options.timeout = std::chrono::milliseconds(timeout_ms);
  auto comm = OrDie(MakeGlooCommunicator(*store, "dies", rank, 2, options));
  comm->Barrier();               // both sides are connected
  if (rank == 1) std::_Exit(0);  // then gone without a word
  Tensor t = Tensor::Empty(DType::kF32, {4});
  comm->Recv(t, 1);  // must abort
  std::fprintf(stderr, "Recv from a dead peer returned\n");
  return 1;
}

int Mpi() {
  LaunchFlags flags;
  flags.store_host = "127.0.0.1";
  const LaunchInfo info = OrDie(DiscoverLaunch(flags));
  int code = 0;
  {
    auto store = OrDie(ConnectStore(info));
    GlooOptions options;
    options.timeout = std::chrono::seconds(60);
    auto world = OrDie(MakeGlooCommunicator(*store, "world", info.rank, info.world_size, options));
    std::vector<std::string> failures;
    if (!info.under_mpi) failures.push_back("not detected as running under mpirun");
    // Distinct ranks 0..n-1: gather them and look.
    Tensor mine = Tensor::Empty(DType::kI32, {1});
    mine.data<int32_t>()[0] = info.rank;
    Tensor all = Tensor::Empty(DType::kI32, {info.world_size});
    world->AllGather(mine, all);
    for (int r = 0; r < info.world_size; ++r) {
      if (all.data<int32_t>()[r] != r) failures.push_back("ranks are not 0..n-1 in order");
    }
    const int64_t sum = testing::SumOverGroup(*world, info.rank + 1);
    if (sum != int64_t{info.world_size} * (info.world_size + 1) / 2) {
      failures.push_back("all-reduce of rank+1 is " + std::to_string(sum));
    }
    for (std::string& f : testing::CheckBitIdenticalAllReduce(*world)) failures.push_back(f);
    world->Barrier();  // rank 0 keeps the store up until everyone is done with it
    code = Report(failures);
    if (code == 0) {
      std::printf("rank %d of %d ok (local rank %d, store %s:%d)\n", info.rank, info.world_size,
                  info.local_rank, info.store_host.c_str(), info.store_port);
      std::fflush(stdout);
    }
  }
  FinalizeLaunch(info);
  return code;
}

}  // namespace
}  // namespace lattice

int main(int argc, char** argv) {
  using lattice::Int;
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "gloo" && argc == 6)
    return lattice::Gloo(Int(argv[2]), Int(argv[3]), Int(argv[4]), argv[5]);
  if (mode == "groups" && argc == 8) {
    const lattice::ParallelConfig config{
        .tp = Int(argv[4]), .pp = Int(argv[5]), .dp = Int(argv[6]), .ep = Int(argv[7])};
    return lattice::Groups(Int(argv[2]), Int(argv[3]), config);
  }
  if (mode == "peer-dies" && argc == 5)
    return lattice::PeerDies(Int(argv[2]), Int(argv[3]), Int(argv[4]));
  if (mode == "mpi" && argc == 2) return lattice::Mpi();
  std::fprintf(stderr, "usage: see the comment at the top of parallel_test_worker.cc\n");
  return 2;
}
