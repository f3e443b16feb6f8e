// The CUDA model of one rank (see cuda_model.h).
#include "worker/cuda/cuda_model.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/device.h"
#include "parallel/nccl/nccl_communicator.h"
#include "worker/model_runner.h"
#include "worker/layers/sharding.h"
#include "worker/layers/vocab_parallel.h"

namespace lattice {

struct CudaModel::Layer {
  Tensor input_layernorm, post_attention_layernorm;
  Tensor qkv_w, qkv_b, o_w, o_b, q_norm, k_norm;
  int32_t sliding_window = 0;
  float scale = 1.0f;
  Tensor gate_up_w, gate_up_b, down_w, down_b;  // dense MLP
  bool moe = false;
  int top_k = 0;
  bool renormalize = false;
  int64_t first_local_expert = 0;
  Tensor router_w, w13, w2;  // routed experts
  Tensor shared_gate_up_w, shared_down_w, shared_gate_w;  // Qwen2-MoE's shared expert
};

// The step's metadata: one pinned staging area and one device buffer with the same
// layout, sections at fixed offsets (in 4-byte words) sized for the worst case.
struct CudaModel::Metadata {
  size_t token_ids = 0, positions = 0, slots = 0, freq_rows = 0, query_start = 0, seq_lens = 0, block_tables = 0,
         logits_indices = 0, temperature = 0, top_k = 0, top_p = 0, min_p = 0, seed = 0, sample_position = 0,
         inv_freq = 0, words = 0;
  int32_t* host = nullptr;
  std::shared_ptr<Buffer> device;

  Tensor View(size_t offset, DType dtype, Shape shape) const {
    return Tensor::FromBuffer(device, offset * 4, dtype, std::move(shape));
  }
  template <typename T>
  T* Host(size_t offset) const {
    return reinterpret_cast<T*>(host + offset);
  }
  ~Metadata() {
    if (host) cudaFreeHost(host);
  }
};

// A captured decode step for `batch` padded sequences; logits are its f32 output.
struct CudaModel::Graph {
  cudaGraphExec_t exec = nullptr;
  Tensor logits;
  Tensor stage_io;  // pp > 1: the rows received before the replay and sent after it
  size_t workspace_end = 0;  // the workspace the graph's body uses: [0, workspace_end)
  ~Graph() {
    if (exec) cudaGraphExecDestroy(exec);
  }
};

namespace {

Tensor ToDeviceAs(const Tensor& host, DType dtype) {
  if (!host.defined()) return Tensor();
  return cuda::ToDevice(host.dtype() == dtype ? host : host.To(dtype));
}

bool Capturing(cudaStream_t stream) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  LATTICE_CUDA_CHECK(cudaStreamIsCapturing(stream, &status));
  return status != cudaStreamCaptureStatusNone;
}

// Batch sizes with a captured decode graph: 1, 2, 4, 8, then every 8 up to the max.
std::vector<int32_t> GraphBuckets(int32_t max_num_seqs) {
  std::vector<int32_t> sizes;
  for (int32_t b : {1, 2, 4}) {
    if (b <= max_num_seqs) sizes.push_back(b);
  }
  for (int32_t b = 8; b <= max_num_seqs; b += 8) sizes.push_back(b);
  if (sizes.empty() || sizes.back() != max_num_seqs) sizes.push_back(max_num_seqs);
  return sizes;
}

}  // namespace

CudaModel::CudaModel(ModelConfig config, ModelShard shard, const CudaModelOptions& options,
                     const CudaPlacement& placement)
    : config_(std::move(config)), shard_(shard), options_(options), placement_(placement), stream_(placement.stream) {
  LATTICE_CHECK(placement.tp != nullptr);
  if (shard_.end_layer < 0) shard_.end_layer = static_cast<int>(config_.num_hidden_layers);
  rope_ = RopeScalingFor(config_);
  const RopeFrequencies frequencies = ComputeRopeFrequencies(rope_, options_.max_model_len);
  rotary_half_ = static_cast<int64_t>(frequencies.inv_freq.size());
  rope_scale_ = frequencies.attention_scale;
  if (!RopeDependsOnLength(rope_)) {
    inv_freq_ = cuda::ToDevice(Tensor::FromVector(frequencies.inv_freq, {1, rotary_half_}));
  }
  const LocalHeads heads = LocalHeadsFor(config_.num_attention_heads, config_.num_key_value_heads, shard_.tp);
  num_heads_ = heads.num_heads;
  num_kv_heads_ = heads.num_kv_heads;
  const RowRange vocab = VocabShard(config_.vocab_size, shard_.tp);
  vocab_first_row_ = vocab.begin;
  vocab_rows_ = vocab.size();
  max_blocks_per_seq_ = NumBlocksFor(options_.max_model_len, options_.block_size);

  // The metadata sections, worst case.
  auto m = std::make_unique<Metadata>();
  const size_t t = options_.max_num_tokens, s = options_.max_num_seqs;
  size_t at = 0;
  auto section = [&at](size_t words) {
    const size_t begin = at;
    at += (words + 63) / 64 * 64;  // 256-byte aligned sections
    return begin;
  };
  m->token_ids = section(t);
  m->positions = section(t);
  m->slots = section(t);
  m->freq_rows = section(t);
  m->query_start = section(s + 1);
  m->seq_lens = section(s);
  m->logits_indices = section(s);
  m->temperature = section(s);
  m->top_k = section(s);
  m->top_p = section(s);
  m->min_p = section(s);
  m->seed = section(2 * s);
  m->sample_position = section(s);
  m->inv_freq = section(s * rotary_half_);
  m->block_tables = section(s * max_blocks_per_seq_);  // last: a step copies only its rows
  m->words = at;
  LATTICE_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&m->host), m->words * 4));
  std::memset(m->host, 0, m->words * 4);
  m->device = cuda::AllocateDevice(m->words * 4);
  metadata_ = std::move(m);
  adjustments_ = std::make_unique<LogitAdjustmentStage>(stream_);
  if (shard_.ep.size > 1) {
    LATTICE_CHECK_MSG(placement.ep != nullptr && placement.ep->size() == shard_.ep.size &&
                          placement.ep->rank() == shard_.ep.rank,
                      "expert parallelism needs the EP group of its shard");
    LATTICE_CHECK(config_.num_experts % shard_.ep.size == 0);
    LATTICE_CHECK(placement.dp == nullptr || placement.ep->size() == placement.dp->size() * placement.tp->size());
    const size_t words = static_cast<size_t>(shard_.ep.size) * shard_.ep.size + 2;
    LATTICE_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&host_counts_), words * 4));
  } else {
    LATTICE_CHECK_MSG(placement.dp == nullptr || placement.dp->size() == 1,
                      "data-parallel attention shares experts: it needs ep > 1");
  }
  if (placement.pp != nullptr && placement.pp->size() > 1) {
    const size_t max_io_bytes = 2 * t * static_cast<size_t>(config_.hidden_size) * DTypeSize(options_.dtype);
    links_ = std::make_unique<StageLinks>(*placement.pp, stream_, max_io_bytes);
  }
}

