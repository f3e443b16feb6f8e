// lattice_kernel_bench: TFLOP/s of our GEMMs (cuBLASLt) and of the paged attention
// kernels, each beside its floor measured in the same run:
//   - GEMM: the best of large square bf16 GEMMs is the measured peak; Llama-3.1-8B's
//     projection shapes at 8192 tokens are reported as a fraction of it.
//   - prefill attention: causal, one sequence of S tokens over an empty cache (the
//     shapes bench/peers/sdpa_bench.py runs through PyTorch's SDPA), FLOPs counted as
//     4 * S^2 / 2 * heads * head_dim; each shape after 300 ms of idle, timed as single
//     calls, short back-to-back runs and sustained (SustainedMs).
//   - decode attention: B sequences of C cached tokens; bytes of KV read over the
//     copy bandwidth measured here.
//   - decode GEMMs in graphs: M = 1, 2, 8 rows against each Llama-3.1-8B projection,
//     back-to-back launches over enough weight copies (>= 1 GiB) that L2 holds none,
//     replayed as one CUDA graph as a decode step runs them: weight bytes per second
//     against the copy bandwidth.
// `lattice_kernel_bench --decode` runs only the decode benchmarks, `--prefill` only the
// prefill attention ones (LATTICE_ATTENTION_SM90=0 times the mma.sync kernel instead of
// the Hopper one). One JSON object per line.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/bench_util.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/ops.h"

