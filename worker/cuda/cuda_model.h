// CudaModel: one rank's shard of a DecoderModel on a GPU, in bf16, f16 or f32.
//
// The weights come from a loaded CPU shard (the same cutting code for both backends)
// or, for --load-format dummy, are created on the GPU from config.json alone. A step
// runs on one stream: metadata is staged in pinned memory and copied in one transfer
// to a device buffer at fixed addresses; activations are carved from a Workspace
// (each layer's temporaries rewound after the layer), so no step allocates. The first
// stage embeds, later stages receive hidden states over the pipeline communicator;
// the last stage gathers logits over TP and samples on the GPU. Decode steps (every
// sequence one new token) replay CUDA graphs captured per batch-size bucket.
//
// MoE under expert parallelism (ep == dp * tp) runs as SparseMoe on the CPU: eager
// steps dispatch each (token, expert) pair to the expert's owner and back with NCCL
// all-to-alls; decode graphs gather the DP groups' tokens instead (see RoutedExperts).
// With dp > 1 (data-parallel attention) every DP rank steps together, an empty one too.
//
// Memory: InitializeCache() runs a worst-case step to learn the activations' peak, then
// gives the KV pool what gpu_memory_utilization leaves (vLLM's rule: total * util minus
// everything else in use). One owner thread; the device must be current on it.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include <cuda_runtime.h>

#include "absl/status/statusor.h"
#include "kernels/cpu/ops.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/workspace.h"
#include "parallel/communicator.h"
#include "worker/cuda/logit_adjustments.h"
#include "worker/cuda/stage_links.h"
#include "worker/device_model.h"
#include "worker/forward_context.h"
#include "worker/model.h"

namespace lattice {

struct CudaModelOptions {
  DType dtype = DType::kBF16;
  int32_t max_num_tokens = 8192;  // per step
  int32_t max_num_seqs = 256;     // per step
  int32_t max_model_len = 4096;
  int32_t block_size = kDefaultBlockSize;
  double gpu_memory_utilization = 0.9;
  int32_t num_kv_blocks = 0;  // > 0: exactly this many, instead of the utilisation rule
  bool cuda_graphs = true;
};

// The stage's groups: NCCL communicators on `stream` (the model runs on it too).
struct CudaPlacement {
  Communicator* tp = nullptr;  // size 1 allowed
  // The pipeline's stages (NCCL; rank = stage), null when pp == 1. The model splits
  // its links to the neighbouring stages from it (StageLinks).
  Communicator* pp = nullptr;
  cudaStream_t stream = nullptr;
  // Expert parallelism (shard.ep.size > 1): the stage's EP group (dp * tp ranks, the
  // same ranks as tp when dp == 1), and the DP group (the ranks of the other DP groups
  // with this TP rank) when dp > 1: data-parallel attention. Null otherwise.
  Communicator* ep = nullptr;
  Communicator* dp = nullptr;
};

// The activations' dtype for a --dtype name: auto (the checkpoint's), bfloat16/bf16,
// float16/half/f16, float32/f32; INVALID_ARGUMENT naming anything else.
absl::StatusOr<DType> ActivationDType(const std::string& name, DType checkpoint);

class CudaModel : public DeviceModel {
 public:
  // Converts the CPU shard's weights to options.dtype on the current device.
  static absl::StatusOr<std::unique_ptr<CudaModel>> FromShard(const DecoderModel& shard,
                                                              const CudaModelOptions& options,
                                                              const CudaPlacement& placement);
  // Random weights of the shard's shapes (uniform, seeded), created on the GPU.
  static absl::StatusOr<std::unique_ptr<CudaModel>> Dummy(const ModelConfig& config, const ModelShard& shard,
                                                          const CudaModelOptions& options,
                                                          const CudaPlacement& placement, uint64_t seed = 0);
  ~CudaModel();

  // Profiles a worst-case step, sizes the workspace, allocates the KV pool and, when
  // enabled, captures the decode graphs. Call once, on every rank of the instance
  // together (profiling runs the collectives).
  void InitializeCache();
  int32_t num_kv_blocks() const override { return num_kv_blocks_; }
  size_t weight_bytes() const { return weight_bytes_; }
  size_t workspace_bytes() const { return workspace_ ? workspace_->capacity() : 0; }

  // One step of this stage. `rows` has one entry per batch.logits_indices (last stage).
  // Returns the samples on the last stage's TP rank 0, empty elsewhere.
  std::vector<DeviceSample> Execute(const ForwardBatch& batch, const std::vector<SamplingRow>& rows) override;

