// The simulated device's cost model (see cost_model.h).
#include "worker/sim/cost_model.h"

#include <algorithm>
#include <cmath>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "kernels/moe_route.h"
#include "worker/layout.h"

namespace lattice::sim {
namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
constexpr double kMiB = 1024.0 * 1024.0;

// Fitted to the Llama-3.1-8B decode steps measured on one H200 with the kernels of
// bench/results/2026-11-22-h200-decode-b1.md (batch 1: 4.36 ms, 88% of the copy
// bandwidth; weights and KV together stream at about 86% of the 4.27 TB/s copy bandwidth, and
// graphs with programmatic launch leave ~0.24 ms of per-step and per-layer overhead),
// the GEMM peak measured by lattice_kernel_bench (775 TFLOP/s, 85% at model shapes),
// our prefill attention (300 TFLOP/s at 8k).
// NVLink: fitted to the TP serving runs on H200s (70B tp4/tp8 light-load TPOT and
// saturated throughput, 8B tp2; bench/results/2026-11-22-issue7-scaling.md): 18 us per
// collective + 2 us per ring step (a decode all-reduce: 22 us at tp2, 30 at tp4, 46 at
// tp8), 220 GB/s of bus bandwidth for the prefill chunks' large all-reduces (half of
// NVLink 4's 450 GB/s: eager, without NVLS).
// Experts: fitted to Mixtral-8x7B's steps on one H200 (moe_step_bench.jsonl): the
// grouped kernels stream weights at 82% of the copy bandwidth (full from ~300 CTAs:
// batch 1's down GEMM has 128) and then compute at 93 TFLOP/s with 16-row tiles
// (batch 8 -> 64) and 150 with 64-row tiles (batch 256, prefill); the per-expert
// route reaches 85% of the GEMM rate (2048-token prefill) and pays ~100 us of host
// sync and launches per layer (batch 256). The EP exchange of an eager step (150 us
// + 80 us per peer per MoE layer) was fitted to the Mixtral EP serving runs.
// 400 Gb/s InfiniBand per GPU (unchecked). Its error against measured steps and
// serving runs: bench/results/2026-11-22-issue7-*.md.
Hardware H200() {
  Hardware h;
  h.name = "h200";
  h.memory_bytes = 143771.0 * kMiB;
  h.memory_bandwidth = 4.27e12;
  h.memory_efficiency = 0.86;
  h.matmul_flops = 775e12;
  h.matmul_efficiency = 0.85;
  h.attention_flops = 300e12;
  h.step_overhead_s = 100e-6;
  h.layer_overhead_s = 4.5e-6;
  h.activation_reserve_bytes = 2 * kGiB;
  h.moe_memory_efficiency = 0.82;
  h.moe_grouped_flops = 150e12;
  h.moe_grouped_small_tile_flops = 93e12;
  h.moe_per_expert_efficiency = 0.85;
  h.moe_per_expert_launch_s = 5e-6;
  h.moe_ctas_for_full_bandwidth = 300;
  h.host_sync_s = 100e-6;
  h.ep_exchange_s = 150e-6;
  h.ep_exchange_per_peer_s = 80e-6;
  h.gpus_per_node = 8;
  h.nvlink = {.bandwidth = 220e9, .latency_s = 18e-6, .hop_latency_s = 2e-6};
  h.network = {.bandwidth = 45e9, .latency_s = 25e-6, .hop_latency_s = 5e-6};
  return h;
}

// The same chip with 80 GB of HBM3 at 3.35 TB/s nominal; copy bandwidth scaled from
// the H200's measured fraction of nominal (4.27 of 4.8). The GEMM peak is the
// H200's: the SMs and clocks are the same.
Hardware H100() {
  Hardware h = H200();
  h.name = "h100";
  h.memory_bytes = 81559.0 * kMiB;
  h.memory_bandwidth = 3.35e12 * (4.27 / 4.8);
  return h;
}

absl::Status ApplyJson(const nlohmann::json& j, const std::string& where, Hardware& h) {
  for (const auto& [key, value] : j.items()) {
    auto number = [&](double& field) -> absl::Status {
      if (!value.is_number()) return absl::InvalidArgumentError(absl::StrCat(where, ": ", key, " must be a number"));
      field = value.get<double>();
      return absl::OkStatus();
    };
    auto link = [&](Link& l) -> absl::Status {
      if (!value.is_object()) return absl::InvalidArgumentError(absl::StrCat(where, ": ", key, " must be an object"));
      for (const auto& [k, v] : value.items()) {
        if (!v.is_number()) return absl::InvalidArgumentError(absl::StrCat(where, ": ", key, ".", k, " must be a number"));
        if (k == "bandwidth") l.bandwidth = v.get<double>();
        else if (k == "latency_s") l.latency_s = v.get<double>();
        else if (k == "hop_latency_s") l.hop_latency_s = v.get<double>();
        else return absl::InvalidArgumentError(absl::StrCat(where, ": unknown field ", key, ".", k));
      }
      return absl::OkStatus();
    };
    absl::Status s;
    if (key == "base") continue;
    else if (key == "name") h.name = value.is_string() ? value.get<std::string>() : h.name;
    else if (key == "memory_bytes") s = number(h.memory_bytes);
    else if (key == "memory_bandwidth") s = number(h.memory_bandwidth);
    else if (key == "memory_efficiency") s = number(h.memory_efficiency);
    else if (key == "matmul_flops") s = number(h.matmul_flops);
    else if (key == "matmul_efficiency") s = number(h.matmul_efficiency);
    else if (key == "attention_flops") s = number(h.attention_flops);
    else if (key == "step_overhead_s") s = number(h.step_overhead_s);
    else if (key == "layer_overhead_s") s = number(h.layer_overhead_s);
    else if (key == "activation_reserve_bytes") s = number(h.activation_reserve_bytes);
    else if (key == "moe_memory_efficiency") s = number(h.moe_memory_efficiency);
    else if (key == "moe_grouped_flops") s = number(h.moe_grouped_flops);
    else if (key == "moe_grouped_small_tile_flops") s = number(h.moe_grouped_small_tile_flops);
    else if (key == "moe_per_expert_efficiency") s = number(h.moe_per_expert_efficiency);
    else if (key == "moe_per_expert_launch_s") s = number(h.moe_per_expert_launch_s);
    else if (key == "moe_ctas_for_full_bandwidth") s = number(h.moe_ctas_for_full_bandwidth);
    else if (key == "host_sync_s") s = number(h.host_sync_s);
    else if (key == "ep_exchange_s") s = number(h.ep_exchange_s);
    else if (key == "ep_exchange_per_peer_s") s = number(h.ep_exchange_per_peer_s);
    else if (key == "gpus_per_node") {
      double n = 0;
      s = number(n);
      h.gpus_per_node = static_cast<int>(n);
    } else if (key == "nvlink") s = link(h.nvlink);
    else if (key == "network") s = link(h.network);
    else return absl::InvalidArgumentError(absl::StrCat(where, ": unknown field ", key));
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status Check(const Hardware& h, const std::string& where) {
  const bool ok = h.memory_bytes > 0 && h.memory_bandwidth > 0 && h.memory_efficiency > 0 &&
                  h.memory_efficiency <= 1 && h.matmul_flops > 0 && h.matmul_efficiency > 0 &&
                  h.matmul_efficiency <= 1 && h.attention_flops > 0 && h.step_overhead_s >= 0 &&
                  h.layer_overhead_s >= 0 && h.activation_reserve_bytes >= 0 && h.gpus_per_node >= 1 &&
                  h.nvlink.bandwidth > 0 && h.network.bandwidth > 0 && h.nvlink.latency_s >= 0 &&
                  h.network.latency_s >= 0 && h.nvlink.hop_latency_s >= 0 && h.network.hop_latency_s >= 0 &&
                  h.moe_memory_efficiency > 0 && h.moe_memory_efficiency <= 1 && h.moe_grouped_flops > 0 &&
                  h.moe_grouped_small_tile_flops > 0 && h.moe_per_expert_efficiency > 0 &&
                  h.moe_per_expert_efficiency <= 1 && h.moe_per_expert_launch_s >= 0 && h.moe_ctas_for_full_bandwidth > 0 && h.host_sync_s >= 0 &&
                  h.ep_exchange_s >= 0 && h.ep_exchange_per_peer_s >= 0;
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      where, ": bandwidths, FLOP rates and memory must be positive, efficiencies in (0, 1], overheads >= 0"));
}

// Keys a query of a chunk attends to, summed over its queries (causal; a window
// caps each query's keys).
double AttendedKeys(const SeqWork& s, int32_t window) {
  const double q = s.num_new_tokens;
  const double start = s.context_len - s.num_new_tokens;
  const double mean = start + (q + 1) / 2;
  return q * (window > 0 ? std::min<double>(window, mean) : mean);
}

// The route moe.cu's auto rule takes for `pairs` over `local` experts: cuBLASLt per
// expert, eagerly.
bool RunsPerExpert(double pairs, double local, double flops_per_row) {
  const double rows = pairs / local;
  return MoePerExpertRouteWins(rows, rows * flops_per_row);
}

}  // namespace

