// DiscoverLaunch: MPI, flags, torchrun-style env, LeaderWorkerSet, or a single process.
#include "parallel/bootstrap.h"

#include <arpa/inet.h>
#include <mpi.h>
#include <netdb.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace lattice {
namespace {

const char* Env(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr && value[0] != '\0' ? value : nullptr;
}

// An integer from variable or flag `name`; INVALID_ARGUMENT naming it otherwise.
absl::StatusOr<int> ParseInt(const char* name, const char* text) {
  int value;
  if (!absl::SimpleAtoi(text, &value)) {
    return absl::InvalidArgumentError(absl::StrCat(name, "=", text, " is not an integer"));
  }
  return value;
}

absl::StatusOr<int> EnvInt(const char* name) {
  const char* text = Env(name);
  if (text == nullptr) return absl::InvalidArgumentError(absl::StrCat(name, " is not set"));
  return ParseInt(name, text);
}

absl::Status CheckRankAndSize(const char* rank_name, int rank, const char* size_name, int size) {
  if (size < 1) {
    return absl::InvalidArgumentError(absl::StrCat(size_name, "=", size, " must be >= 1"));
  }
  if (rank < 0 || rank >= size) {
    return absl::InvalidArgumentError(
        absl::StrCat(rank_name, "=", rank, " is not in [0, ", size_name, "=", size, ")"));
  }
  return absl::OkStatus();
}

absl::Status CheckPort(const char* name, int port) {
  if (port < 1 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, "=", port, " is not a port in [1, 65535]"));
  }
  return absl::OkStatus();
}

bool UnderMpi() {
  return Env("OMPI_COMM_WORLD_RANK") != nullptr || Env("OMPI_COMM_WORLD_SIZE") != nullptr ||
         Env("PMIX_RANK") != nullptr;
}

// Starts rank 0's store on `port` when asked to; fills the info's store fields.
absl::Status MaybeHostStore(const LaunchFlags& flags, int port, LaunchInfo& info) {
  if (!flags.host_store || info.rank != 0) return absl::OkStatus();
  absl::StatusOr<std::unique_ptr<TcpStoreServer>> server = TcpStoreServer::Start(
      {.bind_address = flags.store_bind_address, .port = port, .max_connections = 4096});
  if (!server.ok()) return server.status();
  info.store_port = (*server)->port();
  info.store_server = *std::move(server);
  return absl::OkStatus();
}

absl::StatusOr<LaunchInfo> DiscoverMpi(const LaunchFlags& flags) {
  LaunchInfo info;
  info.under_mpi = true;
  info.source = "mpi";
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided;
    if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
      return absl::InternalError("MPI_Init_thread failed");
    }
  }
  MPI_Comm_rank(MPI_COMM_WORLD, &info.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &info.world_size);
  MPI_Comm local;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, info.rank, MPI_INFO_NULL, &local);
  MPI_Comm_rank(local, &info.local_rank);
  MPI_Comm_free(&local);

  // Every rank takes part in the broadcast, even when rank 0 failed: a leading '!'
  // carries rank 0's error to everyone instead of leaving them waiting.
  char message[512] = {};
  if (info.rank == 0) {
    absl::Status status = absl::OkStatus();
    std::string host = flags.store_host.value_or(LocalHostAddress());
    if (flags.host_store) {
      status = MaybeHostStore(flags, flags.store_port.value_or(0), info);
    } else if (!flags.store_port.has_value() || !flags.store_host.has_value()) {
      status = absl::InvalidArgumentError(
          "under mpirun without hosting the store, --store-host and --store-port are required");
    } else {
      info.store_port = *flags.store_port;
    }
    const std::string text = status.ok() ? absl::StrCat(host, ":", info.store_port)
                                         : absl::StrCat("!", status.ToString());
    std::strncpy(message, text.c_str(), sizeof(message) - 1);
  }
  MPI_Bcast(message, sizeof(message), MPI_CHAR, 0, MPI_COMM_WORLD);
  const std::string text(message);
  if (!text.empty() && text[0] == '!') {
    return absl::UnavailableError(
        absl::StrCat("rank 0 could not set up the store: ", text.substr(1)));
  }
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos || !absl::SimpleAtoi(text.substr(colon + 1), &info.store_port)) {
    return absl::InternalError(absl::StrCat("malformed store address from rank 0: '", text, "'"));
  }
  info.store_host = text.substr(0, colon);

  if (flags.rank.has_value() && *flags.rank != info.rank) {
    return absl::InvalidArgumentError(
        absl::StrCat("--rank ", *flags.rank, " disagrees with mpirun's rank ", info.rank));
  }
  if (flags.world_size.has_value() && *flags.world_size != info.world_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--world-size ", *flags.world_size, " disagrees with mpirun's size ", info.world_size));
  }
  return info;
}

// The store address of a non-MPI launch: flags first, then the given variables.
absl::Status ResolveStore(const LaunchFlags& flags, const char* host_var, const char* port_var,
                          std::optional<int> default_port, LaunchInfo& info) {
  if (flags.store_host.has_value()) {
    info.store_host = *flags.store_host;
  } else if (const char* host = host_var ? Env(host_var) : nullptr) {
    info.store_host = host;
  } else if (info.world_size == 1) {
    info.store_host = "127.0.0.1";
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("the store host is unknown: set --store-host or ", host_var));
  }
  if (flags.store_port.has_value()) {
    if (absl::Status s = CheckPort("--store-port", *flags.store_port); !s.ok()) return s;
    info.store_port = *flags.store_port;
  } else if (const char* port = port_var ? Env(port_var) : nullptr) {
    absl::StatusOr<int> parsed = ParseInt(port_var, port);
    if (!parsed.ok()) return parsed.status();
    if (absl::Status s = CheckPort(port_var, *parsed); !s.ok()) return s;
    info.store_port = *parsed;
  } else if (default_port.has_value()) {
    info.store_port = *default_port;
  } else if (info.world_size == 1) {
    info.store_port = 0;  // rank 0 alone: any free port
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("the store port is unknown: set --store-port or ", port_var));
  }
  return MaybeHostStore(flags, info.store_port, info);
}