  const ModelConfig& config() const override { return config_; }
  bool is_first_stage() const override { return shard_.first_layer == 0; }
  bool is_last_stage() const override { return shard_.end_layer == config_.num_hidden_layers; }
  bool samples() const override { return is_last_stage() && placement_.tp->rank() == 0; }
  // Decode graphs replayed so far (for tests and benchmarks).
  int64_t num_graph_replays() const { return num_graph_replays_; }

 private:
  struct Layer;
  struct Metadata;
  struct Graph;

  CudaModel(ModelConfig config, ModelShard shard, const CudaModelOptions& options, const CudaPlacement& placement);
  void AllocateWeights();
  // Stages the batch into the device metadata buffer; `padded_seqs` > num_seqs pads a
  // decode batch up to a graph bucket.
  void Upload(const ForwardBatch& batch, const std::vector<SamplingRow>& rows, int32_t padded_seqs);
  // Everything up to the f32 logits [rows, vocab] (last stage) or the send (others).
  // `graph`: the step is (or warms up) a decode graph, whose MoE layers take no host
  // decisions (see RoutedExperts).
  Tensor Forward(int32_t num_tokens, int32_t num_seqs, int32_t num_rows, int32_t max_query_len, int32_t max_seq_len,
                 bool graph = false);
  // An MoE layer's routed experts on hidden [t, H] into out [t, H]: this rank's partial
  // sum, which the caller completes with the TP all-reduce.
  void RoutedExperts(const Layer& l, const Tensor& hidden, Tensor& out, bool graph);
  // Expert parallelism's eager path: the all-to-all dispatch and combine.
  void RoutedAllToAll(const Layer& l, const Tensor& hidden, const Tensor& ids, const Tensor& weights, Tensor& out);
  // The MoE layers' decode batches of `batch` sequences take the per-expert route,
  // which takes host decisions: no graph for them. The same answer on every stage (from
  // the config, whatever layers a stage holds), since stages replay graphs together.
  bool MoeDecodeRunsPerExpert(int32_t batch) const;
  // DP attention: the decode graph bucket every DP rank replays this step, or 0 when
  // any of them runs eagerly (one tiny all-reduce over EP and a sync).
  int32_t AgreeOnGraph(int32_t bucket);
  bool dp_attention() const { return placement_.dp != nullptr && placement_.dp->size() > 1; }
  std::vector<DeviceSample> SampleRows(const Tensor& logits, const std::vector<SamplingRow>& rows);
  void CaptureGraphs();
  size_t ActivationBytesEstimate() const;

  ModelConfig config_;
  ModelShard shard_;
  CudaModelOptions options_;
  CudaPlacement placement_;
  cudaStream_t stream_;
  RopeScaling rope_;
  float rope_scale_ = 1.0f;
  int64_t rotary_half_ = 0;
  int64_t num_heads_ = 0, num_kv_heads_ = 0;
  int64_t vocab_first_row_ = 0, vocab_rows_ = 0;
  int32_t max_blocks_per_seq_ = 0;

  cuda::Gemm gemm_;
  std::vector<Layer> layers_;
  Tensor embed_tokens_;  // [vocab rows of this rank, hidden]
  Tensor norm_;
  Tensor lm_head_;       // [vocab rows of this rank, hidden] (may share embed_tokens_)
  Tensor inv_freq_;      // f32 [1, rotary_dim / 2] unless the rope depends on the length
  size_t weight_bytes_ = 0;

  std::unique_ptr<Metadata> metadata_;
  std::unique_ptr<LogitAdjustmentStage> adjustments_;  // the rows' penalties, min_tokens, logit_bias
  std::unique_ptr<cuda::Workspace> workspace_;
  std::shared_ptr<Buffer> kv_buffer_;
  std::vector<Tensor> k_cache_, v_cache_;
  int32_t num_kv_blocks_ = 0;
  int32_t* host_counts_ = nullptr;  // pinned: the EP pair counts [ep, ep], then AgreeOnGraph's two words
  std::unique_ptr<StageLinks> links_;  // pp > 1
  Tensor stage_io_;  // the last Forward's hidden and residual rows [2 t, H]: what crosses a stage boundary
  std::map<int32_t, std::unique_ptr<Graph>> graphs_;  // by padded batch size
  int64_t num_graph_replays_ = 0;
};

}  // namespace lattice
