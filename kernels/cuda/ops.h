// The CUDA ops, checked op by op against the CPU reference (kernels/cpu/ops.h) with
// the same contracts. Tensors live on the device; activations are bf16, f16 or f32
// (all of one op's float tensors share a dtype), math is in f32. Every launch is on
// `stream` and checked; nothing calls cudaMalloc: scratch comes from a Workspace.
// On Hopper most ops launch programmatically (common.cuh): each may start while the
// previous kernel on the stream still runs, and the norms and GEMMs read their weights
// before waiting for it, so the kernel just before them must not write those.
// Launch shapes depend only on host-side sizes (and the upper bounds in the metadata),
// never on device data, so decode steps can be captured in CUDA graphs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include <cuda_runtime.h>

#include "kernels/cpu/ops.h"
#include "kernels/cuda/workspace.h"
#include "kernels/tensor.h"

namespace lattice::cuda {

class Gemm;

// out[t, :] = x[t, :] / sqrt(mean(x[t, :]^2) + eps) * weight. out may alias x.
void RmsNorm(const Tensor& x, const Tensor& weight, float eps, Tensor& out, cudaStream_t stream = nullptr);

// residual += x (rounded to the dtype); x = RmsNorm(residual).
void FusedAddRmsNorm(Tensor& x, Tensor& residual, const Tensor& weight, float eps, cudaStream_t stream = nullptr);

// out[t, i] = silu(x[t, i]) * x[t, I + i]. x [T, 2I], out [T, I].
void SiluAndMul(const Tensor& x, Tensor& out, cudaStream_t stream = nullptr);

// out[t, :] = table[ids[t], :]. ids: device i32 [T]; ids must be in range (checked upstream).
void Embedding(const Tensor& ids, const Tensor& table, Tensor& out, cudaStream_t stream = nullptr);


// ---- model plumbing (model_ops.cu) ----

// out[t, :] = table[ids[t] - first_row, :] when first_row <= ids[t] < first_row +
// table.dim(0), else zeros: a TP rank's share of a vocabulary-parallel embedding (the
// shares are then summed over TP). ids: device i32 [T].
void VocabShardEmbedding(const Tensor& ids, const Tensor& table, int64_t first_row, Tensor& out,
                         cudaStream_t stream = nullptr);

// Logits of every TP rank's vocabulary shard, as all-gathered ([tp * R, Vs], rank
// major), to f32 [R, vocab] in vocabulary order, dropping the padding past `vocab`.
void AssembleLogits(const Tensor& shards, int tp, int64_t vocab, Tensor& out, cudaStream_t stream = nullptr);

// ids += offset, elementwise (i32): global expert ids to this rank's local ids.
void OffsetIds(Tensor& ids, int32_t offset, cudaStream_t stream = nullptr);

// Fills a float tensor with values uniform in [low, high) from a hash of (seed,
// index): the same tensor for the same seed on any GPU (--load-format dummy).
void FillUniform(Tensor& t, uint64_t seed, float low, float high, cudaStream_t stream = nullptr);

// ---- attention (attention.cu) ----

// Per-head RMSNorm of q and k (Qwen3; skipped when q_norm is undefined), rotary
// embedding of q and k, and K/V written to the paged caches, in one pass.
// qkv [T, (Hq + 2 Hkv) * D]: q heads, then k heads, then v heads, per token (the fused
// projection's output); q and k are rotated in place. Rotary is the rotate-half
// layout on the first rotary_dim = 2 * inv_freq.dim(1) features of each head, as
// cpu::ApplyRotary: angle = float(position) * inv_freq[j] (f32 product), cos and sin
// of it times `rope_scale`. inv_freq: device f32 [R, rotary_dim / 2]; token t uses
// row freq_rows[t] (device i32 [T]) or row 0 when freq_rows is undefined.
// positions, slot_mapping: device i32 [T]; a slot of -1 writes nothing.
// k_cache, v_cache [num_blocks, block_size, Hkv, D], qkv's dtype.
void QkNormRotaryKvWrite(Tensor& qkv, int64_t num_heads, int64_t num_kv_heads, const Tensor& q_norm,
                         const Tensor& k_norm, float eps, const Tensor& positions, const Tensor& inv_freq,
                         const Tensor& freq_rows, float rope_scale, const Tensor& slot_mapping, Tensor& k_cache,
                         Tensor& v_cache, cudaStream_t stream = nullptr);

// Where each sequence's tokens and KV live, on the device, with host-known bounds
// that fix the launch shape (for graph capture pass bounds, not the exact maxima).
struct PagedAttentionMetadata {
  Tensor query_start_loc;  // i32 [S + 1]
  Tensor seq_lens;         // i32 [S]: cached + new tokens after this step
  Tensor block_tables;     // i32 [S, max_blocks_per_seq]
  int32_t num_seqs = 0;
  int32_t max_query_len = 0;  // >= every q_len; 1 means a pure decode step
  int32_t max_seq_len = 0;    // >= every seq_len
  int32_t block_size = 16;
};

// Causal attention of each sequence's new query tokens over its cached K/V (the new
// tokens' K/V already written), the contract of cpu::PagedAttention: query i of
// sequence s sits at position seq_lens[s] - q_len[s] + i and sees keys at positions
// p <= its own and, when sliding_window > 0, p > position - sliding_window; query head
// h reads KV head h / (Hq / Hkv); softmax in f32. q: the first Hq * D columns of each
// row of `q` [T, row_stride] (so the fused qkv tensor can be passed as is).
// out [T, Hq, D]. Decode steps (max_query_len == 1) split long contexts over several
// blocks and merge the partial softmaxes (within a thread-block cluster for bounds up
// to 4096 keys in 16 bits, else with scratch from `workspace`); longer chunks use a
// flash-style tiled kernel.
void PagedAttention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                    const PagedAttentionMetadata& metadata, float scale, int32_t sliding_window, Tensor& out,
                    Workspace& workspace, cudaStream_t stream = nullptr);

