// Bootstrap: how a worker process learns its rank, the world size and where the
// rendezvous store is, whichever way it was launched:
//   1. under mpirun (OMPI_COMM_WORLD_RANK / OMPI_COMM_WORLD_SIZE or PMIX_RANK set): MPI
//      gives rank and size; rank 0 starts the store and MPI_Bcast's its host:port;
//   2. explicit flags (--rank, --world-size, --store-host, --store-port);
//   3. torchrun-style env: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT (LOCAL_RANK);
//   4. Kubernetes LeaderWorkerSet: LWS_WORKER_INDEX, LWS_GROUP_SIZE, LWS_LEADER_ADDRESS,
//      store port from --store-port, else LATTICE_STORE_PORT, else 29500;
//   5. none of these: a single process (rank 0 of 1).
// Missing or inconsistent values are INVALID_ARGUMENT naming the flag or variable.
// Rank 0 hosts the TcpStoreServer unless LaunchFlags::host_store is false (later the
// coordinator will host it).
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "parallel/tcp_store.h"

namespace lattice {

inline constexpr int kDefaultStorePort = 29500;

struct LaunchFlags {
  std::optional<int> rank;
  std::optional<int> world_size;
  std::optional<std::string> store_host;
  std::optional<int> store_port;
  // Rank 0 starts a TcpStoreServer on store_port (0 under mpirun: any free port).
  bool host_store = true;
  std::string store_bind_address = "0.0.0.0";
};

struct LaunchInfo {
  int rank = 0;
  int world_size = 1;
  bool under_mpi = false;
  std::string store_host;
  int store_port = 0;
  // Additions beyond the brief: the rank among this node's processes (which GPU to
  // use), where the values came from ("mpi", "flags", "env", "lws", "single"), and
  // the store server that rank 0 hosts (keep it alive as long as the world runs).
  int local_rank = 0;
  std::string source;
  std::shared_ptr<TcpStoreServer> store_server;
};

// Call once per process, from the main thread, before any other thread starts (MPI).
absl::StatusOr<LaunchInfo> DiscoverLaunch(const LaunchFlags& flags);

// Connects to the store named by `info` (retrying until options.connect_timeout).
absl::StatusOr<std::unique_ptr<TcpStoreClient>> ConnectStore(
    const LaunchInfo& info, const TcpStoreClientOptions& options = {});

// Under MPI: MPI_Finalize, which waits for the other ranks' finalize. Call once at the
// end, after every communicator is destroyed; does nothing elsewhere.
void FinalizeLaunch(const LaunchInfo& info);

// The address peers should use to reach this host: the first non-loopback IPv4
// address that the host name resolves to, else "127.0.0.1".
std::string LocalHostAddress();

}  // namespace lattice
