// DeviceModel: a rank's model that runs whole steps on an accelerator (the CUDA
// model). The ModelRunner builds the step's batch and sampling rows on the host; the
// device model embeds or receives, runs its layers, sends or samples, and returns the
// samples on the rank that samples. Lives in the CPU-only worker library so that the
// runner and the engines need no CUDA header.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "parallel/rank_layout.h"

#include "kernels/cpu/ops.h"
#include "worker/forward_context.h"
#include "worker/model_config.h"
#include "worker/model.h"

namespace gloo::rendezvous {
class Store;
}  // namespace gloo::rendezvous

namespace lattice {

// Per logits row of a step: how to sample, the position of the token drawn, logprobs,
// and the sequence-dependent adjustments applied to the row before sampling
// (cpu::ApplyLogitAdjustments; logprobs are of the raw row, as vLLM's default).
struct SamplingRow {
  cpu::SamplingParams params;
  int64_t position = 0;
  int32_t num_logprobs = 0;
  cpu::PenaltyParams penalties;
  std::span<const cpu::LogitAdjustment> adjustments;  // the caller's, valid during Execute; empty: none
};

// What the sampling rank returns for one logits row.
struct DeviceSample {
  int32_t token = 0;
  std::vector<std::pair<int32_t, float>> logprobs;  // best first
};

class DeviceModel {
 public:
  virtual ~DeviceModel() = default;
  // One step of this rank; `rows` has one entry per batch.logits_indices on the last
  // stage. Returns the samples on the last stage's TP rank 0, empty elsewhere.
  virtual std::vector<DeviceSample> Execute(const ForwardBatch& batch, const std::vector<SamplingRow>& rows) = 0;
  virtual const ModelConfig& config() const = 0;
  virtual bool is_first_stage() const = 0;
  virtual bool is_last_stage() const = 0;
  virtual bool samples() const = 0;
  // Blocks of the KV pool, sized on the device.
  virtual int32_t num_kv_blocks() const = 0;
};

// How to build a one-GPU model (`--device cuda`).
struct DeviceModelOptions {
  std::string model_dir;
  bool dummy_weights = false;  // --load-format dummy: config.json alone, random weights
  std::string dtype = "auto";  // auto (the checkpoint's), bfloat16, float16, float32
  int32_t max_num_tokens = 2048;
  int32_t max_num_seqs = 256;
  int32_t max_model_len = 0;
  int32_t block_size = 16;
  double gpu_memory_utilization = 0.9;
  int32_t num_kv_blocks = 0;  // > 0: exactly this many
  bool cuda_graphs = true;
  // Which GPU: this index modulo the visible GPUs; -1: the rank's (0 for MakeCudaModel).
  // The serving worker passes its launch rank, so independent instances (dense --dp)
  // take different GPUs of a host.
  int32_t gpu = -1;
};

// The whole model on GPU 0 (tp = pp = 1), its KV pool sized. UNIMPLEMENTED in builds
// without CUDA; UNAVAILABLE where no GPU is present.
absl::StatusOr<std::unique_ptr<DeviceModel>> MakeCudaModel(const ModelConfig& config,
                                                           const DeviceModelOptions& options);

// Rank `rank`'s shard of a multi-GPU layout on GPU rank % (visible GPUs), with NCCL
// groups (tp, pp, ep and, for data-parallel attention, dp) rendezvousing through
// `store`. Every rank of the layout calls it together (the groups and the profiling
// step are collective).
absl::StatusOr<std::unique_ptr<DeviceModel>> MakeCudaModelForRank(const ModelConfig& config,
                                                                  const DeviceModelOptions& options,
                                                                  const RankLayout& layout, int rank,
                                                                  const ModelShard& shard,
                                                                  gloo::rendezvous::Store& store);

}  // namespace lattice