// ---- sampling (sampling.cu) ----

// Per-row sampling parameters on the device, one entry per logits row.
struct SamplingMetadata {
  Tensor temperature;  // f32 [R]; 0 = greedy
  Tensor top_k;        // i32 [R]; 0 or -1 = off
  Tensor top_p;        // f32 [R]; 1 = off
  Tensor min_p;        // f32 [R]; 0 = off
  Tensor seed;         // i64 stored as 2 x i32 per row: i32 [R, 2] (low word, high word)
  Tensor position;     // i32 [R]: the position of the token being sampled
  bool all_greedy = false;  // host-known: every row is greedy (only `logits` is read): one argmax pass
};

// tokens[r] = the token cpu::Sample(logits[r], params[r], position[r]) picks, with the
// same uniform (cpu::SampleUniform) and the same filter order. logits: device f32
// [R, V]; tokens: device i32 [R]. A row cpu::Sample rejects (no finite weight, or
// parameters outside its checked ranges) gets some valid token, the argmax where none
// survives the filters. Takes no workspace: nothing is sorted (radix selects in shared
// memory, a thread-block cluster per row when there are few rows).
void Sample(const Tensor& logits, const SamplingMetadata& sampling, Tensor& tokens, Workspace& workspace,
            cudaStream_t stream = nullptr);

// The workspace bytes one Sample or TopKLogprobs call takes for these sizes: none (kept
// so that callers size the workspace the same way for every op).
size_t SampleWorkspaceBytes(int64_t rows, int64_t vocab);

// The k best log-probabilities of each row (log_softmax, best first, ties to the lower
// id): ids i32 [R, k], logprobs f32 [R, k]. k <= 64. As cpu::TopK(cpu::LogSoftmax(row)):
// ranked by the f32 log-probability, so distinct logits that round to one value tie by
// id; entries past V (k > V) are id -1, logprob -inf. Takes no workspace.
void TopKLogprobs(const Tensor& logits, int k, Tensor& ids, Tensor& logprobs, Workspace& workspace,
                  cudaStream_t stream = nullptr);

// ---- sequence-dependent logit adjustments (logit_adjust.cu) ----

// One cpu::LogitAdjustment of logits row `row` in the device layout: four i32 words
// (token, output_count, row << 2 | masked << 1 | in_prompt, the bias's f32 bits).
inline constexpr int kLogitAdjustmentWords = 4;
// Writes entries.size() * kLogitAdjustmentWords words to `out` (host memory).
void PackLogitAdjustments(std::span<const cpu::LogitAdjustment> entries, int32_t row, int32_t* out);

// cpu::ApplyLogitAdjustments on the rows of logits (device f32 [R, V]), bit for bit:
// entries i32 [N, kLogitAdjustmentWords] as packed above, each (row, token) at most once
// and token < V; penalties f32 [R, 3] (repetition, presence, frequency). One thread
// per entry, no order between them (each writes its own logit). Launched serially
// (not programmatically): it waits for the logits and Sample waits for it.
void ApplyLogitAdjustments(Tensor& logits, const Tensor& entries, const Tensor& penalties,
                           cudaStream_t stream = nullptr);