CudaModel::~CudaModel() {
  graphs_.clear();
  if (stream_) cudaStreamSynchronize(stream_);
  adjustments_.reset();
  links_.reset();
  if (host_counts_) cudaFreeHost(host_counts_);
}

absl::StatusOr<std::unique_ptr<CudaModel>> CudaModel::FromShard(const DecoderModel& shard,
                                                                const CudaModelOptions& options,
                                                                const CudaPlacement& placement) {
  std::unique_ptr<CudaModel> model(new CudaModel(shard.config(), shard.shard(), options, placement));
  const DType dtype = options.dtype;
  if (model->is_first_stage() || (model->is_last_stage() && shard.config().tie_word_embeddings)) {
    model->embed_tokens_ = ToDeviceAs(shard.embed_tokens().weight(), dtype);
  }
  for (const DecoderModel::Layer& cpu : shard.layers()) {
    Layer l;
    l.input_layernorm = ToDeviceAs(cpu.input_layernorm, dtype);
    l.post_attention_layernorm = ToDeviceAs(cpu.post_attention_layernorm, dtype);
    const Attention& a = cpu.attention;
    l.qkv_w = ToDeviceAs(a.qkv_proj().weight(), dtype);
    l.qkv_b = ToDeviceAs(a.qkv_proj().bias(), dtype);
    l.o_w = ToDeviceAs(a.o_proj().weight(), dtype);
    l.o_b = ToDeviceAs(a.o_proj().bias(), dtype);
    l.q_norm = ToDeviceAs(a.q_norm(), dtype);
    l.k_norm = ToDeviceAs(a.k_norm(), dtype);
    l.sliding_window = a.sliding_window();
    l.scale = a.scale();
    if (cpu.mlp) {
      l.gate_up_w = ToDeviceAs(cpu.mlp->gate_up_proj().weight(), dtype);
      l.gate_up_b = ToDeviceAs(cpu.mlp->gate_up_proj().bias(), dtype);
      l.down_w = ToDeviceAs(cpu.mlp->down_proj().weight(), dtype);
      l.down_b = ToDeviceAs(cpu.mlp->down_proj().bias(), dtype);
    } else {
      const SparseMoe& moe = *cpu.moe;
      l.moe = true;
      l.top_k = moe.top_k();
      l.renormalize = moe.renormalize();
      l.first_local_expert = moe.first_local_expert();
      l.router_w = ToDeviceAs(moe.router().weight(), dtype);
      l.w13 = ToDeviceAs(moe.w13(), dtype);
      l.w2 = ToDeviceAs(moe.w2(), dtype);
      if (moe.shared_expert()) {
        l.shared_gate_up_w = ToDeviceAs(moe.shared_expert()->gate_up_proj().weight(), dtype);
        l.shared_down_w = ToDeviceAs(moe.shared_expert()->down_proj().weight(), dtype);
        l.shared_gate_w = ToDeviceAs(moe.shared_expert_gate().weight(), dtype);
      }
    }
    model->layers_.push_back(std::move(l));
  }
  if (model->is_last_stage()) {
    model->norm_ = ToDeviceAs(shard.norm(), dtype);
    model->lm_head_ = shard.config().tie_word_embeddings ? model->embed_tokens_ : ToDeviceAs(shard.lm_head().weight(), dtype);
  }
  for (const Layer& l : model->layers_) {
    for (const Tensor* t : {&l.input_layernorm, &l.post_attention_layernorm, &l.qkv_w, &l.qkv_b, &l.o_w, &l.o_b,
                            &l.q_norm, &l.k_norm, &l.gate_up_w, &l.gate_up_b, &l.down_w, &l.down_b, &l.router_w,
                            &l.w13, &l.w2, &l.shared_gate_up_w, &l.shared_down_w, &l.shared_gate_w}) {
      if (t->defined()) model->weight_bytes_ += t->nbytes();
    }
  }
  for (const Tensor* t : {&model->embed_tokens_, &model->norm_}) {
    if (t->defined()) model->weight_bytes_ += t->nbytes();
  }
  if (model->lm_head_.defined() && !shard.config().tie_word_embeddings) model->weight_bytes_ += model->lm_head_.nbytes();
  return model;
}

absl::StatusOr<std::unique_ptr<CudaModel>> CudaModel::Dummy(const ModelConfig& config, const ModelShard& shard,
                                                            const CudaModelOptions& options,
                                                            const CudaPlacement& placement, uint64_t seed) {
  std::unique_ptr<CudaModel> model(new CudaModel(config, shard, options, placement));
  CudaModel& m = *model;
  const ModelConfig& c = m.config_;
  const DType dtype = options.dtype;
  const int64_t h = c.hidden_size, d = c.head_dim;
  const Shard tp = m.shard_.tp, ep = m.shard_.ep;
  uint64_t next_seed = seed * 1000003 + 1;
  // Weights uniform in +-1/sqrt(fan_in) keep activations O(1); norms are ones.
  auto make = [&](Shape shape, bool defined = true) {
    if (!defined) return Tensor();
    Tensor t = cuda::EmptyDevice(dtype, shape);
    const float bound = shape.size() >= 2 ? 1.0f / std::sqrt(static_cast<float>(shape.back())) : 0.02f;
    cuda::FillUniform(t, next_seed++, -bound, bound, m.stream_);
    m.weight_bytes_ += t.nbytes();
    return t;
  };
  auto ones = [&](Shape shape, bool defined = true) {
    if (!defined) return Tensor();
    Tensor t = cuda::EmptyDevice(dtype, shape);
    cuda::FillUniform(t, 0, 1.0f, 1.0f, m.stream_);
    m.weight_bytes_ += t.nbytes();
    return t;
  };
  if (m.is_first_stage() || (m.is_last_stage() && c.tie_word_embeddings)) m.embed_tokens_ = make({m.vocab_rows_, h});
  for (int i = m.shard_.first_layer; i < m.shard_.end_layer; ++i) {
    Layer l;
    l.input_layernorm = ones({h});
    l.post_attention_layernorm = ones({h});
    l.qkv_w = make({(m.num_heads_ + 2 * m.num_kv_heads_) * d, h});
    l.qkv_b = make({(m.num_heads_ + 2 * m.num_kv_heads_) * d}, c.qkv_bias);
    l.o_w = make({h, m.num_heads_ * d});
    l.o_b = make({h}, c.o_bias);
    l.q_norm = ones({d}, c.qk_norm);
    l.k_norm = ones({d}, c.qk_norm);
    l.sliding_window = c.sliding_window.empty() ? 0 : c.sliding_window[i];
    l.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(d)));
    if (c.num_experts > 0 && c.layer_is_moe[i]) {
      l.moe = true;
      l.top_k = static_cast<int>(c.num_experts_per_tok);
      l.renormalize = c.norm_topk_prob;
      const RowRange experts = ep.size > 1 ? EvenSplit(c.num_experts, ep) : RowRange{0, c.num_experts};
      const int64_t width = ep.size > 1 ? c.moe_intermediate_size : c.moe_intermediate_size / tp.size;
      l.first_local_expert = experts.begin;
      l.router_w = make({c.num_experts, h});
      l.w13 = make({experts.size(), 2 * width, h});
      l.w2 = make({experts.size(), h, width});
      if (c.shared_expert_intermediate_size > 0) {
        const int64_t shared = c.shared_expert_intermediate_size / tp.size;
        l.shared_gate_up_w = make({2 * shared, h});
        l.shared_down_w = make({h, shared});
        l.shared_gate_w = make({1, h});
      }
    } else {
      const int64_t width = c.intermediate_size / tp.size;
      l.gate_up_w = make({2 * width, h});
      l.gate_up_b = make({2 * width}, c.mlp_bias);
      l.down_w = make({h, width});
      l.down_b = make({h}, c.mlp_bias);
    }
    m.layers_.push_back(std::move(l));
  }
  if (m.is_last_stage()) {
    m.norm_ = ones({h});
    m.lm_head_ = c.tie_word_embeddings ? m.embed_tokens_ : make({m.vocab_rows_, h});
  }
  LATTICE_CUDA_CHECK(cudaStreamSynchronize(m.stream_));
  return model;
}

