// RankLayout: pure rank arithmetic. From the world size and the parallel sizes
// {tp, pp, dp, ep} it gives every rank's coordinates and every group's ranks,
// with no communication, so it is tested exhaustively on its own.
//
// Order (innermost first): tp, dp, pp. TP groups are consecutive ranks so that a
// TP group sits inside a node; the ranks of one pipeline stage (dp x tp of them)
// are consecutive too, and PP, the outermost, is what crosses nodes.
//   rank = (pp_rank * dp + dp_rank) * tp + tp_rank
// Expert parallel spans the dp x tp ranks of a stage (ep == dp * tp), or is off (ep == 1).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace lattice {

struct ParallelConfig {
  int tp = 1;
  int pp = 1;
  int dp = 1;
  int ep = 1;

  int world_size() const { return tp * pp * dp; }
  std::string ToString() const;  // "tp2 pp1 dp1 ep1"
};

struct RankCoords {
  int rank = 0;
  int tp_rank = 0;
  int pp_rank = 0;
  int dp_rank = 0;
  int ep_rank = 0;  // 0 when ep == 1
};

class RankLayout {
 public:
  // INVALID_ARGUMENT naming the problem: a size below 1, world_size != tp * pp * dp,
  // ep neither 1 nor dp * tp.
  static absl::StatusOr<RankLayout> Create(int world_size, const ParallelConfig& config);

  const ParallelConfig& config() const { return config_; }
  int world_size() const { return config_.world_size(); }
  RankCoords Coords(int rank) const;
  int RankOf(int pp_rank, int dp_rank, int tp_rank) const;

  // The ranks of `rank`'s group, ascending; the group's own rank order is this order.
  std::vector<int> TpGroup(int rank) const;  // same pp, dp
  std::vector<int> PpGroup(int rank) const;  // same dp, tp: the stages of one pipeline
  std::vector<int> DpGroup(int rank) const;  // same pp, tp
  std::vector<int> EpGroup(int rank) const;  // same pp (all dp x tp ranks of the stage), or {rank}
  // All groups of a kind, each listed once, ordered by their lowest rank.
  std::vector<std::vector<int>> TpGroups() const;
  std::vector<std::vector<int>> PpGroups() const;
  std::vector<std::vector<int>> DpGroups() const;
  std::vector<std::vector<int>> EpGroups() const;

  bool is_first_stage(int rank) const { return Coords(rank).pp_rank == 0; }
  bool is_last_stage(int rank) const { return Coords(rank).pp_rank == config_.pp - 1; }

 private:
  explicit RankLayout(const ParallelConfig& config) : config_(config) {}
  ParallelConfig config_;
};

}  // namespace lattice
