// The simulated device (`--device sim`): the time a step would take on a GPU of a
// given kind, from the model's shapes and the layout alone. It exists to run the
// real coordinator and scheduler against far more workers than we have GPUs.
//
// A stage's step time is the sum over its layers of
//   max(weight bytes / B, GEMM FLOPs / F)        projections, dense MLP, LM head
// + max(KV bytes / B, attention FLOPs / Fa)       paged attention
// + MoE experts, by the route moe.cu takes:
//     grouped kernels: touched expert bytes / Bm + expert FLOPs / Fg (they do not
//       overlap streaming with math at these sizes; Fg depends on the tile height)
//     per expert (cuBLASLt, eager): max(bytes / B, FLOPs / (F x e)) + a host sync
// + collectives (TP all-reduce x2; under EP in eager steps two all-to-alls and the
//   exchange's fixed and per-peer costs, in decode graphs none)
// + a per-layer overhead (kernel gaps a graph does not hide)
// plus, on the last stage, a per-step overhead (host, sampling); a stage boundary
// costs one send of the hidden states and residual. B is the measured copy bandwidth
// times the fraction decode kernels sustain, F the measured GEMM peak times its
// efficiency at model shapes; a collective over n ranks is latency + hops x per-hop
// latency + bytes moved / bus bandwidth (an all-reduce takes 2(n-1) ring steps and
// moves 2(n-1)/n of the bytes), over NVLink inside a node and the network between
// nodes (ranks fill nodes in order). The H200 defaults were fitted to measured steps
// and serving runs (bench/results/2026-11-22-issue7-scaling.md); see
// docs/architecture.md.
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
  double bandwidth = 0;      // bus bandwidth a collective reaches, bytes/s per GPU
  double latency_s = 0;      // per collective or send
  double hop_latency_s = 0;  // per ring step: 2(n-1) per all-reduce, n-1 per all-to-all
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
  // MoE experts. The grouped kernels stream weights at moe_memory_efficiency of the
  // copy bandwidth and then compute at moe_grouped_flops (64-row tiles) or
  // moe_grouped_small_tile_flops (16-row tiles, up to 16 pairs per expert); the
  // per-expert cuBLASLt route reaches moe_per_expert_efficiency of the GEMM rate.
  double moe_memory_efficiency = 1;
  double moe_grouped_flops = 0;
  double moe_grouped_small_tile_flops = 0;
  double moe_per_expert_efficiency = 1;
  // The per-expert route launches two GEMMs per local expert with rows: each costs this
  // much beyond its roofline time (launch, cuBLASLt's small-GEMM ramp).
  double moe_per_expert_launch_s = 0;
  double moe_ctas_for_full_bandwidth = 1;  // grouped-kernel CTAs that saturate HBM
  double host_sync_s = 0;  // a count copy to the host and the launch gap after it
  // An eager step's EP exchange per MoE layer beyond its all-to-alls' bytes (count
  // exchange, host sync, dispatch plan, one send/recv pair per peer).
  double ep_exchange_s = 0;
  double ep_exchange_per_peer_s = 0;
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
  // Seconds of one GPU's routed experts for `pairs` (token, expert) pairs over
  // `local` experts of which `touched` are used, each `expert_bytes` wide.
  double Experts(double pairs, double local, double touched, double expert_bytes) const;
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