size_t CudaModel::ActivationBytesEstimate() const {
  const ModelConfig& c = config_;
  const size_t e = DTypeSize(options_.dtype);
  const size_t t = options_.max_num_tokens, s = options_.max_num_seqs;
  const int64_t d = c.head_dim;
  const int64_t width = std::max<int64_t>(c.intermediate_size / shard_.tp.size,
                                          c.shared_expert_intermediate_size / shard_.tp.size);
  // hidden + residual, qkv, attention output, gate-up and its activation, MoE output.
  const size_t per_token = e * (2 * c.hidden_size + (num_heads_ + 2 * num_kv_heads_) * d + num_heads_ * d +
                                3 * width + c.hidden_size + c.num_experts);
  size_t bytes = t * per_token;
  if (c.num_experts > 0) {
    const int64_t moe_width = shard_.ep.size > 1 ? c.moe_intermediate_size : c.moe_intermediate_size / shard_.tp.size;
    const int64_t local_experts = shard_.ep.size > 1 ? c.num_experts / shard_.ep.size : c.num_experts;
    bytes += cuda::FusedMoeWorkspaceBytes(t, c.num_experts_per_tok, local_experts, c.hidden_size, moe_width,
                                          options_.dtype) +
             t * c.num_experts_per_tok * 8;
    if (shard_.ep.size > 1) {
      // All-to-all: the send rows and their plan, and the received rows, at most every
      // DP group's tokens times the slots one rank can own (FusedMoe takes them in chunks
      // of T * k rows, which the line above covers).
      const size_t k = c.num_experts_per_tok;
      const size_t dp = placement_.dp != nullptr ? placement_.dp->size() : 1;
      const size_t recv = dp * t * std::min<size_t>(k, local_experts);
      bytes += (2 * t * k + 2 * recv) * c.hidden_size * e + (3 * t * k + 2 * recv) * 4 +
               cuda::FusedMoeWorkspaceBytes(t * k, 1, local_experts, c.hidden_size, moe_width, options_.dtype) +
               16 * 256;
      if (dp > 1) {  // decode graphs: every DP rank's tokens gathered
        const size_t g = dp * s;
        bytes += 2 * g * c.hidden_size * e + g * c.num_experts * e + g * k * 8 +
                 cuda::FusedMoeWorkspaceBytes(g, k, local_experts, c.hidden_size, moe_width, options_.dtype);
      }
    }
  }
  // Logits: this rank's shard, the gathered shards, f32, and the sampler's scratch.
  bytes += s * vocab_rows_ * 4 * (1 + shard_.tp.size) + s * c.vocab_size * 4 +
           cuda::SampleWorkspaceBytes(s, c.vocab_size) + s * 64 * 8;
  // Split-KV decode partials: (max, sum, head_dim accumulators) per split and head.
  bytes += s * num_heads_ * 256 * (d + 2) * 4;
  return bytes + (64u << 20);
}

void CudaModel::InitializeCache() {
  workspace_ = std::make_unique<cuda::Workspace>(ActivationBytesEstimate());
  // A KV pool of two blocks for the profiling steps.
  auto allocate_kv = [this](int32_t blocks) {
    const int64_t layers = static_cast<int64_t>(layers_.size());
    const size_t per_tensor =
        static_cast<size_t>(blocks) * options_.block_size * num_kv_heads_ * config_.head_dim * DTypeSize(options_.dtype);
    k_cache_.clear();
    v_cache_.clear();
    kv_buffer_.reset();
    kv_buffer_ = cuda::AllocateDevice(std::max<size_t>(1, 2 * layers * per_tensor));
    LATTICE_CUDA_CHECK(cudaMemsetAsync(kv_buffer_->data(), 0, 2 * layers * per_tensor, stream_));
    for (int64_t l = 0; l < layers; ++l) {
      const Shape shape = {blocks, options_.block_size, num_kv_heads_, config_.head_dim};
      k_cache_.push_back(Tensor::FromBuffer(kv_buffer_, 2 * l * per_tensor, options_.dtype, shape));
      v_cache_.push_back(Tensor::FromBuffer(kv_buffer_, (2 * l + 1) * per_tensor, options_.dtype, shape));
    }
    num_kv_blocks_ = blocks;
  };
  allocate_kv(2);

  // Worst cases: a full token budget in chunks as long as the model allows, and the
  // most sequences at once. No KV is written (slots -1); reads hit block 0.
  auto profile = [this](int32_t num_seqs, int32_t tokens_per_seq) {
    ForwardBatch batch;
    batch.max_blocks_per_seq = 1;
    batch.query_start_loc.push_back(0);
    std::vector<SamplingRow> rows;
    for (int32_t s = 0; s < num_seqs; ++s) {
      for (int32_t i = 0; i < tokens_per_seq; ++i) {
        batch.token_ids.push_back(0);
        batch.positions.push_back(i);
        batch.slot_mapping.push_back(-1);
      }
      batch.query_start_loc.push_back(batch.num_tokens());
      batch.seq_lens.push_back(tokens_per_seq);
      batch.block_tables.push_back(0);
      batch.logits_indices.push_back(batch.num_tokens() - 1);
      SamplingRow row;
      row.params.temperature = 1.0f;
      row.num_logprobs = 20;
      rows.push_back(row);
    }
    Execute(batch, rows);
  };
  const int32_t chunk = std::min(options_.max_num_tokens, options_.max_model_len);
  profile(options_.max_num_tokens / chunk, chunk);
  profile(std::min(options_.max_num_seqs, options_.max_num_tokens), 1);
  LATTICE_CUDA_CHECK(cudaStreamSynchronize(stream_));

  int32_t blocks = options_.num_kv_blocks;
  if (blocks <= 0) {
    size_t free_bytes = 0, total_bytes = 0;
    LATTICE_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    free_bytes += kv_buffer_->bytes();  // the profiling pool is given back below
    const double budget =
        static_cast<double>(free_bytes) - static_cast<double>(total_bytes) * (1.0 - options_.gpu_memory_utilization);
    const size_t per_block = 2 * layers_.size() * static_cast<size_t>(options_.block_size) * num_kv_heads_ *
                             config_.head_dim * DTypeSize(options_.dtype);
    // Block ids are int32 everywhere (the coordinator's pool too).
    blocks = budget > 0 ? static_cast<int32_t>(std::min(budget / static_cast<double>(per_block), double{1 << 30})) : 0;
    LATTICE_CHECK_MSG(blocks >= 2, "no GPU memory left for the KV cache (raise --gpu-memory-utilization)");
  }
  allocate_kv(blocks);
  if (options_.cuda_graphs && !RopeDependsOnLength(rope_)) CaptureGraphs();
}

