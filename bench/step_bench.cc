// lattice_step_bench: decode step times of a model shape on GPUs, beside the HBM floor
// measured in the same run.
//
// The model comes from config.json alone (--load-format dummy, random weights on the
// GPU), one thread per GPU with NCCL between them for --tp. Each batch size B runs B
// sequences of --context cached tokens (their KV is whatever the pool holds: a step's
// time does not depend on the values) plus one new token each, greedy, for --steps
// timed steps after warm-up; decode steps replay CUDA graphs unless --no-cuda-graphs.
// The floor of a step is the bytes it must read (this rank's weights, less the experts
// a batch of its size leaves untouched under uniform routing, plus the KV of its
// sequences) over the device-to-device copy bandwidth measured here.
// --prefill instead times one prefill step per batch size B: B sequences whose
// --context tokens are all new (from an empty cache, eager: prefill runs no graph), one
// logit row each, reported as tokens/s and as the matmul TFLOP/s the step reached (the
// FLOPs of every projection the tokens pass through, the experts they route to, and
// causal attention).
// Prints one JSON object per line: the bandwidth, then one per batch size.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <thread>

#include <CLI/CLI.hpp>
#include <nccl.h>
#include <nlohmann/json.hpp>

#include "bench/bench_util.h"
#include "kernels/cuda/device.h"
#include "parallel/nccl/nccl_communicator.h"
#include "worker/cuda/cuda_model.h"

