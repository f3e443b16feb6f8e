// The simulated device (`--device sim`): the time a step would take on a GPU of a
// given kind, from the model's shapes and the layout alone. It exists to run the
// real coordinator and scheduler against far more workers than we have GPUs.
//
// A stage's step time is the sum over its layers of
//   max(weight bytes / B, GEMM FLOPs / F)        projections, dense MLP, LM head
// + max(KV bytes / B, attention FLOPs / Fa)       paged attention
// + max(touched expert bytes / B, expert FLOPs / F)   MoE layers
// + collectives (TP all-reduce x2, EP all-to-all x2 per MoE layer)
// + a per-layer overhead (kernel gaps a graph does not hide)
// plus, on the last stage, a per-step overhead (host, sampling); a stage boundary
// costs one send of the hidden states and residual. B is the measured copy bandwidth
// times the fraction decode kernels sustain, F the measured GEMM peak times its
// efficiency at model shapes; collectives are latency + bytes / link bandwidth, over
// NVLink inside a node and the network between nodes (ranks fill nodes in order).
// The defaults for H200 were fitted to the decode steps measured on one H200
// (bench/results/2026-11-22-h200-gpu-backend.md); see docs/architecture.md.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "parallel/rank_layout.h"
#include "worker/model_config.h"

namespace lattice::sim {

struct Link {
  double bandwidth = 0;  // bytes/s per GPU, one direction
  double latency_s = 0;  // per collective or send
};

struct Hardware {
  std::string name;
  double memory_bytes = 0;        // HBM per GPU
  double memory_bandwidth = 0;    // copy bandwidth, bytes/s
  double memory_efficiency = 1;   // fraction of it the step's kernels sustain
  double matmul_flops = 0;        // dense GEMM peak in the model's dtype, FLOP/s
  double matmul_efficiency = 1;   // fraction of it at model shapes
  double attention_flops = 0;     // prefill attention, FLOP/s
  double step_overhead_s = 0;     // per step, last stage
  double layer_overhead_s = 0;    // per layer and step
  double activation_reserve_bytes = 0;  // kept free of KV per GPU
  int gpus_per_node = 8;
  Link nvlink;   // between GPUs of a node
  Link network;  // between nodes
};

// "h100", "h200", or a JSON file: {"base": "h200", <any field of Hardware>...}
// (links as {"nvlink": {"bandwidth": .., "latency_s": ..}}). INVALID_ARGUMENT for an
// unknown name or field, NOT_FOUND for a missing file.
absl::StatusOr<Hardware> LoadHardware(std::string_view name_or_path);
nlohmann::json HardwareToJson(const Hardware& hardware);

// One sequence's part of a step.
struct SeqWork {
  int32_t num_new_tokens = 0;
  int32_t context_len = 0;  // tokens in the cache after the step
  bool sample = false;
};

// Where a stage's time goes (seconds).
struct StageCost {
  double gemm_s = 0;
  double attention_s = 0;
  double moe_s = 0;
  double tp_comm_s = 0;
  double ep_comm_s = 0;
  double overhead_s = 0;
  double send_s = 0;  // to the next stage (0 on the last)
  double total() const { return gemm_s + attention_s + moe_s + tp_comm_s + ep_comm_s + overhead_s; }
};

class CostModel {
 public:
  // `pp_layers`: layers per stage (empty: the even split of ShardFor).
  CostModel(const ModelConfig& config, const RankLayout& layout, const std::vector<int>& pp_layers,
            const Hardware& hardware, int dtype_bytes);

  // Stage `stage`'s time for a step whose DP ranks run `work[dp_rank]` (an instance
  // of a dense model has one DP rank; an MoE model's DP ranks step together, so each
  // layer takes as long as its slowest DP rank).
  StageCost Stage(int stage, const std::vector<std::vector<SeqWork>>& work) const;

  // Weights one GPU of `stage` holds, and the KV bytes one token takes on it.
  int64_t WeightBytesPerGpu(int stage) const;
  int64_t KvBytesPerTokenPerGpu(int stage) const;
  // KV blocks of `block_size` tokens that fit on one GPU of `stage` at `utilization`
  // of its memory (may be < 0 when the weights alone do not fit).
  int64_t KvBlocksPerGpu(int stage, int32_t block_size, double utilization) const;

  int num_stages() const { return static_cast<int>(first_layer_.size()); }
  int num_dp() const { return layout_.config().dp; }
  const Hardware& hardware() const { return hardware_; }

 private:
  struct LayerShape {
    double attention_weight_bytes;  // qkv + o per GPU
    double mlp_weight_bytes;        // dense MLP per GPU (0 on MoE layers)
    double router_bytes;
    double expert_bytes;            // one expert per GPU (TP-sliced when ep == 1)
    double shared_expert_bytes;     // per GPU
    double kv_bytes_per_token;      // per GPU
    int32_t window;                 // 0: none
    bool moe;
  };
  LayerShape Shape(int layer) const;
  // Seconds of an all-reduce of `bytes` over `n` GPUs on `link`.
  static double AllReduce(double bytes, int n, const Link& link);
  static double AllToAll(double bytes, int n, const Link& link);
  const Link& LinkBetween(int rank_a, int rank_b) const;
  const Link& GroupLink(const std::vector<int>& ranks) const;

  ModelConfig config_;
  RankLayout layout_;
  Hardware hardware_;
  double dtype_bytes_;
  std::vector<int> first_layer_;  // per stage
  std::vector<int> end_layer_;
};

}  // namespace lattice::sim
