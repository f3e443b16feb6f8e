// ProcessGroups from a RankLayout: group naming and order, and the gloo and thread
// factories.
#include "parallel/process_groups.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"

namespace lattice {
namespace {

// Index of the group containing `rank` among `groups`, and rank's place in it.
std::pair<int, int> Locate(const std::vector<std::vector<int>>& groups, int rank) {
  for (size_t g = 0; g < groups.size(); ++g) {
    auto it = std::find(groups[g].begin(), groups[g].end(), rank);
    if (it != groups[g].end())
      return {static_cast<int>(g), static_cast<int>(it - groups[g].begin())};
  }
  LATTICE_CHECK_MSG(false, "rank %d is in no group", rank);
  return {-1, -1};
}

}  // namespace

absl::StatusOr<ProcessGroups> MakeProcessGroups(const RankLayout& layout, int rank,
                                                const GroupFactory& factory) {
  if (rank < 0 || rank >= layout.world_size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("rank ", rank, " is outside the world of ", layout.world_size()));
  }
  ProcessGroups groups;
  groups.coords = layout.Coords(rank);
  std::vector<int> world(layout.world_size());
  for (int r = 0; r < layout.world_size(); ++r) world[r] = r;

  struct Kind {
    const char* name;
    std::vector<std::vector<int>> groups;
    std::unique_ptr<Communicator>* slot;
  };
  Kind kinds[] = {
      {"world", {world}, &groups.world},     {"tp", layout.TpGroups(), &groups.tp},
      {"pp", layout.PpGroups(), &groups.pp}, {"dp", layout.DpGroups(), &groups.dp},
      {"ep", layout.EpGroups(), &groups.ep},
  };
  for (Kind& kind : kinds) {
    const auto [index, rank_in_group] = Locate(kind.groups, rank);
    const std::vector<int>& members = kind.groups[index];
    const std::string name = std::string_view(kind.name) == "world"
                                 ? std::string("world")
                                 : absl::StrCat(kind.name, ".", index);
    absl::StatusOr<std::unique_ptr<Communicator>> comm = factory(name, members, rank_in_group);
    if (!comm.ok()) return comm.status();
    *kind.slot = *std::move(comm);
  }
  return groups;
}

absl::StatusOr<ProcessGroups> MakeGlooProcessGroups(const RankLayout& layout, int rank,
                                                    gloo::rendezvous::Store& store,
                                                    const GlooOptions& options) {
  GlooOptions shared = options;
  if (shared.device == nullptr && layout.world_size() > 1) {
    absl::StatusOr<std::shared_ptr<gloo::transport::Device>> device = MakeGlooDevice(options);
    if (!device.ok()) return device.status();
    shared.device = *std::move(device);
  }
  return MakeProcessGroups(
      layout, rank, [&](const std::string& name, const std::vector<int>& ranks, int rank_in_group) {
        return MakeGlooCommunicator(store, name, rank_in_group, static_cast<int>(ranks.size()),
                                    shared);
      });
}

std::vector<ProcessGroups> MakeThreadProcessGroups(const RankLayout& layout) {
  // One set of thread communicators per group, handed out to members as they ask.
  std::map<std::string, std::vector<std::unique_ptr<Communicator>>> made;
  std::vector<ProcessGroups> all;
  for (int rank = 0; rank < layout.world_size(); ++rank) {
    absl::StatusOr<ProcessGroups> groups =
        MakeProcessGroups(layout, rank,
                          [&](const std::string& name, const std::vector<int>& ranks,
                              int rank_in_group) -> absl::StatusOr<std::unique_ptr<Communicator>> {
                            if (ranks.size() == 1) return MakeSoloCommunicator();
                            auto& comms = made[name];
                            if (comms.empty())
                              comms = MakeThreadCommunicators(static_cast<int>(ranks.size()));
                            LATTICE_CHECK(comms[rank_in_group] != nullptr);
                            return std::move(comms[rank_in_group]);
                          });
    LATTICE_CHECK_MSG(groups.ok(), "%s", std::string(groups.status().message()).c_str());
    all.push_back(*std::move(groups));
  }
  return all;
}

}  // namespace lattice