void CudaModel::Upload(const ForwardBatch& batch, const std::vector<SamplingRow>& rows, int32_t padded_seqs) {
  Metadata& m = *metadata_;
  const int32_t tokens = batch.num_tokens(), seqs = batch.num_seqs();
  LATTICE_CHECK_MSG(tokens <= options_.max_num_tokens && padded_seqs <= options_.max_num_seqs,
                    "step of %d tokens, %d sequences is past the limits (%d, %d)", tokens, padded_seqs,
                    options_.max_num_tokens, options_.max_num_seqs);
  LATTICE_CHECK(batch.max_blocks_per_seq <= max_blocks_per_seq_);
  const int32_t padded_tokens = tokens + (padded_seqs - seqs);
  std::copy(batch.token_ids.begin(), batch.token_ids.end(), m.Host<int32_t>(m.token_ids));
  std::copy(batch.positions.begin(), batch.positions.end(), m.Host<int32_t>(m.positions));
  std::copy(batch.slot_mapping.begin(), batch.slot_mapping.end(), m.Host<int32_t>(m.slots));
  std::copy(batch.query_start_loc.begin(), batch.query_start_loc.end(), m.Host<int32_t>(m.query_start));
  std::copy(batch.seq_lens.begin(), batch.seq_lens.end(), m.Host<int32_t>(m.seq_lens));
  int32_t* tables = m.Host<int32_t>(m.block_tables);
  for (int32_t s = 0; s < seqs; ++s) {
    for (int32_t b = 0; b < max_blocks_per_seq_; ++b) {
      tables[s * max_blocks_per_seq_ + b] =
          b < batch.max_blocks_per_seq ? std::max(0, batch.block_tables[s * batch.max_blocks_per_seq + b]) : 0;
    }
  }
  // Padding (decode graphs): one token per extra sequence, written nowhere, reading block 0.
  for (int32_t i = tokens; i < padded_tokens; ++i) {
    m.Host<int32_t>(m.token_ids)[i] = 0;
    m.Host<int32_t>(m.positions)[i] = 0;
    m.Host<int32_t>(m.slots)[i] = -1;
  }
  for (int32_t s = seqs; s < padded_seqs; ++s) {
    m.Host<int32_t>(m.query_start)[s + 1] = tokens + (s - seqs) + 1;
    m.Host<int32_t>(m.seq_lens)[s] = 1;
    std::fill_n(tables + s * max_blocks_per_seq_, max_blocks_per_seq_, 0);
  }
  const int32_t num_rows = static_cast<int32_t>(batch.logits_indices.size());
  std::copy(batch.logits_indices.begin(), batch.logits_indices.end(), m.Host<int32_t>(m.logits_indices));
  for (int32_t r = num_rows; r < num_rows + (padded_seqs - seqs); ++r) m.Host<int32_t>(m.logits_indices)[r] = tokens + r - num_rows;
  for (size_t r = 0; r < rows.size(); ++r) {
    const cpu::SamplingParams& p = rows[r].params;
    m.Host<float>(m.temperature)[r] = p.temperature;
    m.Host<int32_t>(m.top_k)[r] = p.top_k;
    m.Host<float>(m.top_p)[r] = p.top_p;
    m.Host<float>(m.min_p)[r] = p.min_p;
    m.Host<uint32_t>(m.seed)[2 * r] = static_cast<uint32_t>(p.seed);
    m.Host<uint32_t>(m.seed)[2 * r + 1] = static_cast<uint32_t>(p.seed >> 32);
    m.Host<int32_t>(m.sample_position)[r] = static_cast<int32_t>(rows[r].position);
  }
  if (samples()) adjustments_->Stage(rows);  // copies nothing unless a row has adjustments
  if (RopeDependsOnLength(rope_)) {
    float* table = m.Host<float>(m.inv_freq);
    for (int32_t s = 0; s < seqs; ++s) {
      const RopeFrequencies f = ComputeRopeFrequencies(rope_, batch.seq_lens[s]);
      std::copy(f.inv_freq.begin(), f.inv_freq.end(), table + s * rotary_half_);
      for (int32_t i = batch.query_start_loc[s]; i < batch.query_start_loc[s + 1]; ++i) {
        m.Host<int32_t>(m.freq_rows)[i] = s;
      }
    }
  }
  const size_t words = m.block_tables + static_cast<size_t>(padded_seqs) * max_blocks_per_seq_;
  LATTICE_CUDA_CHECK(cudaMemcpyAsync(m.device->data(), m.host, words * 4, cudaMemcpyHostToDevice, stream_));
}

