// lattice_step_bench: decode step times of a model shape on GPUs, beside the HBM floor
// measured in the same run.
//
// The model comes from config.json alone (--load-format dummy, random weights on the
// GPU), one thread per GPU with NCCL between them for --tp. Each batch size B runs B
// sequences of --context cached tokens (their KV is whatever the pool holds: a step's
// time does not depend on the values) plus one new token each, greedy, for --steps
// timed steps after warm-up; decode steps replay CUDA graphs unless --no-cuda-graphs.
// The floor of a step is the bytes it must read (this rank's weights plus the KV of
// its sequences) over the device-to-device copy bandwidth measured here.
// Prints one JSON object per line: the bandwidth, then one per batch size.
#include <chrono>
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
  double gpu_memory_utilization = 0.92;
};

struct RankResult {
  std::vector<double> step_ms;  // per batch size, median
  size_t weight_bytes = 0;
  size_t kv_bytes_per_token = 0;
  int32_t num_kv_blocks = 0;
  double bandwidth = 0;
};

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
  options.max_num_tokens = std::max(2048, max_batch);
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
      batch.token_ids.push_back(s % 1000);
      batch.positions.push_back(o.context);
      batch.slot_mapping.push_back(SlotFor(table, options.block_size, o.context));
      batch.query_start_loc.push_back(s + 1);
      batch.seq_lens.push_back(o.context + 1);
      batch.block_tables.insert(batch.block_tables.end(), table.begin(), table.end());
      batch.logits_indices.push_back(s);
      rows[s].position = o.context + 1;
    }
    for (int i = 0; i < 5; ++i) (*model)->Execute(batch, rows);
    std::vector<double> times;
    for (int i = 0; i < o.steps; ++i) {
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
    const double bytes = static_cast<double>(r0.weight_bytes) +
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
