// Shared layout flags (see layout_flags.h).
#include "cli/layout_flags.h"

#include "cli/int_list.h"
#include "worker/layout.h"

namespace lattice {

void AddLayoutFlags(CLI::App& app, LayoutFlags& flags) {
  app.add_option("--tp", flags.tp, "Tensor-parallel size")->check(CLI::Range(1, 1024));
  app.add_option("--pp", flags.pp, "Pipeline-parallel size")->check(CLI::Range(1, 1024));
  app.add_option("--dp", flags.dp, "Data-parallel size")->check(CLI::Range(1, 1024));
  app.add_option("--ep", flags.ep, "Expert-parallel size (1, or dp * tp)")->check(CLI::Range(1, 1 << 20));
  app.add_option("--pp-layers", flags.pp_layers, "Layers per pipeline stage, e.g. 3,5 (default: even)");
  app.add_option("--num-micro-batches", flags.num_micro_batches, "Steps in flight (default: pp)")
      ->check(CLI::Range(0, 1024));
}

absl::StatusOr<CheckedLayout> CheckLayout(const LayoutFlags& flags, const ModelConfig& config) {
  const ParallelConfig parallel = flags.parallel();
  absl::StatusOr<RankLayout> layout = RankLayout::Create(parallel.world_size(), parallel);
  if (!layout.ok()) return layout.status();
  std::vector<int> pp_layers;
  if (!flags.pp_layers.empty()) {
    absl::StatusOr<std::vector<int32_t>> layers = ParseIntList(flags.pp_layers, "--pp-layers");
    if (!layers.ok()) return layers.status();
    pp_layers.assign(layers->begin(), layers->end());
  }
  if (absl::Status status = ValidateLayoutForModel(config, parallel, pp_layers); !status.ok()) return status;
  return CheckedLayout{*std::move(layout), std::move(pp_layers)};
}

void AddCudaFlags(CLI::App& app, std::string& dtype, std::string& load_format, double& gpu_memory_utilization,
                  bool& no_cuda_graphs) {
  app.add_option("--dtype", dtype, "cuda: auto (the checkpoint's), bfloat16, float16 or float32")
      ->check(CLI::IsMember({"auto", "bfloat16", "float16", "float32"}));
  app.add_option("--load-format", load_format, "auto (safetensors) or dummy (cuda: random weights from config.json)")
      ->check(CLI::IsMember({"auto", "dummy"}));
  app.add_option("--gpu-memory-utilization", gpu_memory_utilization,
                 "cuda: fraction of GPU memory for weights, activations and the KV cache")
      ->check(CLI::Range(0.05, 1.0));
  app.add_flag("--no-cuda-graphs", no_cuda_graphs, "cuda: run decode steps eagerly");
}

}  // namespace lattice
