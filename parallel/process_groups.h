// ProcessGroups: the communicators of one rank (world, tp, pp, dp, ep), built from a
// RankLayout. Groups are created in one fixed order (world, tp, pp, dp, ep) so that
// every rank meets its peers at the same step. On gloo and threads a group of one is a
// solo communicator.
//
// Pass the pieces explicitly (`RowParallelLinear(..., *groups.tp)`): there is no global
// parallel state.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "parallel/communicator.h"
#include "parallel/gloo_communicator.h"
#include "parallel/rank_layout.h"

namespace gloo::rendezvous {
class Store;
}  // namespace gloo::rendezvous

namespace lattice {

struct ProcessGroups {
  RankCoords coords;
  std::unique_ptr<Communicator> world;
  std::unique_ptr<Communicator> tp;
  std::unique_ptr<Communicator> pp;
  std::unique_ptr<Communicator> dp;
  std::unique_ptr<Communicator> ep;  // a group of one when ep == 1
};

// Makes one group's communicator for this rank: `name` is unique per group ("tp.1"),
// `ranks` its global ranks ascending, `rank_in_group` this rank's index in `ranks`.
using GroupFactory = std::function<absl::StatusOr<std::unique_ptr<Communicator>>(
    const std::string& name, const std::vector<int>& ranks, int rank_in_group)>;

// The backend-independent part: names the groups ("world", "tp.<i>", "pp.<i>", "dp.<i>",
// "ep.<i>", i = the group's index among its kind) and asks `factory` for this rank's
// group of each kind, in the fixed order.
absl::StatusOr<ProcessGroups> MakeProcessGroups(const RankLayout& layout, int rank,
                                                const GroupFactory& factory);

// Gloo groups through `store` (every rank of the world calls this with its rank).
// The groups share one TCP device unless options.device is set.
absl::StatusOr<ProcessGroups> MakeGlooProcessGroups(const RankLayout& layout, int rank,
                                                    gloo::rendezvous::Store& store,
                                                    const GlooOptions& options = {});

// Every rank's groups on the thread backend, index = rank; run rank r on its own
// thread. The objects share state and must outlive the threads that use them.
std::vector<ProcessGroups> MakeThreadProcessGroups(const RankLayout& layout);

}  // namespace lattice