namespace lattice {
namespace {

struct Options {
  std::string model;
  std::string dtype = "bfloat16";
  std::vector<int> batch_sizes = {1, 8, 64, 256};
  int context = 1024;
  int steps = 30;
  int tp = 1;
  bool no_cuda_graphs = false;
  bool prefill = false;
  double gpu_memory_utilization = 0.92;
};

struct RankResult {
  std::vector<double> step_ms;  // per batch size, median
  size_t weight_bytes = 0;
  size_t kv_bytes_per_token = 0;
  int32_t num_kv_blocks = 0;
  double bandwidth = 0;
};

// Multiply-add FLOPs (x2) of one token through every layer's projections, its top-k
// experts (plus router and shared expert) and the LM head's share (one row per sequence:
// left out, as prefill computes it once).
double MatmulFlopsPerToken(const ModelConfig& c) {
  const double h = static_cast<double>(c.hidden_size), d = static_cast<double>(c.head_dim);
  const double attention = h * (c.num_attention_heads + 2 * c.num_key_value_heads) * d + c.num_attention_heads * d * h;
  double total = 0;
  for (int64_t layer = 0; layer < c.num_hidden_layers; ++layer) {
    const bool moe = c.num_experts > 0 && (c.layer_is_moe.empty() || c.layer_is_moe[layer]);
    double mlp = 3 * h * static_cast<double>(c.intermediate_size);
    if (moe) {
      mlp = c.num_experts_per_tok * 3 * h * static_cast<double>(c.moe_intermediate_size) + h * c.num_experts +
            3 * h * static_cast<double>(c.shared_expert_intermediate_size);
    }
    total += attention + mlp;
  }
  return 2 * total;
}

// Causal attention of one sequence of s new tokens: QK^T and PV over half the s x s scores.
double AttentionFlops(const ModelConfig& c, int64_t s) {
  return 4.0 * static_cast<double>(s) * static_cast<double>(s) / 2 * c.num_attention_heads * c.head_dim *
         c.num_hidden_layers;
}

// The expert weight bytes (per rank) a decode step of b tokens does not read: with
// uniform routing a layer's step touches E (1 - (1 - k/E)^b) of its E experts.
double UntouchedExpertBytes(const ModelConfig& c, const Options& o, int b) {
  if (c.num_experts == 0) return 0;
  int64_t moe_layers = 0;
  for (int64_t layer = 0; layer < c.num_hidden_layers; ++layer) {
    moe_layers += c.layer_is_moe.empty() || c.layer_is_moe[layer] ? 1 : 0;
  }
  const absl::StatusOr<DType> dtype = ActivationDType(o.dtype, c.dtype);
  const double expert_bytes = 3.0 * c.hidden_size * c.moe_intermediate_size * DTypeSize(*dtype) / o.tp;
  const double e = static_cast<double>(c.num_experts), k = static_cast<double>(c.num_experts_per_tok);
  const double untouched = e * std::pow(1.0 - k / e, b);
  return moe_layers * untouched * expert_bytes;
}

RankResult RunRank(const Options& o, const ModelConfig& config, int rank, const ncclUniqueId& id) {
  cudaSetDevice(rank);
  RankResult result;
  result.bandwidth = MeasureCopyBandwidth();
  cudaStream_t stream = nullptr;
  cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
  std::unique_ptr<Communicator> tp = o.tp > 1 ? MakeNcclCommunicator(id, rank, o.tp, stream) : MakeSoloCommunicator();
  CudaPlacement placement{tp.get(), nullptr, stream};
  CudaModelOptions options;
  const absl::StatusOr<DType> dtype = ActivationDType(o.dtype, config.dtype);
  LATTICE_CHECK_MSG(dtype.ok(), "%s", dtype.status().ToString().c_str());
  options.dtype = *dtype;
  const int max_batch = *std::max_element(o.batch_sizes.begin(), o.batch_sizes.end());
  options.max_num_seqs = max_batch;
  options.max_num_tokens = std::max(2048, max_batch * (o.prefill ? o.context : 1));
  options.max_model_len = o.context + 64;
  options.cuda_graphs = !o.no_cuda_graphs;
  options.gpu_memory_utilization = o.gpu_memory_utilization;
  ModelShard shard;
  shard.tp = {rank, o.tp};
  absl::StatusOr<std::unique_ptr<CudaModel>> model = CudaModel::Dummy(config, shard, options, placement, 1);
  LATTICE_CHECK_MSG(model.ok(), "%s", model.status().ToString().c_str());
  (*model)->InitializeCache();
  result.weight_bytes = (*model)->weight_bytes();
  result.num_kv_blocks = (*model)->num_kv_blocks();
  const LocalHeads heads = LocalHeadsFor(config.num_attention_heads, config.num_key_value_heads, shard.tp);
  result.kv_bytes_per_token = 2 * config.num_hidden_layers * heads.num_kv_heads * config.head_dim * DTypeSize(options.dtype);

  const int32_t blocks_per_seq = NumBlocksFor(o.context + 1, options.block_size);
  const int32_t new_tokens = o.prefill ? o.context : 1;  // per sequence
  const int32_t first_position = o.prefill ? 0 : o.context;
  for (int batch_size : o.batch_sizes) {
    LATTICE_CHECK_MSG(batch_size * blocks_per_seq <= (*model)->num_kv_blocks(), "batch %d does not fit the KV pool",
                      batch_size);
    ForwardBatch batch;
    batch.max_blocks_per_seq = blocks_per_seq;
    batch.query_start_loc.push_back(0);
    std::vector<SamplingRow> rows(batch_size);
    for (int s = 0; s < batch_size; ++s) {
      std::vector<int32_t> table(blocks_per_seq);
      for (int b = 0; b < blocks_per_seq; ++b) table[b] = s * blocks_per_seq + b;
      for (int32_t i = 0; i < new_tokens; ++i) {
        batch.token_ids.push_back((s * 7919 + i) % 1000);
        batch.positions.push_back(first_position + i);
        batch.slot_mapping.push_back(SlotFor(table, options.block_size, first_position + i));
      }
      batch.query_start_loc.push_back((s + 1) * new_tokens);
      batch.seq_lens.push_back(first_position + new_tokens);
      batch.block_tables.insert(batch.block_tables.end(), table.begin(), table.end());
      batch.logits_indices.push_back((s + 1) * new_tokens - 1);
      rows[s].position = first_position + new_tokens;
    }
    const int warmup = o.prefill ? 2 : 5, steps = o.prefill ? std::min(o.steps, 5) : o.steps;
    for (int i = 0; i < warmup; ++i) (*model)->Execute(batch, rows);
    std::vector<double> times;
    for (int i = 0; i < steps; ++i) {
      cudaStreamSynchronize(stream);
      const auto begin = std::chrono::steady_clock::now();
      (*model)->Execute(batch, rows);
      cudaStreamSynchronize(stream);
      times.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - begin).count());
    }
    std::sort(times.begin(), times.end());
    result.step_ms.push_back(times[times.size() / 2]);
  }
  model->reset();
  tp.reset();
  cudaStreamDestroy(stream);
  return result;
}

