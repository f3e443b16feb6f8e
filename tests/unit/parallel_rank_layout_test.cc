// RankLayout, exhaustively: every world size 1..16, every tp*pp*dp factorisation, ep
// off and on; plus the layouts it must refuse.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "parallel/rank_layout.h"

namespace lattice {
namespace {

std::vector<ParallelConfig> AllConfigs(int world) {
  std::vector<ParallelConfig> configs;
  for (int tp = 1; tp <= world; ++tp) {
    for (int pp = 1; pp <= world; ++pp) {
      if (world % (tp * pp) != 0) continue;
      const int dp = world / (tp * pp);
      configs.push_back({.tp = tp, .pp = pp, .dp = dp, .ep = 1});
      if (dp * tp > 1) configs.push_back({.tp = tp, .pp = pp, .dp = dp, .ep = dp * tp});
    }
  }
  return configs;
}

// Every rank in exactly one group; groups ascending, of `size`, listed by lowest rank.
void ExpectPartition(const std::vector<std::vector<int>>& groups, int world, size_t size,
                     const std::string& what) {
  std::vector<int> seen(world, 0);
  for (size_t g = 0; g < groups.size(); ++g) {
    ASSERT_EQ(groups[g].size(), size) << what;
    ASSERT_TRUE(std::is_sorted(groups[g].begin(), groups[g].end())) << what;
    if (g > 0) {
      ASSERT_LT(groups[g - 1].front(), groups[g].front()) << what;
    }
    for (int r : groups[g]) ++seen[r];
  }
  for (int r = 0; r < world; ++r) ASSERT_EQ(seen[r], 1) << what << " rank " << r;
}

TEST(ParallelRankLayout, EveryFactorisationUpTo16) {
  int layouts = 0;
  for (int world = 1; world <= 16; ++world) {
    for (const ParallelConfig& config : AllConfigs(world)) {
      SCOPED_TRACE(config.ToString());
      ++layouts;
      absl::StatusOr<RankLayout> made = RankLayout::Create(world, config);
      ASSERT_TRUE(made.ok()) << made.status();
      const RankLayout& layout = *made;
      ASSERT_EQ(layout.world_size(), world);
      const int stage = config.dp * config.tp;
      ExpectPartition(layout.TpGroups(), world, config.tp, "tp");
      ExpectPartition(layout.PpGroups(), world, config.pp, "pp");
      ExpectPartition(layout.DpGroups(), world, config.dp, "dp");
      ExpectPartition(layout.EpGroups(), world, config.ep == 1 ? 1 : stage, "ep");
      std::set<std::tuple<int, int, int>> coords_seen;
      for (int rank = 0; rank < world; ++rank) {
        const RankCoords c = layout.Coords(rank);
        ASSERT_EQ(c.rank, rank);
        ASSERT_TRUE(c.tp_rank >= 0 && c.tp_rank < config.tp);
        ASSERT_TRUE(c.dp_rank >= 0 && c.dp_rank < config.dp);
        ASSERT_TRUE(c.pp_rank >= 0 && c.pp_rank < config.pp);
        ASSERT_EQ(layout.RankOf(c.pp_rank, c.dp_rank, c.tp_rank), rank);
        ASSERT_EQ(rank, (c.pp_rank * config.dp + c.dp_rank) * config.tp + c.tp_rank);
        coords_seen.insert({c.pp_rank, c.dp_rank, c.tp_rank});

        // TP groups are consecutive ranks; a rank's place in each group is its coordinate.
        const std::vector<int> tp = layout.TpGroup(rank);
        for (size_t i = 1; i < tp.size(); ++i) ASSERT_EQ(tp[i], tp[i - 1] + 1);
        ASSERT_EQ(tp[c.tp_rank], rank);
        ASSERT_EQ(layout.PpGroup(rank)[c.pp_rank], rank);
        ASSERT_EQ(layout.DpGroup(rank)[c.dp_rank], rank);
        for (int member : layout.TpGroup(rank)) {
          ASSERT_EQ(layout.Coords(member).pp_rank, c.pp_rank);
          ASSERT_EQ(layout.Coords(member).dp_rank, c.dp_rank);
        }
        for (int member : layout.PpGroup(rank)) {
          ASSERT_EQ(layout.Coords(member).dp_rank, c.dp_rank);
          ASSERT_EQ(layout.Coords(member).tp_rank, c.tp_rank);
        }
        for (int member : layout.DpGroup(rank)) {
          ASSERT_EQ(layout.Coords(member).pp_rank, c.pp_rank);
          ASSERT_EQ(layout.Coords(member).tp_rank, c.tp_rank);
        }

        // The stage's ranks are consecutive; EP spans exactly them when on.
        std::vector<int> stage_ranks;
        for (int r = 0; r < world; ++r) {
          if (layout.Coords(r).pp_rank == c.pp_rank) stage_ranks.push_back(r);
        }
        ASSERT_EQ(static_cast<int>(stage_ranks.size()), stage);
        ASSERT_EQ(stage_ranks.back() - stage_ranks.front() + 1, stage);
        ASSERT_EQ(stage_ranks.front(), c.pp_rank * stage);
        if (config.ep > 1) {
          ASSERT_EQ(layout.EpGroup(rank), stage_ranks);
          ASSERT_EQ(c.ep_rank, rank - stage_ranks.front());
          ASSERT_EQ(layout.EpGroup(rank)[c.ep_rank], rank);
        } else {
          ASSERT_EQ(layout.EpGroup(rank), std::vector<int>{rank});
          ASSERT_EQ(c.ep_rank, 0);
        }
        ASSERT_EQ(layout.is_first_stage(rank), c.pp_rank == 0);
        ASSERT_EQ(layout.is_last_stage(rank), c.pp_rank == config.pp - 1);
      }
      ASSERT_EQ(static_cast<int>(coords_seen.size()), world);
    }
  }
  EXPECT_GT(layouts, 150);  // the loops really ran
}

TEST(ParallelRankLayout, KnownLayout) {
  // 8 ranks: tp2, pp2, dp2, ep over the stage's 4 ranks.
  const RankLayout layout = *RankLayout::Create(8, {.tp = 2, .pp = 2, .dp = 2, .ep = 4});
  EXPECT_EQ(layout.TpGroups(), (std::vector<std::vector<int>>{{0, 1}, {2, 3}, {4, 5}, {6, 7}}));
  EXPECT_EQ(layout.DpGroups(), (std::vector<std::vector<int>>{{0, 2}, {1, 3}, {4, 6}, {5, 7}}));
  EXPECT_EQ(layout.PpGroups(), (std::vector<std::vector<int>>{{0, 4}, {1, 5}, {2, 6}, {3, 7}}));
  EXPECT_EQ(layout.EpGroups(), (std::vector<std::vector<int>>{{0, 1, 2, 3}, {4, 5, 6, 7}}));
  const RankCoords c = layout.Coords(6);
  EXPECT_EQ(c.pp_rank, 1);
  EXPECT_EQ(c.dp_rank, 1);
  EXPECT_EQ(c.tp_rank, 0);
  EXPECT_EQ(c.ep_rank, 2);
  EXPECT_EQ(layout.config().ToString(), "tp2 pp2 dp2 ep4");
}

TEST(ParallelRankLayout, RefusesBadLayouts) {
  struct Case {
    int world;
    ParallelConfig config;
    std::string message;
  };
  const Case cases[] = {
      {6, {.tp = 2, .pp = 2, .dp = 1, .ep = 1}, "world size 6 is not tp*pp*dp = 2*2*1 = 4"},
      {4, {.tp = 2, .pp = 1, .dp = 2, .ep = 3}, "ep 3 must be 1 or dp*tp = 4"},
      {4, {.tp = 2, .pp = 2, .dp = 1, .ep = 4}, "ep 4 must be 1 or dp*tp = 2"},
      {4, {.tp = 0, .pp = 1, .dp = 1, .ep = 1}, "tp must be >= 1, got 0"},
      {4, {.tp = 4, .pp = -1, .dp = 1, .ep = 1}, "pp must be >= 1, got -1"},
      {4, {.tp = 4, .pp = 1, .dp = 0, .ep = 1}, "dp must be >= 1, got 0"},
      {4, {.tp = 4, .pp = 1, .dp = 1, .ep = 0}, "ep must be >= 1, got 0"},
      {0, {.tp = 1, .pp = 1, .dp = 1, .ep = 1}, "world size must be >= 1, got 0"},
      {8, {.tp = 65536, .pp = 65536, .dp = 1, .ep = 1}, "world size 8 is not tp*pp*dp"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<RankLayout> made = RankLayout::Create(c.world, c.config);
    ASSERT_FALSE(made.ok()) << c.config.ToString();
    EXPECT_EQ(made.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(made.status().message().find(c.message), std::string::npos) << made.status();
  }
}

}  // namespace
}  // namespace lattice
