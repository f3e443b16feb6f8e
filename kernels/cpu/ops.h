// The CPU reference ops. Every op reads and writes f32 host tensors, computes in
// f32 (sums in f32 unless noted) and is the numerical reference the CUDA backend
// is checked against. Shapes are in the comments: T tokens, H hidden, D head_dim.
#pragma once

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "kernels/tensor.h"

namespace lattice::cpu {

// out[t, :] = table[ids[t], :]. table [V, H], out [T, H]. ids must be in [0, V).
void Embedding(std::span<const int32_t> ids, const Tensor& table, Tensor& out);

// out[t, :] = x[t, :] / sqrt(mean(x[t, :]^2) + eps) * weight. x, out [T, H]; weight [H].
// out may alias x.
void RmsNorm(const Tensor& x, const Tensor& weight, float eps, Tensor& out);

// The residual form used between layers: residual += x; x = RmsNorm(residual).
void FusedAddRmsNorm(Tensor& x, Tensor& residual, const Tensor& weight, float eps);

// out = x @ weight^T (+ bias). x [T, in], weight [out, in], bias [out] or undefined,
// out [T, out].
void Linear(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& out);

// out[t, i] = silu(x[t, i]) * x[t, I + i]. x [T, 2I] (gate then up), out [T, I].
void SiluAndMul(const Tensor& x, Tensor& out);

// Rotary embedding in the rotate-half (GPT-NeoX / Hugging Face) layout on the first
// `rotary_dim` features of each head: for j < rotary_dim / 2,
//   angle = positions[t] * inv_freq[j]; c = cos(angle) * scale; s = sin(angle) * scale
//   x[j] <- x[j] * c - x[j + rotary_dim/2] * s;  x[j + rotary_dim/2] <- x[j + r/2] * c + x[j] * s
// x [T, heads, D]; inv_freq has rotary_dim / 2 entries. As in Hugging Face, the angle is
// the f32 product float(position) * inv_freq[j]; cos and sin are then taken in double and
// rounded. `scale` is the rope attention factor (yarn; 1 otherwise).
void ApplyRotary(std::span<const int32_t> positions, std::span<const float> inv_freq,
                 float scale, Tensor& x);

// Where a sequence's KV lives: block_table[s] lists the cache blocks of sequence s in order.
struct AttentionMetadata {
  std::span<const int32_t> query_start_loc;  // [S + 1]: tokens of seq s are q[start[s], start[s+1])
  std::span<const int32_t> seq_lens;         // [S]: context length after this step (cached + new)
  std::span<const int32_t> block_tables;     // [S, max_blocks_per_seq], row-major
  int32_t max_blocks_per_seq = 0;
  int32_t block_size = 16;
};

// Writes k, v [T, Hkv, D] into the caches [num_blocks, block_size, Hkv, D] at
// slot_mapping[t] = block * block_size + offset. A slot of -1 is skipped (padding).
void WriteKvCache(const Tensor& k, const Tensor& v, std::span<const int32_t> slot_mapping,
                  Tensor& k_cache, Tensor& v_cache);

// Causal attention of new query tokens over everything cached for their sequence
// (the new tokens' K/V must already be written). Query i of sequence s sits at position
// seq_lens[s] - q_len[s] + i and sees keys at positions p with p <= its own and, when
// sliding_window > 0, p > position - sliding_window. Heads are grouped: query head h
// reads KV head h / (Hq / Hkv). q, out [T, Hq, D]; softmax in f32 with max subtraction.
void PagedAttention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                    const AttentionMetadata& metadata, float scale, int32_t sliding_window,
                    Tensor& out);

// MoE routing: probabilities = softmax(router_logits[t]) in f32, then the top_k
// experts by probability (ties to the lower id), weights renormalised to sum 1 when
// `renormalize`. router_logits [T, E]; topk_ids, topk_weights [T, top_k], best first.
void MoeTopKRouting(const Tensor& router_logits, int top_k, bool renormalize,
                    std::vector<int32_t>& topk_ids, std::vector<float>& topk_weights);

// Experts as gated MLPs: out[t] = sum_k topk_weights[t,k] * down_e(silu(gate_e x) * up_e x)
// with e = topk_ids[t, k]. w13 [E, 2I, H] (gate rows then up rows), w2 [E, H, I].
// x, out [T, H]. Tokens are grouped by expert so each expert's weights are read once.
void FusedMoe(const Tensor& x, const Tensor& w13, const Tensor& w2,
              std::span<const int32_t> topk_ids, std::span<const float> topk_weights, int top_k,
              Tensor& out);

// out[t, :] += sigmoid(gate_logit[t]) * y[t, :]: the gated shared expert of Qwen-MoE.
// gate_logit [T, 1], y, out [T, H].
void AddSigmoidGated(const Tensor& gate_logit, const Tensor& y, Tensor& out);

// out += x elementwise (same shapes).
void Add(const Tensor& x, Tensor& out);

// log_softmax of one row, computed in double and returned as f32.
void LogSoftmax(std::span<const float> logits, std::span<float> out);

// The k largest entries of `values` as (index, value), best first, ties to the lower index.
std::vector<std::pair<int32_t, float>> TopK(std::span<const float> values, int k);

struct SamplingParams {
  float temperature = 0.0f;  // 0 means greedy
  int32_t top_k = 0;         // 0 or -1: off
  float top_p = 1.0f;        // 1: off
  float min_p = 0.0f;        // 0: off
  uint64_t seed = 0;
};

// A uniform double in [0, 1) that depends only on (seed, position): a request's
// samples do not depend on the rest of its batch.
double SampleUniform(uint64_t seed, int64_t position);

// The sampling controls that depend on the sequence's own tokens, as vLLM V1 applies
// them. A row's adjustments list each token they touch once: whether it is in the
// prompt, how often the output so far holds it, its logit_bias, and whether min_tokens
// masks it now (the request's stop ids while fewer than min_tokens tokens are out).
struct LogitAdjustment {
  int32_t token = 0;
  int32_t output_count = 0;
  bool in_prompt = false;
  bool masked = false;
  float bias = 0.0f;
};

struct PenaltyParams {
  float repetition_penalty = 1.0f;  // > 0; 1: off
  float presence_penalty = 0.0f;    // [-2, 2]; 0: off
  float frequency_penalty = 0.0f;   // [-2, 2]; 0: off
};

// Applies `entries` to one logits row in place, in vLLM V1's order (min_tokens and
// logit_bias, then the repetition, frequency and presence penalties; temperature and
// the filters come later, in Sample). For each entry, on logits[token] alone:
//   l = masked ? -inf : l + bias
//   in_prompt or output_count > 0:  l = l > 0 ? l / repetition_penalty : l * repetition_penalty
//   output_count > 0:               l = (l - frequency_penalty * float(output_count)) - presence_penalty
// Every step is one rounded f32 operation (never fused), so the CUDA kernel
// (cuda::ApplyLogitAdjustments) gives the same bits. Tokens not listed are untouched.
void ApplyLogitAdjustments(std::span<float> logits, const PenaltyParams& penalties,
                           std::span<const LogitAdjustment> entries);

// Samples one token from `logits` (one row, [V]). Greedy (argmax, ties to the lower
// id) when temperature is 0; otherwise temperature, then min-p (drop tokens whose
// probability is below min_p times the largest), then top-k, then top-p (the smallest
// set, in descending probability, whose mass reaches top_p), then inverse-CDF sampling
// with SampleUniform(seed, position) over the kept tokens in descending order.
int32_t Sample(std::span<const float> logits, const SamplingParams& params, int64_t position);

}  // namespace lattice::cpu