int Main(int argc, char** argv) {
  CLI::App app("Decode step times of a model shape against the HBM floor");
  Options o;
  app.add_option("--model", o.model, "directory with config.json")->required();
  app.add_option("--dtype", o.dtype, "auto (the config's), bfloat16, float16 or float32");
  app.add_option("--batch-sizes", o.batch_sizes, "batch sizes")->delimiter(',');
  app.add_option("--context", o.context, "cached tokens per sequence");
  app.add_option("--steps", o.steps, "timed steps per batch size");
  app.add_option("--tp", o.tp, "tensor-parallel GPUs (threads of this process)");
  app.add_flag("--no-cuda-graphs", o.no_cuda_graphs, "run decode steps eagerly");
  app.add_flag("--prefill", o.prefill, "time prefill steps of --context new tokens per sequence instead");
  app.add_option("--gpu-memory-utilization", o.gpu_memory_utilization, "fraction of GPU memory to use");
  CLI11_PARSE(app, argc, argv);
  absl::StatusOr<ModelConfig> config = LoadModelConfig(o.model);
  if (!config.ok()) {
    std::fprintf(stderr, "%s\n", config.status().ToString().c_str());
    return 1;
  }
  ncclUniqueId id{};
  if (o.tp > 1) ncclGetUniqueId(&id);
  std::vector<RankResult> results(o.tp);
  std::vector<std::thread> threads;
  for (int r = 0; r < o.tp; ++r) threads.emplace_back([&, r] { results[r] = RunRank(o, *config, r, id); });
  for (std::thread& t : threads) t.join();

  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  const RankResult& r0 = results[0];
  nlohmann::json head = {{"device", prop.name},
                         {"model", o.model},
                         {"tp", o.tp},
                         {"dtype", o.dtype},
                         {"cuda_graphs", !o.no_cuda_graphs},
                         {"copy_bandwidth_gbps", r0.bandwidth / 1e9},
                         {"weight_bytes_per_rank", r0.weight_bytes},
                         {"num_kv_blocks", r0.num_kv_blocks}};
  std::printf("%s\n", head.dump().c_str());
  for (size_t i = 0; i < o.batch_sizes.size(); ++i) {
    double ms = 0;
    for (const RankResult& r : results) ms = std::max(ms, r.step_ms[i]);
    const int b = o.batch_sizes[i];
    if (o.prefill) {
      const double tokens = static_cast<double>(b) * o.context;
      const double flops = tokens * MatmulFlopsPerToken(*config) / o.tp + b * AttentionFlops(*config, o.context) / o.tp;
      nlohmann::json line = {{"prefill_batch", b},
                             {"tokens_per_seq", o.context},
                             {"step_ms", ms},
                             {"tokens_per_s", tokens / (ms * 1e-3)},
                             {"tflops_per_rank", flops / (ms * 1e-3) / 1e12}};
      std::printf("%s\n", line.dump().c_str());
      continue;
    }
    const double bytes = static_cast<double>(r0.weight_bytes) - UntouchedExpertBytes(*config, o, b) +
                         static_cast<double>(b) * (o.context + 1) * static_cast<double>(r0.kv_bytes_per_token);
    const double floor_ms = bytes / r0.bandwidth * 1e3;
    nlohmann::json line = {{"batch", b},
                           {"context", o.context},
                           {"step_ms", ms},
                           {"tokens_per_s", b / (ms * 1e-3)},
                           {"bytes_read_per_rank", bytes},
                           {"floor_ms", floor_ms},
                           {"fraction_of_hbm_roofline", floor_ms / ms}};
    std::printf("%s\n", line.dump().c_str());
  }
  return 0;
}

}  // namespace
}  // namespace lattice

int main(int argc, char** argv) { return lattice::Main(argc, argv); }