absl::StatusOr<Hardware> LoadHardware(std::string_view name_or_path) {
  if (name_or_path == "h200") return H200();
  if (name_or_path == "h100") return H100();
  const std::string path(name_or_path);
  if (path.find(".json") == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("--sim-hardware ", path, ": expected h100, h200 or a .json file"));
  }
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("--sim-hardware ", path, ": cannot open the file"));
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a JSON object"));
  }
  const std::string base = j.value("base", std::string("h200"));
  if (base != "h100" && base != "h200") {
    return absl::InvalidArgumentError(absl::StrCat(path, ": base '", base, "' is not h100 or h200"));
  }
  Hardware h = base == "h100" ? H100() : H200();
  if (absl::Status s = ApplyJson(j, path, h); !s.ok()) return s;
  if (absl::Status s = Check(h, path); !s.ok()) return s;
  return h;
}

nlohmann::json HardwareToJson(const Hardware& h) {
  auto link = [](const Link& l) {
    return nlohmann::json{{"bandwidth", l.bandwidth}, {"latency_s", l.latency_s}, {"hop_latency_s", l.hop_latency_s}};
  };
  return {{"name", h.name},
          {"memory_bytes", h.memory_bytes},
          {"memory_bandwidth", h.memory_bandwidth},
          {"memory_efficiency", h.memory_efficiency},
          {"matmul_flops", h.matmul_flops},
          {"matmul_efficiency", h.matmul_efficiency},
          {"attention_flops", h.attention_flops},
          {"step_overhead_s", h.step_overhead_s},
          {"layer_overhead_s", h.layer_overhead_s},
          {"activation_reserve_bytes", h.activation_reserve_bytes},
          {"moe_memory_efficiency", h.moe_memory_efficiency},
          {"moe_grouped_flops", h.moe_grouped_flops},
          {"moe_grouped_small_tile_flops", h.moe_grouped_small_tile_flops},
          {"moe_per_expert_efficiency", h.moe_per_expert_efficiency},
          {"moe_per_expert_launch_s", h.moe_per_expert_launch_s},
          {"moe_ctas_for_full_bandwidth", h.moe_ctas_for_full_bandwidth},
          {"host_sync_s", h.host_sync_s},
          {"ep_exchange_s", h.ep_exchange_s},
          {"ep_exchange_per_peer_s", h.ep_exchange_per_peer_s},
          {"gpus_per_node", h.gpus_per_node},
          {"nvlink", link(h.nvlink)},
          {"network", link(h.network)}};
}