LaunchInfo MakeInfo(int rank, int world_size, const char* source) {
  LaunchInfo info;
  info.rank = rank;
  info.world_size = world_size;
  info.source = source;
  return info;
}

// LOCAL_RANK when set, else the rank (one node).
absl::Status ReadLocalRank(LaunchInfo& info) {
  info.local_rank = info.rank;
  if (const char* local = Env("LOCAL_RANK")) {
    absl::StatusOr<int> parsed = ParseInt("LOCAL_RANK", local);
    if (!parsed.ok()) return parsed.status();
    info.local_rank = *parsed;
  }
  return absl::OkStatus();
}

absl::StatusOr<LaunchInfo> DiscoverFlags(const LaunchFlags& flags) {
  if (!flags.rank.has_value() || !flags.world_size.has_value()) {
    return absl::InvalidArgumentError(flags.rank.has_value()
                                          ? "--rank is set but --world-size is not"
                                          : "--world-size is set but --rank is not");
  }
  LaunchInfo info = MakeInfo(*flags.rank, *flags.world_size, "flags");
  if (absl::Status s = CheckRankAndSize("--rank", info.rank, "--world-size", info.world_size);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = ReadLocalRank(info); !s.ok()) return s;
  if (absl::Status s = ResolveStore(flags, "MASTER_ADDR", "MASTER_PORT", std::nullopt, info);
      !s.ok()) {
    return s;
  }
  return info;
}

// Rank and world size from a pair of environment variables, both checked.
absl::StatusOr<LaunchInfo> InfoFromEnv(const char* rank_var, const char* size_var, const char* source) {
  absl::StatusOr<int> rank = EnvInt(rank_var);
  if (!rank.ok()) return rank.status();
  absl::StatusOr<int> world_size = EnvInt(size_var);
  if (!world_size.ok()) return world_size.status();
  LaunchInfo info = MakeInfo(*rank, *world_size, source);
  if (absl::Status s = CheckRankAndSize(rank_var, info.rank, size_var, info.world_size); !s.ok()) return s;
  return info;
}

absl::StatusOr<LaunchInfo> DiscoverEnv(const LaunchFlags& flags) {
  absl::StatusOr<LaunchInfo> info = InfoFromEnv("RANK", "WORLD_SIZE", "env");
  if (!info.ok()) return info.status();
  if (absl::Status s = ReadLocalRank(*info); !s.ok()) return s;
  if (absl::Status s = ResolveStore(flags, "MASTER_ADDR", "MASTER_PORT", std::nullopt, *info); !s.ok()) {
    return s;
  }
  return info;
}

absl::StatusOr<LaunchInfo> DiscoverLws(const LaunchFlags& flags) {
  absl::StatusOr<LaunchInfo> found = InfoFromEnv("LWS_WORKER_INDEX", "LWS_GROUP_SIZE", "lws");
  if (!found.ok()) return found.status();
  LaunchInfo info = *std::move(found);
  info.local_rank = 0;  // one worker per pod
  if (absl::Status s =
          ResolveStore(flags, "LWS_LEADER_ADDRESS", "LATTICE_STORE_PORT", kDefaultStorePort, info);
      !s.ok()) {
    return s;
  }
  return info;
}

}  // namespace

absl::StatusOr<LaunchInfo> DiscoverLaunch(const LaunchFlags& flags) {
  if (UnderMpi()) return DiscoverMpi(flags);
  if (flags.rank.has_value() || flags.world_size.has_value()) return DiscoverFlags(flags);
  if (Env("RANK") != nullptr || Env("WORLD_SIZE") != nullptr) return DiscoverEnv(flags);
  if (Env("LWS_WORKER_INDEX") != nullptr || Env("LWS_GROUP_SIZE") != nullptr)
    return DiscoverLws(flags);
  LaunchInfo info = MakeInfo(0, 1, "single");
  if (absl::Status s = ResolveStore(flags, nullptr, nullptr, std::nullopt, info); !s.ok()) return s;
  return info;
}

absl::StatusOr<std::unique_ptr<TcpStoreClient>> ConnectStore(const LaunchInfo& info,
                                                             const TcpStoreClientOptions& options) {
  // Rank 0's own server listens on every address; loopback always reaches it.
  const std::string host = info.store_server != nullptr ? "127.0.0.1" : info.store_host;
  return TcpStoreClient::Connect(host, info.store_port, options);
}

void FinalizeLaunch(const LaunchInfo& info) {
  if (!info.under_mpi) return;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

std::string LocalHostAddress() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0) return "127.0.0.1";
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (::getaddrinfo(name, nullptr, &hints, &found) != 0) return "127.0.0.1";
  std::string address = "127.0.0.1";
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    char text[INET_ADDRSTRLEN] = {};
    const auto* in = reinterpret_cast<const sockaddr_in*>(a->ai_addr);
    if (::inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text)) == nullptr) continue;
    if (std::strncmp(text, "127.", 4) != 0) {
      address = text;
      break;
    }
  }
  ::freeaddrinfo(found);
  return address;
}

}  // namespace lattice