Tensor CudaModel::Forward(int32_t num_tokens, int32_t num_seqs, int32_t num_rows, int32_t max_query_len,
                          int32_t max_seq_len, bool graph) {
  const ModelConfig& c = config_;
  const Metadata& m = *metadata_;
  cuda::Workspace& ws = *workspace_;
  Communicator& tp = *placement_.tp;
  const bool tp_rank0 = tp.rank() == 0;
  const int64_t t = num_tokens, h = c.hidden_size, d = c.head_dim;
  const float eps = static_cast<float>(c.rms_norm_eps);
  const DType dtype = options_.dtype;

  const Tensor token_ids = m.View(m.token_ids, DType::kI32, {t});
  const Tensor positions = m.View(m.positions, DType::kI32, {t});
  const Tensor slots = m.View(m.slots, DType::kI32, {t});
  const bool per_seq_rope = RopeDependsOnLength(rope_);
  const Tensor inv_freq = per_seq_rope ? m.View(m.inv_freq, DType::kF32, {num_seqs, rotary_half_}) : inv_freq_;
  const Tensor freq_rows = per_seq_rope ? m.View(m.freq_rows, DType::kI32, {t}) : Tensor();
  cuda::PagedAttentionMetadata attention;
  attention.query_start_loc = m.View(m.query_start, DType::kI32, {num_seqs + 1});
  attention.seq_lens = m.View(m.seq_lens, DType::kI32, {num_seqs});
  attention.block_tables = m.View(m.block_tables, DType::kI32, {num_seqs, max_blocks_per_seq_});
  attention.num_seqs = num_seqs;
  attention.max_query_len = max_query_len;
  attention.max_seq_len = max_seq_len;
  attention.block_size = options_.block_size;

  // hidden and residual share one buffer: what crosses a stage boundary is one transfer.
  Tensor both = ws.Empty(dtype, {2 * t, h});
  Tensor hidden = both.Slice(0, t), residual = both.Slice(t, 2 * t);
  if (is_first_stage()) {
    if (t > 0) {
      cuda::VocabShardEmbedding(token_ids, embed_tokens_, vocab_first_row_, hidden, stream_);
      if (tp.size() > 1) tp.AllReduce(hidden);
      // residual = 0, so the first fused add-norm leaves residual = hidden exactly.
      LATTICE_CUDA_CHECK(cudaMemsetAsync(residual.raw_data(), 0, residual.nbytes(), stream_));
    }
  } else if (t > 0 && !graph) {
    links_->Receive(both);  // a graph's caller receives into stage_io_ before the replay
  } else if (t > 0 && !Capturing(stream_)) {
    // Warming up a graph: no input arrives; zeros keep the MoE routing in range.
    LATTICE_CUDA_CHECK(cudaMemsetAsync(both.raw_data(), 0, both.nbytes(), stream_));
  }
  stage_io_ = both;

  // Under EP an empty eager step still takes its part in every MoE layer's all-to-alls
  // (a DP rank without work, or a stage that received nothing).
  const bool exchange_when_empty = shard_.ep.size > 1 && !graph;
  for (size_t i = 0; i < layers_.size() && (t > 0 || exchange_when_empty); ++i) {
    const Layer& l = layers_[i];
    const size_t mark = ws.Mark();
    if (t == 0) {
      if (l.moe) {
        const Tensor none = ws.Empty(dtype, {0, h});
        Tensor out = ws.Empty(dtype, {0, h});
        RoutedExperts(l, none, out, graph);
      }
      ws.Rewind(mark);
      continue;
    }
    cuda::FusedAddRmsNorm(hidden, residual, l.input_layernorm, eps, stream_);
    Tensor qkv = ws.Empty(dtype, {t, (num_heads_ + 2 * num_kv_heads_) * d});
    gemm_.Linear(hidden, l.qkv_w, l.qkv_b, qkv, stream_);
    cuda::QkNormRotaryKvWrite(qkv, num_heads_, num_kv_heads_, l.q_norm, l.k_norm, eps, positions, inv_freq,
                              freq_rows, rope_scale_, slots, k_cache_[i], v_cache_[i], stream_);
    Tensor attn = ws.Empty(dtype, {t, num_heads_, d});
    cuda::PagedAttention(qkv, k_cache_[i], v_cache_[i], attention, l.scale, l.sliding_window, attn, ws, stream_);
    // Row-parallel biases are added once: by TP rank 0, before the sum.
    gemm_.Linear(attn.View({t, num_heads_ * d}), l.o_w, tp_rank0 ? l.o_b : Tensor(), hidden, stream_);
    if (tp.size() > 1) tp.AllReduce(hidden);
    cuda::FusedAddRmsNorm(hidden, residual, l.post_attention_layernorm, eps, stream_);
    if (!l.moe) {
      Tensor gate_up = ws.Empty(dtype, {t, l.gate_up_w.dim(0)});
      gemm_.Linear(hidden, l.gate_up_w, l.gate_up_b, gate_up, stream_);
      Tensor act = ws.Empty(dtype, {t, l.gate_up_w.dim(0) / 2});  // unused where the GEMM fuses SiLU-and-mul
      gemm_.LinearSiluAndMul(gate_up, l.down_w, tp_rank0 ? l.down_b : Tensor(), act, hidden, stream_);
    } else {
      Tensor out = ws.Empty(dtype, {t, h});
      RoutedExperts(l, hidden, out, graph);
      if (l.shared_gate_up_w.defined()) {
        Tensor gate_up = ws.Empty(dtype, {t, l.shared_gate_up_w.dim(0)});
        gemm_.Linear(hidden, l.shared_gate_up_w, Tensor(), gate_up, stream_);
        Tensor act = ws.Empty(dtype, {t, l.shared_gate_up_w.dim(0) / 2});
        Tensor shared = ws.Empty(dtype, {t, h});
        gemm_.LinearSiluAndMul(gate_up, l.shared_down_w, Tensor(), act, shared, stream_);
        Tensor gate = ws.Empty(dtype, {t, 1});
        gemm_.Linear(hidden, l.shared_gate_w, Tensor(), gate, stream_);
        // The gate is the same on every rank, so gating each rank's partial sum is exact.
        cuda::AddSigmoidGated(gate, shared, out, stream_);
      }
      LATTICE_CUDA_CHECK(cudaMemcpyAsync(hidden.raw_data(), out.raw_data(), out.nbytes(), cudaMemcpyDeviceToDevice, stream_));
    }
    if (tp.size() > 1) tp.AllReduce(hidden);
    ws.Rewind(mark);
  }

  if (!is_last_stage()) {
    if (t > 0 && !graph) links_->Send(both);  // a graph's caller sends after the replay
    return Tensor();
  }
  // The final norm and the head, only on the rows that sample.
  const int64_t r = num_rows;
  if (r == 0) return Tensor();  // nothing samples (an empty DP rank's step)
  const Tensor indices = m.View(m.logits_indices, DType::kI32, {r});
  Tensor selected = ws.Empty(dtype, {r, h}), selected_residual = ws.Empty(dtype, {r, h});
  cuda::Embedding(indices, hidden, selected, stream_);
  cuda::Embedding(indices, residual, selected_residual, stream_);
  cuda::FusedAddRmsNorm(selected, selected_residual, norm_, eps, stream_);
  // Logits straight out of the GEMM in f32: no rounding to 16 bits before sampling.
  Tensor head = ws.Empty(DType::kF32, {r, vocab_rows_});
  gemm_.Linear(selected, lm_head_, Tensor(), head, stream_);
  Tensor gathered = head;
  if (tp.size() > 1) {
    gathered = ws.Empty(DType::kF32, {tp.size() * r, vocab_rows_});
    tp.AllGather(head, gathered);
  }
  if (tp.size() == 1 && vocab_rows_ == c.vocab_size) return head;  // already [r, vocab] in order
  Tensor logits = ws.Empty(DType::kF32, {r, c.vocab_size});
  cuda::AssembleLogits(gathered, tp.size(), c.vocab_size, logits, stream_);
  return logits;
}