CostModel::CostModel(const ModelConfig& config, const RankLayout& layout, const std::vector<int>& pp_layers,
                     const Hardware& hardware, int dtype_bytes)
    : config_(config), layout_(layout), hardware_(hardware), dtype_bytes_(dtype_bytes) {
  const int pp = layout.config().pp;
  for (int stage = 0; stage < pp; ++stage) {
    const ModelShard shard = ShardFor(config, layout, layout.RankOf(stage, 0, 0), pp_layers);
    first_layer_.push_back(shard.first_layer);
    end_layer_.push_back(shard.end_layer < 0 ? static_cast<int>(config.num_hidden_layers) : shard.end_layer);
  }
}

CostModel::LayerShape CostModel::Shape(int layer) const {
  const ModelConfig& c = config_;
  const ParallelConfig& p = layout_.config();
  const double b = dtype_bytes_;
  const double h = static_cast<double>(c.hidden_size);
  const double d = static_cast<double>(c.head_dim);
  const double heads = static_cast<double>(c.num_attention_heads) / p.tp;
  // KV heads fewer than the TP ranks are replicated: each rank holds one.
  const double kv_heads = std::max(1.0, static_cast<double>(c.num_key_value_heads) / p.tp);
  LayerShape s{};
  s.attention_weight_bytes = b * (h * (heads + 2 * kv_heads) * d + heads * d * h);
  s.kv_bytes_per_token = b * 2 * kv_heads * d;
  s.window = layer < static_cast<int>(c.sliding_window.size()) ? c.sliding_window[layer] : 0;
  s.moe = c.num_experts > 0 && layer < static_cast<int>(c.layer_is_moe.size()) && c.layer_is_moe[layer];
  if (s.moe) {
    s.router_bytes = b * h * static_cast<double>(c.num_experts);
    const double width = static_cast<double>(c.moe_intermediate_size) / (p.ep > 1 ? 1 : p.tp);
    s.expert_bytes = b * 3 * h * width;
    s.shared_expert_bytes = b * 3 * h * static_cast<double>(c.shared_expert_intermediate_size) / p.tp;
  } else {
    s.mlp_weight_bytes = b * 3 * h * static_cast<double>(c.intermediate_size) / p.tp;
  }
  return s;
}