// ---- mixture of experts (moe.cu) ----

// Softmax over router_logits [T, E] (any float dtype, f32 math), the top_k experts by
// probability (ties to the lower id), renormalised when asked: topk_ids i32 [T, k],
// topk_weights f32 [T, k], best first. As cpu::MoeTopKRouting.
void MoeTopKRouting(const Tensor& router_logits, int top_k, bool renormalize, Tensor& topk_ids,
                    Tensor& topk_weights, cudaStream_t stream = nullptr);

// out[t] = sum_k topk_weights[t, k] * down_e(silu(gate_e x_t) * up_e x_t), e = topk_ids[t, k];
// as cpu::FusedMoe. x, out [T, H]; w13 [E, 2I, H] (gate rows then up rows); w2 [E, H, I];
// ids outside [0, E) are skipped (other ranks' experts under EP: pass ids minus the
// first local expert). Tokens are permuted by expert on the device and each expert's
// rows run as one group of a grouped GEMM; scratch from `workspace`. Given `gemm`, large
// calls outside graph capture run each expert's rows through cuBLASLt instead (it
// synchronises the stream once to learn the rows per expert; see moe.cu). `route`
// forces one of the two (kPerExpert still needs `gemm` and no capture); kAuto follows
// LATTICE_MOE_GEMM, else the call's size.
enum class MoeRoute { kAuto, kGrouped, kPerExpert };
void FusedMoe(const Tensor& x, const Tensor& w13, const Tensor& w2, const Tensor& topk_ids,
              const Tensor& topk_weights, Tensor& out, Workspace& workspace, cudaStream_t stream = nullptr,
              Gemm* gemm = nullptr, MoeRoute route = MoeRoute::kAuto);
// True when an eager FusedMoe call of `tokens` over `experts` local experts of
// [hidden, intermediate] (given a Gemm, route kAuto) takes the per-expert cuBLASLt
// route: a decode graph of that size would be slower than eager steps.
bool FusedMoeRunsPerExpert(int64_t tokens, int64_t top_k, int64_t experts, int64_t hidden, int64_t intermediate);

// The most workspace bytes one FusedMoe call takes for these sizes (tokens T, top_k,
// num_experts E, hidden H, intermediate I, the activation dtype): the sorted pairs,
// the tile map, the [padded rows, I] intermediate and the [T * k, H] per-pair outputs.
size_t FusedMoeWorkspaceBytes(int64_t tokens, int64_t top_k, int64_t num_experts, int64_t hidden,
                              int64_t intermediate, DType dtype);

// Expert parallelism's all-to-all dispatch (moe_dispatch.cu; the CPU's is
// worker/layers/moe.cc). A rank dispatches the (token, slot) pairs of the tokens
// t % tp_size == tp_rank to the owners of their experts (rank e / experts_per_rank of
// the EP group), grouped by destination and in (token, slot) order within each.
struct MoeDispatch {
  Tensor send_counts;  // i32 [ep]: pairs sent to each rank
  Tensor pair_row;     // i32 [T, k]: each pair's row of the send buffer, -1 if not dispatched here
  Tensor send_token;   // i32 [>= T * k]: the token of each send row
  Tensor send_expert;  // i32 [>= T * k]: the expert of each send row, local to its destination
};
// Fills `plan` (tensors allocated by the caller) from topk_ids i32 [T, k] (global ids).
void MoeDispatchPlan(const Tensor& topk_ids, int tp_rank, int tp_size, int64_t experts_per_rank, int ep,
                     MoeDispatch& plan, cudaStream_t stream = nullptr);
// out[r, :] = x[rows[r], :] for r < out.dim(0).
void GatherRows(const Tensor& x, const Tensor& rows, Tensor& out, cudaStream_t stream = nullptr);
// out[t] = sum over token t's dispatched slots, in ascending expert order, of
// topk_weights[t, s] * back[pair_row[t, s]] (f32 sums); 0 for tokens not dispatched here.
void MoeCombineDispatched(const Tensor& back, const Tensor& pair_row, const Tensor& topk_ids,
                          const Tensor& topk_weights, Tensor& out, cudaStream_t stream = nullptr);

// out[t, :] += sigmoid(gate_logit[t]) * y[t, :]. gate_logit [T, 1]; y, out [T, H].
void AddSigmoidGated(const Tensor& gate_logit, const Tensor& y, Tensor& out, cudaStream_t stream = nullptr);

// out += x elementwise.
void Add(const Tensor& x, Tensor& out, cudaStream_t stream = nullptr);

}  // namespace lattice::cuda