// The routed experts of one MoE layer, in one of three ways:
//   - experts TP-sliced or EP with one DP group in a graph: every rank runs its experts
//     (ids of others' skipped) on every token of its DP group; the TP all-reduce sums;
//   - EP, eager: the all-to-all dispatch and combine of RoutedAllToAll;
//   - EP under DP attention, in a decode graph: the DP groups' tokens are all-gathered,
//     each rank runs its experts on all of them and a reduce-scatter over DP returns each
//     group its rows (the TP all-reduce completes the sum over the EP group).
// Why graphs do not take the all-to-all: NCCL's all-to-all(v) needs the pair counts on
// the host, and a captured graph cannot take host decisions. vLLM and SGLang users
// expect decode under EP and DP attention to replay graphs, with every DP rank padded
// to one batch size (vLLM's default EP exchange for this is the same all-gather /
// reduce-scatter); a fixed-capacity padded all-to-all would send ep * capacity rows
// for mostly empty slots, which at decode sizes costs more than the gather. Prefill and
// mixed steps, where the gather would move every token to every rank, take the
// all-to-all with one small count copy and sync per layer.
void CudaModel::RoutedExperts(const Layer& l, const Tensor& hidden, Tensor& out, bool graph) {
  const ModelConfig& c = config_;
  cuda::Workspace& ws = *workspace_;
  const DType dtype = options_.dtype;
  const int64_t h = c.hidden_size;
  Communicator* gather = graph && dp_attention() ? placement_.dp : nullptr;
  Tensor x = hidden;
  if (gather != nullptr) {
    x = ws.Empty(dtype, {gather->size() * hidden.dim(0), h});
    gather->AllGather(hidden, x);
  }
  const int64_t n = x.dim(0);
  Tensor router_logits = ws.Empty(dtype, {n, c.num_experts});
  Tensor ids = ws.Empty(DType::kI32, {n, l.top_k});
  Tensor weights = ws.Empty(DType::kF32, {n, l.top_k});
  if (n > 0) {
    gemm_.Linear(x, l.router_w, Tensor(), router_logits, stream_);
    cuda::MoeTopKRouting(router_logits, l.top_k, l.renormalize, ids, weights, stream_);
  }
  if (shard_.ep.size > 1 && !graph) return RoutedAllToAll(l, x, ids, weights, out);
  if (l.first_local_expert != 0) cuda::OffsetIds(ids, -static_cast<int32_t>(l.first_local_expert), stream_);
  if (gather == nullptr) {
    cuda::FusedMoe(x, l.w13, l.w2, ids, weights, out, ws, stream_, &gemm_);
    return;
  }
  Tensor partial = ws.Empty(dtype, {n, h});
  cuda::FusedMoe(x, l.w13, l.w2, ids, weights, partial, ws, stream_, &gemm_);
  gather->ReduceScatter(partial, out);
}

// As SparseMoe::RoutedExpertParallel (worker/layers/moe.cc): this rank dispatches its
// TP share of the tokens' pairs to the experts' owners, runs the pairs it receives
// through its experts and returns them; each token's rows are combined at its source in
// expert order. Tokens of the other TP ranks' shares come out 0 (the TP all-reduce
// fills them in).
void CudaModel::RoutedAllToAll(const Layer& l, const Tensor& x, const Tensor& ids, const Tensor& weights,
                               Tensor& out) {
  Communicator& ep = *placement_.ep;
  const Communicator& tp = *placement_.tp;
  cuda::Workspace& ws = *workspace_;
  const DType dtype = options_.dtype;
  const int64_t t = x.dim(0), h = x.dim(1), k = l.top_k;
  const int n = ep.size(), me = ep.rank();
  cuda::MoeDispatch plan;
  plan.send_counts = ws.Empty(DType::kI32, {1, n});
  plan.pair_row = ws.Empty(DType::kI32, {t, k});
  plan.send_token = ws.Empty(DType::kI32, {t * k});
  plan.send_expert = ws.Empty(DType::kI32, {t * k, 1});
  cuda::MoeDispatchPlan(ids, tp.rank(), tp.size(), config_.num_experts / n, n, plan, stream_);

  // Every rank's counts to every rank, then to the host: NCCL takes host counts.
  Tensor all_counts = ws.Empty(DType::kI32, {n, n});
  ep.AllGather(plan.send_counts, all_counts);
  LATTICE_CUDA_CHECK(cudaMemcpyAsync(host_counts_, all_counts.raw_data(), all_counts.nbytes(), cudaMemcpyDeviceToHost,
                                  stream_));
  LATTICE_CUDA_CHECK(cudaStreamSynchronize(stream_));
  std::vector<int64_t> send_counts(n), recv_counts(n);
  int64_t num_send = 0, num_recv = 0;
  for (int r = 0; r < n; ++r) {
    send_counts[r] = host_counts_[me * n + r];
    recv_counts[r] = host_counts_[r * n + me];
    num_send += send_counts[r];
    num_recv += recv_counts[r];
  }

  Tensor send_x = ws.Empty(dtype, {num_send, h});
  cuda::GatherRows(x, plan.send_token, send_x, stream_);
  Tensor recv_x = ws.Empty(dtype, {num_recv, h});
  Tensor recv_expert = ws.Empty(DType::kI32, {num_recv, 1});
  ep.AllToAllV(send_x, send_counts, recv_x, recv_counts);
  ep.AllToAllV(plan.send_expert.Slice(0, num_send), send_counts, recv_expert, recv_counts);

  // Each received row through its expert, unweighted, in chunks of at most T * k rows
  // (what one FusedMoe call's scratch is sized for).
  Tensor expert_out = ws.Empty(dtype, {num_recv, h});
  Tensor ones = ws.Empty(DType::kF32, {num_recv, 1});
  cuda::FillUniform(ones, 0, 1.0f, 1.0f, stream_);
  const int64_t chunk = std::max<int64_t>(1, static_cast<int64_t>(options_.max_num_tokens) * k);
  for (int64_t begin = 0; begin < num_recv; begin += chunk) {
    const int64_t end = std::min(num_recv, begin + chunk);
    const size_t mark = ws.Mark();
    Tensor y = expert_out.Slice(begin, end);
    cuda::FusedMoe(recv_x.Slice(begin, end), l.w13, l.w2, recv_expert.Slice(begin, end), ones.Slice(begin, end), y,
                   ws, stream_, &gemm_);
    ws.Rewind(mark);
  }

  Tensor back = ws.Empty(dtype, {num_send, h});
  ep.AllToAllV(expert_out, recv_counts, back, send_counts);
  cuda::MoeCombineDispatched(back, plan.pair_row, ids, weights, out, stream_);
}

int32_t CudaModel::AgreeOnGraph(int32_t bucket) {
  cuda::Workspace& ws = *workspace_;
  const size_t mark = ws.Mark();
  int32_t* host = host_counts_ + shard_.ep.size * shard_.ep.size;
  host[0] = bucket < 0 ? 1 : 0;  // this rank runs eagerly
  host[1] = std::max(bucket, 0);
  Tensor words = ws.Empty(DType::kI32, {2});
  LATTICE_CUDA_CHECK(cudaMemcpyAsync(words.raw_data(), host, 8, cudaMemcpyHostToDevice, stream_));
  placement_.ep->AllReduce(words, ReduceOp::kMax);
  LATTICE_CUDA_CHECK(cudaMemcpyAsync(host, words.raw_data(), 8, cudaMemcpyDeviceToHost, stream_));
  LATTICE_CUDA_CHECK(cudaStreamSynchronize(stream_));
  ws.Rewind(mark);
  return host[0] != 0 ? 0 : host[1];
}

