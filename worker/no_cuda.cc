// Builds without CUDA: `--device cuda` explains itself instead of failing to link.
#include "absl/status/status.h"
#include "worker/device_model.h"

namespace lattice {

absl::StatusOr<std::unique_ptr<DeviceModel>> MakeCudaModel(const ModelConfig&, const DeviceModelOptions&) {
  return absl::UnimplementedError("--device cuda: this build has no CUDA backend (nvcc was not found)");
}

absl::StatusOr<std::unique_ptr<DeviceModel>> MakeCudaModelForRank(const ModelConfig&, const DeviceModelOptions&,
                                                                  const RankLayout&, int, const ModelShard&,
                                                                  gloo::rendezvous::Store&) {
  return absl::UnimplementedError("--device cuda: this build has no CUDA backend (nvcc was not found)");
}

}  // namespace lattice
