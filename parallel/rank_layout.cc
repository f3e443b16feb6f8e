// RankLayout: rank <-> (pp, dp, tp) coordinates and the groups they imply.
#include "parallel/rank_layout.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/check.h"

namespace lattice {

std::string ParallelConfig::ToString() const {
  return absl::StrCat("tp", tp, " pp", pp, " dp", dp, " ep", ep);
}

absl::StatusOr<RankLayout> RankLayout::Create(int world_size, const ParallelConfig& config) {
  const std::pair<const char*, int> sizes[] = {{"world size", world_size},
                                               {"tp", config.tp},
                                               {"pp", config.pp},
                                               {"dp", config.dp},
                                               {"ep", config.ep}};
  for (const auto& [name, value] : sizes) {
    if (value < 1)
      return absl::InvalidArgumentError(absl::StrCat(name, " must be >= 1, got ", value));
  }
  // Compare in 64 bits so that absurd sizes cannot overflow into a match.
  const int64_t product = int64_t{config.tp} * config.pp * config.dp;
  if (product != world_size) {
    return absl::InvalidArgumentError(absl::StrCat("world size ", world_size,
                                                   " is not tp*pp*dp = ", config.tp, "*", config.pp,
                                                   "*", config.dp, " = ", product));
  }
  const int stage_size = config.dp * config.tp;
  if (config.ep != 1 && config.ep != stage_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("ep ", config.ep, " must be 1 or dp*tp = ", stage_size));
  }
  return RankLayout(config);
}

RankCoords RankLayout::Coords(int rank) const {
  LATTICE_CHECK_MSG(rank >= 0 && rank < world_size(), "rank %d outside world of %d", rank,
                    world_size());
  const int stage_size = config_.dp * config_.tp;
  RankCoords c;
  c.rank = rank;
  c.tp_rank = rank % config_.tp;
  c.dp_rank = (rank / config_.tp) % config_.dp;
  c.pp_rank = rank / stage_size;
  c.ep_rank = config_.ep > 1 ? rank % stage_size : 0;
  return c;
}

int RankLayout::RankOf(int pp_rank, int dp_rank, int tp_rank) const {
  LATTICE_CHECK(pp_rank >= 0 && pp_rank < config_.pp);
  LATTICE_CHECK(dp_rank >= 0 && dp_rank < config_.dp);
  LATTICE_CHECK(tp_rank >= 0 && tp_rank < config_.tp);
  return (pp_rank * config_.dp + dp_rank) * config_.tp + tp_rank;
}

std::vector<int> RankLayout::TpGroup(int rank) const {
  const RankCoords c = Coords(rank);
  std::vector<int> group;
  for (int t = 0; t < config_.tp; ++t) group.push_back(RankOf(c.pp_rank, c.dp_rank, t));
  return group;
}

std::vector<int> RankLayout::PpGroup(int rank) const {
  const RankCoords c = Coords(rank);
  std::vector<int> group;
  for (int p = 0; p < config_.pp; ++p) group.push_back(RankOf(p, c.dp_rank, c.tp_rank));
  return group;
}

std::vector<int> RankLayout::DpGroup(int rank) const {
  const RankCoords c = Coords(rank);
  std::vector<int> group;
  for (int d = 0; d < config_.dp; ++d) group.push_back(RankOf(c.pp_rank, d, c.tp_rank));
  return group;
}

std::vector<int> RankLayout::EpGroup(int rank) const {
  const RankCoords c = Coords(rank);
  if (config_.ep == 1) return {rank};
  std::vector<int> group;
  for (int d = 0; d < config_.dp; ++d) {
    for (int t = 0; t < config_.tp; ++t) group.push_back(RankOf(c.pp_rank, d, t));
  }
  return group;
}

namespace {

// Every group once, in the order of its lowest rank: a rank starts a group when it is
// that group's first member.
template <typename GroupOf>
std::vector<std::vector<int>> AllGroups(int world_size, GroupOf group_of) {
  std::vector<std::vector<int>> groups;
  for (int rank = 0; rank < world_size; ++rank) {
    std::vector<int> group = group_of(rank);
    if (group.front() == rank) groups.push_back(std::move(group));
  }
  return groups;
}

}  // namespace

std::vector<std::vector<int>> RankLayout::TpGroups() const {
  return AllGroups(world_size(), [this](int r) { return TpGroup(r); });
}
std::vector<std::vector<int>> RankLayout::PpGroups() const {
  return AllGroups(world_size(), [this](int r) { return PpGroup(r); });
}
std::vector<std::vector<int>> RankLayout::DpGroups() const {
  return AllGroups(world_size(), [this](int r) { return DpGroup(r); });
}
std::vector<std::vector<int>> RankLayout::EpGroups() const {
  return AllGroups(world_size(), [this](int r) { return EpGroup(r); });
}

}  // namespace lattice
