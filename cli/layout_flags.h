// The parallel-layout flags `lattice run`, `serve` and `coordinator` share, and the
// check of a layout against a model that every one of them makes before any process
// starts or any weight loads.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "parallel/rank_layout.h"
#include "worker/model_config.h"

namespace lattice {

struct LayoutFlags {
  int tp = 1;
  int pp = 1;
  int dp = 1;
  int ep = 1;
  std::string pp_layers;      // "3,5": layers per stage
  int num_micro_batches = 0;  // 0: pp

  ParallelConfig parallel() const { return {.tp = tp, .pp = pp, .dp = dp, .ep = ep}; }
};

void AddLayoutFlags(CLI::App& app, LayoutFlags& flags);

// The GPU flags `run`, `serve` and `worker` share: --dtype, --load-format,
// --gpu-memory-utilization, --no-cuda-graphs.
void AddCudaFlags(CLI::App& app, std::string& dtype, std::string& load_format, double& gpu_memory_utilization,
                  bool& no_cuda_graphs);

struct CheckedLayout {
  RankLayout layout;
  std::vector<int> pp_layers;  // empty: even split
};

// INVALID_ARGUMENT naming the problem: a bad --pp-layers, sizes that do not make a
// layout, or a layout that cannot shard this model.
absl::StatusOr<CheckedLayout> CheckLayout(const LayoutFlags& flags, const ModelConfig& config);

}  // namespace lattice