double CostModel::AllReduce(double bytes, int n, const Link& link) {
  if (n <= 1) return 0;
  return link.latency_s + 2.0 * (n - 1) * link.hop_latency_s + 2.0 * (n - 1) / n * bytes / link.bandwidth;
}

// Also an all-gather or reduce-scatter of `bytes` in all.
double CostModel::AllToAll(double bytes, int n, const Link& link) {
  if (n <= 1) return 0;
  return link.latency_s + (n - 1) * link.hop_latency_s + static_cast<double>(n - 1) / n * bytes / link.bandwidth;
}

double CostModel::Experts(double pairs, double local, double touched, double expert_bytes) const {
  const double hidden = static_cast<double>(config_.hidden_size);
  const Hardware& hw = hardware_;
  const double flops = 2 * pairs * expert_bytes / dtype_bytes_;
  const double bytes = touched * expert_bytes;
  if (RunsPerExpert(pairs, local, 2 * expert_bytes / dtype_bytes_)) {
    return std::max(bytes / (hw.memory_bandwidth * hw.memory_efficiency),
                    flops / (hw.matmul_flops * hw.matmul_efficiency * hw.moe_per_expert_efficiency)) +
           hw.host_sync_s + 2 * std::min(local, touched) * hw.moe_per_expert_launch_s;
  }
  // moe.cu's PlanMoe: 16-row tiles while the pairs fit 16 per expert. A CTA of the
  // gate/up GEMM covers 32 (16-row tiles) or 64 intermediate columns of a tile, one of
  // the down GEMM 64 hidden columns; too few CTAs (few experts in use, few local
  // experts under EP) cannot keep the memory system busy.
  const bool small_tiles = pairs <= 16 * local;
  const double tiles = std::max(touched, pairs / (small_tiles ? 16 : 64));
  const double width = expert_bytes / (3 * dtype_bytes_ * hidden);
  auto occupancy = [&](double ctas) { return std::min(1.0, ctas / hw.moe_ctas_for_full_bandwidth); };
  const double stream = bytes / (hw.memory_bandwidth * hw.moe_memory_efficiency) *
                        (2.0 / 3 / occupancy(tiles * width / (small_tiles ? 32 : 64)) +
                         1.0 / 3 / occupancy(tiles * hidden / 64));
  return stream + flops / (small_tiles ? hw.moe_grouped_small_tile_flops : hw.moe_grouped_flops);
}