namespace lattice {
namespace {

// Median milliseconds per call of `fn` over `reps` timed runs after warm-up, each run
// `calls` calls between two events. calls = 1 includes the host's launch cost;
// calls > 1 queues the calls back to back, so the GPU never waits for the host.
double TimeMs(const std::function<void()>& fn, int reps = 20, int calls = 1) {
  for (int i = 0; i < 3; ++i) fn();
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  std::vector<float> times;
  for (int r = 0; r < reps; ++r) {
    cudaEventRecord(start);
    for (int i = 0; i < calls; ++i) fn();
    cudaEventRecord(stop);
    cudaEventSynchronize(stop);
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    times.push_back(ms / calls);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

// Milliseconds per call once `fn` has run back to back for about a second, so that the
// GPU has settled at the clock its power limit allows (as in a loop of model steps):
// the median of 10 runs of ~50 ms. The short back-to-back runs of TimeMs start from
// the clock an idle GPU boosts to, and a kernel that draws more power loses it sooner.
double SustainedMs(const std::function<void()>& fn, double ms_per_call) {
  const int warm = std::max(10, static_cast<int>(1000.0 / ms_per_call));
  for (int i = 0; i < warm; ++i) fn();
  return TimeMs(fn, 10, std::max(10, static_cast<int>(50.0 / ms_per_call)));
}

Tensor RandomDevice(DType dtype, Shape shape, uint64_t seed) {
  Tensor t = cuda::EmptyDevice(dtype, std::move(shape));
  cuda::FillUniform(t, seed, -1.0f, 1.0f);
  return t;
}

void Print(const nlohmann::json& j) { std::printf("%s\n", j.dump().c_str()); std::fflush(stdout); }

void BenchGemm() {
  cuda::Gemm gemm;
  double peak = 0;
  for (int64_t n : {4096, 8192, 16384}) {
    Tensor a = RandomDevice(DType::kBF16, {n, n}, 1), b = RandomDevice(DType::kBF16, {n, n}, 2);
    Tensor c = cuda::EmptyDevice(DType::kBF16, {n, n});
    const double ms = TimeMs([&] { gemm.Linear(a, b, Tensor(), c); }, 10);
    const double tflops = 2.0 * n * n * n / (ms * 1e-3) / 1e12;
    peak = std::max(peak, tflops);
    Print({{"bench", "gemm_square"}, {"n", n}, {"ms", ms}, {"tflops", tflops}});
  }
  Print({{"bench", "gemm_peak"}, {"tflops", peak}});
  // Llama-3.1-8B projections (qkv, o, gate_up, down, lm_head) at 8192 tokens.
  struct Shape3 {
    const char* name;
    int64_t n, k;
  };
  const Shape3 shapes[] = {{"qkv", 6144, 4096}, {"o", 4096, 4096}, {"gate_up", 28672, 4096},
                           {"down", 4096, 14336}, {"lm_head", 128256, 4096}};
  for (int64_t m : {8192}) {
    for (const Shape3& s : shapes) {
      Tensor x = RandomDevice(DType::kBF16, {m, s.k}, 3), w = RandomDevice(DType::kBF16, {s.n, s.k}, 4);
      Tensor out = cuda::EmptyDevice(DType::kBF16, {m, s.n});
      const double ms = TimeMs([&] { gemm.Linear(x, w, Tensor(), out); }, 10);
      const double tflops = 2.0 * m * s.n * s.k / (ms * 1e-3) / 1e12;
      Print({{"bench", "gemm_llama8b"}, {"proj", s.name}, {"m", m}, {"n", s.n}, {"k", s.k}, {"ms", ms},
             {"tflops", tflops}, {"fraction_of_peak", tflops / peak}});
    }
  }
}

// Decode-sized GEMMs (M = 1 and 8) of Llama-3.1-8B's projections: the weight bytes
// over the time, for our skinny kernel and for cuBLASLt, against the copy bandwidth.
void BenchSkinny(double bandwidth) {
  struct Shape2 {
    const char* name;
    int64_t n, k;
  };
  const Shape2 shapes[] = {{"qkv", 6144, 4096}, {"o", 4096, 4096}, {"gate_up", 28672, 4096},
                           {"down", 4096, 14336}, {"lm_head", 128256, 4096}};
  for (bool skinny : {true, false}) {
    cuda::Gemm gemm;
    gemm.set_skinny(skinny ? cuda::Gemm::Skinny::kAlways : cuda::Gemm::Skinny::kNever);
    for (int64_t m : {1, 8}) {
      for (const Shape2& s : shapes) {
        Tensor x = RandomDevice(DType::kBF16, {m, s.k}, 3), w = RandomDevice(DType::kBF16, {s.n, s.k}, 4);
        Tensor out = cuda::EmptyDevice(DType::kBF16, {m, s.n});
        const double ms = TimeMs([&] { gemm.Linear(x, w, Tensor(), out); });
        const double bytes = 2.0 * s.n * s.k;
        Print({{"bench", "gemm_decode"}, {"kernel", skinny ? "skinny" : "cublaslt"}, {"proj", s.name}, {"m", m},
               {"ms", ms}, {"weight_gbps", bytes / (ms * 1e-3) / 1e9},
               {"fraction_of_copy_bandwidth", bytes / (ms * 1e-3) / bandwidth}});
      }
    }
  }
}

// Decode-sized GEMMs as a step runs them: one graph of back-to-back launches, each on
// its own copy of the weight (>= 1 GiB in all, so no launch finds its weight in L2).
// "down_silu" is the down projection reading silu(gate) * up from a [M, 2K] input.
void BenchSkinnyGraph(double bandwidth) {
  struct Shape2 {
    const char* name;
    int64_t n, k;
    bool silu;
  };
  const Shape2 shapes[] = {{"qkv", 6144, 4096, false},    {"o", 4096, 4096, false},
                           {"gate_up", 28672, 4096, false}, {"down", 4096, 14336, false},
                           {"down_silu", 4096, 14336, true}, {"lm_head", 128256, 4096, false}};
  cudaStream_t stream = nullptr;
  cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
  for (bool skinny : {true, false}) {
    cuda::Gemm gemm;
    gemm.set_skinny(skinny ? cuda::Gemm::Skinny::kAlways : cuda::Gemm::Skinny::kNever);
    for (int64_t m : {1, 2, 8}) {
      for (const Shape2& s : shapes) {
        const double bytes = 2.0 * s.n * s.k;
        const int copies = static_cast<int>(std::max(2.0, std::ceil(double{1 << 30} / bytes)));
        Tensor x = RandomDevice(DType::kBF16, {m, s.silu ? 2 * s.k : s.k}, 3);
        Tensor act = cuda::EmptyDevice(DType::kBF16, {m, s.k});
        Tensor out = cuda::EmptyDevice(s.name == std::string("lm_head") ? DType::kF32 : DType::kBF16, {m, s.n});
        std::vector<Tensor> weights;
        for (int i = 0; i < copies; ++i) weights.push_back(RandomDevice(DType::kBF16, {s.n, s.k}, 4 + i));
        auto run = [&] {
          for (const Tensor& w : weights) {
            if (s.silu) {
              gemm.LinearSiluAndMul(x, w, Tensor(), act, out, stream);
            } else {
              gemm.Linear(x, w, Tensor(), out, stream);
            }
          }
        };
        run();  // plans and lazy loading outside the capture
        cudaStreamSynchronize(stream);
        cudaGraph_t graph = nullptr;
        cudaGraphExec_t exec = nullptr;
        cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal);
        run();
        cudaStreamEndCapture(stream, &graph);
        cudaGraphInstantiate(&exec, graph, 0);
        cudaEvent_t start, stop;
        cudaEventCreate(&start);
        cudaEventCreate(&stop);
        std::vector<float> times;
        for (int i = 0; i < 7; ++i) {
          cudaEventRecord(start, stream);
          cudaGraphLaunch(exec, stream);
          cudaEventRecord(stop, stream);
          cudaEventSynchronize(stop);
          float ms = 0;
          cudaEventElapsedTime(&ms, start, stop);
          if (i > 0) times.push_back(ms / copies);
        }
        std::sort(times.begin(), times.end());
        const double ms = times[times.size() / 2];
        cudaEventDestroy(start);
        cudaEventDestroy(stop);
        cudaGraphExecDestroy(exec);
        cudaGraphDestroy(graph);
        const cudaError_t err = cudaGetLastError();
        Print({{"bench", "gemm_decode_graph"}, {"kernel", skinny ? "skinny" : "cublaslt"}, {"proj", s.name},
               {"m", m}, {"launches", copies}, {"us_per_launch", ms * 1e3},
               {"fraction_of_copy_bandwidth", bytes / (ms * 1e-3) / bandwidth},
               {"error", cudaGetErrorString(err)}});
      }
    }
  }
  cudaStreamDestroy(stream);
}

// Sequences of `q_len` new tokens each over `context` tokens, blocks laid out in order.
void BenchAttention(const char* name, int num_seqs, int q_len, int context, int heads, int kv_heads, int head_dim,
                    double bandwidth, int block_size = 16) {
  const int blocks_per_seq = (context + block_size - 1) / block_size;
  const int tokens = num_seqs * q_len;
  Tensor q = RandomDevice(DType::kBF16, {tokens, static_cast<int64_t>(heads) * head_dim}, 5);
  Tensor k_cache = RandomDevice(DType::kBF16, {num_seqs * blocks_per_seq, block_size, kv_heads, head_dim}, 6);
  Tensor v_cache = RandomDevice(DType::kBF16, {num_seqs * blocks_per_seq, block_size, kv_heads, head_dim}, 7);
  Tensor out = cuda::EmptyDevice(DType::kBF16, {tokens, heads, head_dim});
  Tensor start_host = Tensor::Empty(DType::kI32, {num_seqs + 1});
  Tensor len_host = Tensor::Empty(DType::kI32, {num_seqs});
  Tensor table_host = Tensor::Empty(DType::kI32, {num_seqs, blocks_per_seq});
  for (int s = 0; s <= num_seqs; ++s) start_host.data<int32_t>()[s] = s * q_len;
  for (int s = 0; s < num_seqs; ++s) len_host.data<int32_t>()[s] = context;
  for (int i = 0; i < num_seqs * blocks_per_seq; ++i) table_host.data<int32_t>()[i] = i;
  cuda::PagedAttentionMetadata metadata;
  metadata.query_start_loc = cuda::ToDevice(start_host);
  metadata.seq_lens = cuda::ToDevice(len_host);
  metadata.block_tables = cuda::ToDevice(table_host);
  metadata.num_seqs = num_seqs;
  metadata.max_query_len = q_len;
  metadata.max_seq_len = context;
  metadata.block_size = block_size;
  cuda::Workspace workspace(size_t{1} << 30);
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  auto call = [&] {
    workspace.Reset();
    cuda::PagedAttention(q, k_cache, v_cache, metadata, scale, 0, out, workspace);
  };
  if (q_len > 1) {
    // Each prefill shape starts from a rested GPU (bench/peers/sdpa_bench.py does the
    // same): the clock the short runs below get depends on what ran just before them.
    cudaDeviceSynchronize();
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
  const double ms = TimeMs(call);
  const double back_to_back_ms = TimeMs(call, 5, 10);
  nlohmann::json line = {{"bench", name},   {"seqs", num_seqs},      {"q_len", q_len}, {"context", context},
                         {"heads", heads},  {"kv_heads", kv_heads}, {"head_dim", head_dim}, {"block_size", block_size}, {"ms", ms}};
  if (q_len > 1) {
    // Causal: query i of q_len sees context - q_len + i + 1 keys (about half of the
    // S x S scores of a prefill from an empty cache).
    const double flops = 4.0 * num_seqs * static_cast<double>(q_len) * (context - q_len / 2.0) * heads * head_dim;
    line["tflops"] = flops / (ms * 1e-3) / 1e12;
    line["tflops_back_to_back"] = flops / (back_to_back_ms * 1e-3) / 1e12;
    line["tflops_sustained"] = flops / (SustainedMs(call, back_to_back_ms) * 1e-3) / 1e12;
  } else {
    const double bytes = 2.0 * num_seqs * static_cast<double>(context) * kv_heads * head_dim * 2;
    line["kv_bytes"] = bytes;
    line["floor_ms"] = bytes / bandwidth * 1e3;
    line["fraction_of_hbm_roofline"] = bytes / bandwidth * 1e3 / ms;
  }
  Print(line);
}

void BenchPrefillAttention(double bandwidth) {
  for (int s : {1024, 4096, 8192}) BenchAttention("prefill_attention", 1, s, s, 32, 8, 128, bandwidth);
  BenchAttention("prefill_attention", 4, 2048, 2048, 32, 8, 128, bandwidth);
  // Chunked prefill: chunks of 512 and 2048 new tokens on top of cached context.
  BenchAttention("prefill_attention", 4, 512, 4096, 32, 8, 128, bandwidth);
  BenchAttention("prefill_attention", 1, 2048, 16384, 32, 8, 128, bandwidth);
  BenchAttention("prefill_attention", 1, 8192, 8192, 32, 8, 128, bandwidth, 64);  // larger KV blocks
}

int Main(bool decode_only, bool prefill_only) {
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  const double bandwidth = MeasureCopyBandwidth();
  Print({{"device", prop.name}, {"copy_bandwidth_gbps", bandwidth / 1e9}});
  if (prefill_only) {
    BenchPrefillAttention(bandwidth);
    return 0;
  }
  BenchSkinnyGraph(bandwidth);
  for (int b : {1, 8, 64, 256}) BenchAttention("decode_attention", b, 1, 1024, 32, 8, 128, bandwidth);
  if (decode_only) return 0;
  BenchGemm();
  BenchSkinny(bandwidth);
  BenchPrefillAttention(bandwidth);
  BenchAttention("decode_attention", 1, 1, 32768, 32, 8, 128, bandwidth);
  return 0;
}

}  // namespace
}  // namespace lattice

int main(int argc, char** argv) {
  return lattice::Main(argc > 1 && std::strcmp(argv[1], "--decode") == 0,
                       argc > 1 && std::strcmp(argv[1], "--prefill") == 0);
}