std::vector<DeviceSample> CudaModel::SampleRows(const Tensor& logits, const std::vector<SamplingRow>& rows) {
  std::vector<DeviceSample> out;
  if (!samples() || rows.empty()) return out;
  const Metadata& m = *metadata_;
  cuda::Workspace& ws = *workspace_;
  const int32_t r = static_cast<int32_t>(rows.size());
  const Tensor row_logits = logits.Slice(0, r);
  cuda::SamplingMetadata sampling;
  sampling.temperature = m.View(m.temperature, DType::kF32, {r});
  sampling.top_k = m.View(m.top_k, DType::kI32, {r});
  sampling.top_p = m.View(m.top_p, DType::kF32, {r});
  sampling.min_p = m.View(m.min_p, DType::kF32, {r});
  sampling.seed = m.View(m.seed, DType::kI32, {r, 2});
  sampling.position = m.View(m.sample_position, DType::kI32, {r});
  sampling.all_greedy = std::all_of(rows.begin(), rows.end(), [](const SamplingRow& row) {
    return row.params.temperature == 0.0f;
  });
  int32_t k = 0;
  for (const SamplingRow& row : rows) k = std::max(k, row.num_logprobs);
  Tensor ids, logprobs;
  if (k > 0) {  // of the raw logits (vLLM's default): before the adjustments change them
    ids = ws.Empty(DType::kI32, {r, k});
    logprobs = ws.Empty(DType::kF32, {r, k});
    cuda::TopKLogprobs(row_logits, k, ids, logprobs, ws, stream_);
  }
  adjustments_->Apply(row_logits);  // penalties, min_tokens, logit_bias (eager, after any replay)
  Tensor tokens = ws.Empty(DType::kI32, {r});
  cuda::Sample(row_logits, sampling, tokens, ws, stream_);
  // Results land in the pinned staging area past the metadata (the step is over with it).
  std::vector<int32_t> host_tokens(r), host_ids(static_cast<size_t>(r) * k);
  std::vector<float> host_logprobs(static_cast<size_t>(r) * k);
  LATTICE_CUDA_CHECK(cudaMemcpyAsync(host_tokens.data(), tokens.raw_data(), tokens.nbytes(), cudaMemcpyDeviceToHost, stream_));
  if (k > 0) {
    LATTICE_CUDA_CHECK(cudaMemcpyAsync(host_ids.data(), ids.raw_data(), ids.nbytes(), cudaMemcpyDeviceToHost, stream_));
    LATTICE_CUDA_CHECK(
        cudaMemcpyAsync(host_logprobs.data(), logprobs.raw_data(), logprobs.nbytes(), cudaMemcpyDeviceToHost, stream_));
  }
  LATTICE_CUDA_CHECK(cudaStreamSynchronize(stream_));
  for (int32_t i = 0; i < r; ++i) {
    DeviceSample s;
    s.token = host_tokens[i];
    for (int32_t j = 0; j < rows[i].num_logprobs; ++j) {
      s.logprobs.emplace_back(host_ids[i * k + j], host_logprobs[i * k + j]);
    }
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<DeviceSample> CudaModel::Execute(const ForwardBatch& batch, const std::vector<SamplingRow>& rows) {
  LATTICE_CHECK(workspace_ != nullptr);
  LATTICE_CHECK(!is_last_stage() || rows.size() == batch.logits_indices.size());
  const int32_t tokens = batch.num_tokens(), seqs = batch.num_seqs();
  int32_t max_query_len = 0, max_seq_len = 0;
  for (int32_t s = 0; s < seqs; ++s) {
    max_query_len = std::max(max_query_len, batch.query_start_loc[s + 1] - batch.query_start_loc[s]);
    max_seq_len = std::max(max_seq_len, batch.seq_lens[s]);
  }
  workspace_->Reset();
  // A decode step (one new token per sequence, every one sampled) replays a graph.
  const bool decode = seqs > 0 && tokens == seqs && max_query_len == 1 &&
                      static_cast<int32_t>(batch.logits_indices.size()) == seqs;
  auto graph = decode ? graphs_.lower_bound(seqs) : graphs_.end();
  if (dp_attention()) {
    // DP ranks replay one bucket together (an empty rank pads to it), or all step
    // eagerly: their MoE layers exchange tokens and must match.
    const bool eager = seqs > 0 && graph == graphs_.end();
    const int32_t bucket = AgreeOnGraph(eager ? -1 : graph != graphs_.end() ? graph->first : 0);
    graph = bucket > 0 ? graphs_.find(bucket) : graphs_.end();
    LATTICE_CHECK(bucket == 0 || graph != graphs_.end());
  }
  if (graph != graphs_.end()) {
    Graph& g = *graph->second;
    Upload(batch, rows, graph->first);
    if (!is_first_stage()) links_->Receive(g.stage_io);
    LATTICE_CUDA_CHECK(cudaGraphLaunch(g.exec, stream_));
    ++num_graph_replays_;
    workspace_->Rewind(g.workspace_end);
    if (!is_last_stage()) {
      links_->Send(g.stage_io);
      LATTICE_CUDA_CHECK(cudaStreamSynchronize(stream_));
      return {};
    }
    return SampleRows(g.logits, rows);
  }
  Upload(batch, rows, seqs);
  const Tensor logits =
      Forward(tokens, seqs, static_cast<int32_t>(batch.logits_indices.size()), max_query_len, max_seq_len);
  if (!is_last_stage()) {
    LATTICE_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return {};
  }
  std::vector<DeviceSample> sampled = SampleRows(logits, rows);
  if (!samples()) LATTICE_CUDA_CHECK(cudaStreamSynchronize(stream_));
  return sampled;
}

bool CudaModel::MoeDecodeRunsPerExpert(int32_t batch) const {
  const ModelConfig& c = config_;
  if (c.num_experts == 0 || std::find(c.layer_is_moe.begin(), c.layer_is_moe.end(), true) == c.layer_is_moe.end()) {
    return false;
  }
  // The shapes of the layers' w13 (see AllocateWeights).
  const int64_t experts = shard_.ep.size > 1 ? EvenSplit(c.num_experts, shard_.ep).size() : c.num_experts;
  const int64_t width = shard_.ep.size > 1 ? c.moe_intermediate_size : c.moe_intermediate_size / shard_.tp.size;
  return cuda::FusedMoeRunsPerExpert(batch, c.num_experts_per_tok, experts, c.hidden_size, width);
}

void CudaModel::CaptureGraphs() {
  // Largest first: the workspace high-water mark is set by the largest bucket.
  std::vector<int32_t> buckets = GraphBuckets(std::min(options_.max_num_seqs, options_.max_num_tokens));
  std::reverse(buckets.begin(), buckets.end());
  for (int32_t b : buckets) {
    // MoE decode batches large enough for the per-expert cuBLASLt route (which learns the
    // rows per expert on the host) run eagerly: it beats the graph-safe grouped kernels.
    if (MoeDecodeRunsPerExpert(b)) continue;
    ForwardBatch batch;  // empty: Upload pads it to b sequences of one token
    batch.query_start_loc.push_back(0);
    Upload(batch, {}, b);
    workspace_->Reset();
    auto graph = std::make_unique<Graph>();
    // Warm up once outside the capture (cuBLASLt plans, lazy module loading).
    Forward(b, b, b, 1, options_.max_model_len, /*graph=*/true);
    workspace_->Reset();
    cudaGraph_t captured = nullptr;
    LATTICE_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    graph->logits = Forward(b, b, b, 1, options_.max_model_len, /*graph=*/true);
    LATTICE_CUDA_CHECK(cudaStreamEndCapture(stream_, &captured));
    graph->workspace_end = workspace_->Mark();
    graph->stage_io = stage_io_;
    LATTICE_CUDA_CHECK(cudaGraphInstantiate(&graph->exec, captured, 0));
    LATTICE_CUDA_CHECK(cudaGraphDestroy(captured));
    graphs_[b] = std::move(graph);
  }
  LATTICE_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

}  // namespace lattice

namespace lattice {
namespace {

// A rank's model with the communicators and the stream it runs on.
class OwnedCudaModel : public DeviceModel {
 public:
  OwnedCudaModel(std::unique_ptr<Communicator> solo, cudaStream_t stream)
      : solo_(std::move(solo)), stream_(stream) {}
  ~OwnedCudaModel() override {
    model_.reset();
    groups_ = ProcessGroups();
    if (stream_) cudaStreamDestroy(stream_);
  }
  std::vector<DeviceSample> Execute(const ForwardBatch& batch, const std::vector<SamplingRow>& rows) override {
    return model_->Execute(batch, rows);
  }
  const ModelConfig& config() const override { return model_->config(); }
  bool is_first_stage() const override { return model_->is_first_stage(); }
  bool is_last_stage() const override { return model_->is_last_stage(); }
  bool samples() const override { return model_->samples(); }
  int32_t num_kv_blocks() const override { return model_->num_kv_blocks(); }

  std::unique_ptr<Communicator> solo_;
  ProcessGroups groups_;  // NCCL, multi-GPU layouts
  cudaStream_t stream_;
  std::unique_ptr<CudaModel> model_;
};

CudaModelOptions ToCudaOptions(const ModelConfig& config, const DeviceModelOptions& options, DType dtype) {
  CudaModelOptions o;
  o.dtype = dtype;
  o.max_num_tokens = options.max_num_tokens;
  o.max_num_seqs = options.max_num_seqs;
  o.max_model_len = options.max_model_len > 0 ? options.max_model_len : static_cast<int32_t>(DefaultMaxModelLen(config));
  o.block_size = options.block_size;
  o.gpu_memory_utilization = options.gpu_memory_utilization;
  o.num_kv_blocks = options.num_kv_blocks;
  o.cuda_graphs = options.cuda_graphs;
  return o;
}

// Loads (or makes up) the shard into owned->model_ and sizes its cache.
absl::Status Build(OwnedCudaModel& owned, const ModelConfig& config, const DeviceModelOptions& options,
                   const ModelShard& shard, const CudaModelOptions& o, const CudaPlacement& placement) {
  absl::StatusOr<std::unique_ptr<CudaModel>> model;
  if (options.dummy_weights) {
    model = CudaModel::Dummy(config, shard, o, placement);
  } else {
    absl::StatusOr<std::unique_ptr<DecoderModel>> cpu = DecoderModel::Load(options.model_dir, config, shard);
    if (!cpu.ok()) return cpu.status();
    model = CudaModel::FromShard(**cpu, o, placement);
  }
  if (!model.ok()) return model.status();
  owned.model_ = *std::move(model);
  owned.model_->InitializeCache();
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<DType> ActivationDType(const std::string& name, DType checkpoint) {
  if (name == "auto") return checkpoint;
  if (name == "bfloat16" || name == "bf16") return DType::kBF16;
  if (name == "float16" || name == "half" || name == "f16") return DType::kF16;
  if (name == "float32" || name == "f32") return DType::kF32;
  return absl::InvalidArgumentError(
      absl::StrCat("--dtype ", name, ": expected auto, bfloat16, float16 or float32"));
}

absl::StatusOr<std::unique_ptr<DeviceModel>> MakeCudaModel(const ModelConfig& config,
                                                           const DeviceModelOptions& options) {
  if (cuda::DeviceCount() == 0) return absl::UnavailableError("--device cuda: no CUDA device is visible");
  absl::StatusOr<DType> dtype = ActivationDType(options.dtype, config.dtype);
  if (!dtype.ok()) return dtype.status();
  LATTICE_CUDA_CHECK(cudaSetDevice(std::max(options.gpu, 0) % cuda::DeviceCount()));
  cudaStream_t stream = nullptr;
  LATTICE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  auto owned = std::make_unique<OwnedCudaModel>(MakeSoloCommunicator(), stream);
  const CudaPlacement placement{owned->solo_.get(), nullptr, stream};
  if (absl::Status s = Build(*owned, config, options, ModelShard{}, ToCudaOptions(config, options, *dtype), placement);
      !s.ok()) {
    return s;
  }
  return owned;
}

absl::StatusOr<std::unique_ptr<DeviceModel>> MakeCudaModelForRank(const ModelConfig& config,
                                                                  const DeviceModelOptions& options,
                                                                  const RankLayout& layout, int rank,
                                                                  const ModelShard& shard,
                                                                  gloo::rendezvous::Store& store) {
  const int gpus = cuda::DeviceCount();
  if (gpus == 0) return absl::UnavailableError("--device cuda: no CUDA device is visible");
  absl::StatusOr<DType> dtype = ActivationDType(options.dtype, config.dtype);
  if (!dtype.ok()) return dtype.status();
  // Ranks of one host take its GPUs in order (a TP group is consecutive ranks).
  LATTICE_CUDA_CHECK(cudaSetDevice((options.gpu >= 0 ? options.gpu : rank) % gpus));
  cudaStream_t stream = nullptr;
  LATTICE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  auto owned = std::make_unique<OwnedCudaModel>(MakeSoloCommunicator(), stream);
  absl::StatusOr<ProcessGroups> groups = MakeNcclProcessGroups(layout, rank, store, stream);
  if (!groups.ok()) return groups.status();
  owned->groups_ = *std::move(groups);
  CudaPlacement placement;
  placement.tp = owned->groups_.tp.get();
  placement.pp = layout.config().pp > 1 ? owned->groups_.pp.get() : nullptr;
  if (layout.config().ep > 1) {
    // The EP group spans the stage's DP groups: with dp > 1 this is DP attention.
    placement.ep = owned->groups_.ep.get();
    if (layout.config().dp > 1) placement.dp = owned->groups_.dp.get();
  }
  placement.stream = stream;
  if (absl::Status s = Build(*owned, config, options, shard, ToCudaOptions(config, options, *dtype), placement);
      !s.ok()) {
    return s;
  }
  return owned;
}

}  // namespace lattice