const Link& CostModel::LinkBetween(int rank_a, int rank_b) const {
  const int g = hardware_.gpus_per_node;
  return rank_a / g == rank_b / g ? hardware_.nvlink : hardware_.network;
}

const Link& CostModel::GroupLink(const std::vector<int>& ranks) const {
  for (int r : ranks) {
    if (&LinkBetween(ranks.front(), r) == &hardware_.network) return hardware_.network;
  }
  return hardware_.nvlink;
}

StageCost CostModel::Stage(int stage, const std::vector<std::vector<SeqWork>>& work) const {
  const ModelConfig& c = config_;
  const ParallelConfig& p = layout_.config();
  const Hardware& hw = hardware_;
  const double bandwidth = hw.memory_bandwidth * hw.memory_efficiency;
  const double flops = hw.matmul_flops * hw.matmul_efficiency;
  const double h = static_cast<double>(c.hidden_size);
  const double b = dtype_bytes_;
  const int ndp = std::max<int>(1, static_cast<int>(work.size()));

  // Per DP rank: tokens, sampled rows.
  std::vector<double> tokens(ndp, 0), rows(ndp, 0);
  double all_tokens = 0, max_tokens = 0;
  for (int r = 0; r < static_cast<int>(work.size()); ++r) {
    for (const SeqWork& s : work[r]) {
      tokens[r] += s.num_new_tokens;
      rows[r] += s.sample ? 1 : 0;
    }
    all_tokens += tokens[r];
    max_tokens = std::max(max_tokens, tokens[r]);
  }
  const int rank = layout_.RankOf(stage, 0, 0);
  const Link& tp_link = GroupLink(layout_.TpGroup(rank));
  const Link& ep_link = GroupLink(layout_.EpGroup(rank));
  const Link& dp_link = GroupLink(layout_.DpGroup(rank));
  // A decode step (one new token per sequence, each sampled) replays a CUDA graph
  // unless the model is pipelined or its experts take the per-expert route; other
  // steps run eagerly (cuda_model.cc).
  bool decode = p.pp == 1 && all_tokens > 0;
  for (const std::vector<SeqWork>& rank_work : work) {
    for (const SeqWork& w : rank_work) decode = decode && w.num_new_tokens == 1 && w.sample;
  }

  StageCost cost;
  for (int layer = first_layer_[stage]; layer < end_layer_[stage]; ++layer) {
    const LayerShape s = Shape(layer);
    // Attention and the dense parts per DP rank; the slowest sets the layer's pace.
    const double params =
        (s.attention_weight_bytes + s.mlp_weight_bytes + s.router_bytes + s.shared_expert_bytes) / b;
    double dense = 0, attention = 0;
    for (int r = 0; r < ndp; ++r) {
      dense = std::max(dense, std::max((params * b) / bandwidth, 2 * params * tokens[r] / flops));
      double kv_bytes = 0, keys = 0;
      if (r < static_cast<int>(work.size())) {
        for (const SeqWork& w : work[r]) {
          kv_bytes += s.kv_bytes_per_token * (s.window > 0 ? std::min(w.context_len, s.window) : w.context_len);
          keys += AttendedKeys(w, s.window);
        }
      }
      const double heads = static_cast<double>(c.num_attention_heads) / p.tp;
      const double attention_flops = 4 * keys * static_cast<double>(c.head_dim) * heads;
      attention = std::max(attention, std::max(kv_bytes / bandwidth, attention_flops / hw.attention_flops));
    }
    cost.gemm_s += dense;
    cost.attention_s += attention;
    if (s.moe) {
      const double e = static_cast<double>(c.num_experts);
      const double k = static_cast<double>(c.num_experts_per_tok);
      // Expected experts touched by the tokens that reach this GPU's experts.
      const double routed = p.ep > 1 ? all_tokens : max_tokens;
      const double local = p.ep > 1 ? e / p.ep : e;
      const double touched = local * (1 - std::pow(1 - k / e, routed));
      const double pairs = routed * k / (p.ep > 1 ? p.ep : 1);  // (token, expert) pairs per GPU
      cost.moe_s += Experts(pairs, local, touched, s.expert_bytes);
      const bool graph = decode && !RunsPerExpert(pairs, local, 2 * s.expert_bytes / b);
      if (p.ep > 1 && !graph) {
        // Dispatch and combine of each GPU's share of its DP rank's pairs, after the
        // pair counts went to the host (NCCL takes host counts).
        const double bytes = max_tokens / p.tp * k * h * b;
        cost.ep_comm_s +=
            2 * AllToAll(bytes, p.ep, ep_link) + hw.ep_exchange_s + (p.ep - 1) * hw.ep_exchange_per_peer_s;
      } else if (p.ep > 1 && p.dp > 1) {
        // In a graph under DP attention: the DP ranks' tokens are all-gathered and
        // the expert outputs reduce-scattered back (no all-to-all).
        cost.ep_comm_s += 2 * AllToAll(all_tokens * h * b, p.dp, dp_link);
      }
    }
    cost.tp_comm_s += 2 * AllReduce(max_tokens * h * b, p.tp, tp_link);
    cost.overhead_s += hw.layer_overhead_s;
  }
  const bool last = stage == num_stages() - 1;
  if (last) {
    // The LM head reads its whole shard once if any row samples.
    double max_rows = 0;
    for (double r : rows) max_rows = std::max(max_rows, r);
    if (max_rows > 0) {
      const double head = static_cast<double>(c.vocab_size) * h / p.tp;
      cost.gemm_s += std::max(head * b / bandwidth, 2 * head * max_rows / flops);
    }
    cost.overhead_s += hw.step_overhead_s;
  } else {
    const int next = layout_.RankOf(stage + 1, 0, 0);
    const Link& link = LinkBetween(rank, next);
    cost.send_s = link.latency_s + max_tokens * h * 2 * b / link.bandwidth;  // hidden + residual
  }
  return cost;
}

int64_t CostModel::WeightBytesPerGpu(int stage) const {
  const ModelConfig& c = config_;
  const ParallelConfig& p = layout_.config();
  double bytes = 0;
  for (int layer = first_layer_[stage]; layer < end_layer_[stage]; ++layer) {
    const LayerShape s = Shape(layer);
    const double experts = s.moe ? static_cast<double>(c.num_experts) / (p.ep > 1 ? p.ep : 1) : 0;
    bytes += s.attention_weight_bytes + s.mlp_weight_bytes + s.router_bytes + s.shared_expert_bytes +
             experts * s.expert_bytes;
  }
  const double table = dtype_bytes_ * static_cast<double>(c.vocab_size) * c.hidden_size / p.tp;
  if (stage == 0) bytes += table;
  if (stage == num_stages() - 1 && (!c.tie_word_embeddings || num_stages() > 1)) bytes += table;
  return static_cast<int64_t>(bytes);
}

int64_t CostModel::KvBytesPerTokenPerGpu(int stage) const {
  double bytes = 0;
  for (int layer = first_layer_[stage]; layer < end_layer_[stage]; ++layer) bytes += Shape(layer).kv_bytes_per_token;
  return static_cast<int64_t>(bytes);
}

int64_t CostModel::KvBlocksPerGpu(int stage, int32_t block_size, double utilization) const {
  const double free = hardware_.memory_bytes * utilization - static_cast<double>(WeightBytesPerGpu(stage)) -
                      hardware_.activation_reserve_bytes;
  const double per_block = static_cast<double>(KvBytesPerTokenPerGpu(stage)) * block_size;
  if (per_block <= 0) return 0;
  return static_cast<int64_t>(std::floor(free / per_block));
}

}  // namespace lattice::sim
