// Each parallel layer against its unsharded self, on the thread backend: the layers
// cut their own shards out of real checkpoint tensors (the fixture models) and must
// reproduce the one-rank output on every rank.
#include <functional>
#include <random>
#include <thread>

#include <gtest/gtest.h>

#include "parallel/communicator.h"
#include "worker/layers/attention.h"
#include "worker/layers/linear.h"
#include "worker/layers/mlp.h"
#include "worker/layers/moe.h"
#include "worker/layers/vocab_parallel.h"
#include "worker/model_config.h"

namespace lattice {
namespace {

std::string FixtureDir(const std::string& name) {
  return std::string(LATTICE_SOURCE_DIR) + "/tests/fixtures/models/" + name;
}

struct Fixture {
  ModelConfig config;
  std::unique_ptr<Checkpoint> checkpoint;
};

Fixture Open(const std::string& name) {
  Fixture f;
  absl::StatusOr<ModelConfig> config = LoadModelConfig(FixtureDir(name));
  EXPECT_TRUE(config.ok()) << config.status();
  f.config = *config;
  absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint = Checkpoint::Open(FixtureDir(name));
  EXPECT_TRUE(checkpoint.ok()) << checkpoint.status();
  f.checkpoint = std::move(*checkpoint);
  return f;
}

Tensor Random(Shape shape, int seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  Tensor t = Tensor::Empty(DType::kF32, std::move(shape));
  for (float& v : t.span<float>()) v = dist(rng);
  return t;
}

// Runs fn(rank, comm) on `size` threads and returns each rank's output.
std::vector<Tensor> OnRanks(int size, const std::function<Tensor(int, Communicator&)>& fn) {
  std::vector<std::unique_ptr<Communicator>> comms = MakeThreadCommunicators(size);
  std::vector<Tensor> outs(size);
  std::vector<std::thread> threads;
  for (int r = 0; r < size; ++r) threads.emplace_back([&, r] { outs[r] = fn(r, *comms[r]); });
  for (std::thread& t : threads) t.join();
  return outs;
}

void ExpectClose(const Tensor& want, const Tensor& got, double tolerance, const std::string& what) {
  ASSERT_EQ(want.shape(), got.shape()) << what;
  double worst = 0;
  for (int64_t i = 0; i < want.numel(); ++i) {
    worst = std::max(worst, std::abs(static_cast<double>(want.data<float>()[i]) - got.data<float>()[i]) /
                                (1.0 + std::abs(want.data<float>()[i])));
  }
  EXPECT_LE(worst, tolerance) << what;
}

TEST(ParallelLayers, RowAndColumnParallelLinearMatchTheWholeWeight) {
  Fixture f = Open("llama_mqa_tied_bf16");  // attention_bias: o_proj has a bias
  const int64_t hidden = f.config.hidden_size, q = f.config.num_attention_heads * f.config.head_dim;
  const Tensor x = Random({7, q}, 1);
  absl::StatusOr<Linear> whole = Linear::Load(*f.checkpoint, "model.layers.1.self_attn.o_proj", hidden, q, true);
  ASSERT_TRUE(whole.ok()) << whole.status();
  const Tensor want = whole->Forward(x);
  for (int tp : {2, 4}) {
    const std::vector<Tensor> outs = OnRanks(tp, [&](int rank, Communicator& comm) {
      const RowRange cols = EvenSplit(q, {rank, tp});
      absl::StatusOr<RowParallelLinear> row = RowParallelLinear::Load(
          *f.checkpoint, "model.layers.1.self_attn.o_proj", hidden, q, cols, true);
      EXPECT_TRUE(row.ok());
      Tensor local = Tensor::Empty(DType::kF32, {7, cols.size()});
      for (int64_t t = 0; t < 7; ++t) {
        std::copy_n(x.data<float>() + t * q + cols.begin, cols.size(), local.data<float>() + t * cols.size());
      }
      return row->Forward(local, comm);
    });
    for (int r = 0; r < tp; ++r) ExpectClose(want, outs[r], 1e-5, "row parallel tp" + std::to_string(tp));

    // Column parallel: each rank's rows of the output.
    const std::vector<Tensor> cols = OnRanks(tp, [&](int rank, Communicator&) {
      const RowSlice slice[] = {{"model.layers.1.self_attn.o_proj", hidden, EvenSplit(hidden, {rank, tp})}};
      absl::StatusOr<ColumnParallelLinear> column = ColumnParallelLinear::Load(*f.checkpoint, slice, q, true);
      EXPECT_TRUE(column.ok());
      return column->Forward(x);
    });
    for (int r = 0; r < tp; ++r) {
      const RowRange rows = EvenSplit(hidden, {r, tp});
      for (int64_t t = 0; t < 7; ++t) {
        for (int64_t c = 0; c < rows.size(); ++c) {
          EXPECT_EQ(cols[r].data<float>()[t * rows.size() + c], want.data<float>()[t * hidden + rows.begin + c]);
        }
      }
    }
  }
}

TEST(ParallelLayers, VocabParallelEmbeddingAndHeadPadAnUnevenVocabulary) {
  Fixture f = Open("llama_gqa_f32");
  const int64_t vocab = f.config.vocab_size, hidden = f.config.hidden_size;
  const std::vector<int32_t> ids = {0, 1, 170, 171, 341, 342, 511, 5};
  const Tensor x = Random({5, hidden}, 2);
  const std::unique_ptr<Communicator> solo = MakeSoloCommunicator();
  absl::StatusOr<Tensor> table = LoadVocabShard(*f.checkpoint, "model.embed_tokens.weight", vocab, hidden, {0, 1});
  ASSERT_TRUE(table.ok());
  const VocabParallelEmbedding whole_embedding(*table, vocab, {0, 1});
  const Tensor want_embedding = whole_embedding.Forward(ids, *solo);
  absl::StatusOr<Tensor> head = LoadVocabShard(*f.checkpoint, "lm_head.weight", vocab, hidden, {0, 1});
  ASSERT_TRUE(head.ok());
  const Tensor want_logits = ParallelLMHead(*head, vocab).Forward(x, *solo);
  for (int tp : {2, 3, 4}) {  // 512 rows over 3 ranks: 171 each, one padding row
    EXPECT_EQ(VocabShard(vocab, {tp - 1, tp}).end, (vocab + tp - 1) / tp * tp);
    const std::vector<Tensor> embeddings = OnRanks(tp, [&](int rank, Communicator& comm) {
      absl::StatusOr<Tensor> shard =
          LoadVocabShard(*f.checkpoint, "model.embed_tokens.weight", vocab, hidden, {rank, tp});
      EXPECT_TRUE(shard.ok());
      return VocabParallelEmbedding(*shard, vocab, {rank, tp}).Forward(ids, comm);
    });
    const std::vector<Tensor> logits = OnRanks(tp, [&](int rank, Communicator& comm) {
      absl::StatusOr<Tensor> shard = LoadVocabShard(*f.checkpoint, "lm_head.weight", vocab, hidden, {rank, tp});
      EXPECT_TRUE(shard.ok());
      return ParallelLMHead(*shard, vocab).Forward(x, comm);
    });
    for (int r = 0; r < tp; ++r) {
      ExpectClose(want_embedding, embeddings[r], 0, "embedding tp" + std::to_string(tp));
      ExpectClose(want_logits, logits[r], 0, "lm head tp" + std::to_string(tp));
    }
  }
}

// Attention over a small paged cache: two sequences, a chunk on top of cached tokens.
Tensor RunAttention(const Fixture& f, int layer, Shard tp, Communicator& comm, const Tensor& x) {
  absl::StatusOr<Attention> attention =
      Attention::Load(*f.checkpoint, "model.layers." + std::to_string(layer) + ".self_attn", f.config, layer, 0, tp);
  EXPECT_TRUE(attention.ok()) << attention.status();
  const LocalHeads heads = LocalHeadsFor(f.config.num_attention_heads, f.config.num_key_value_heads, tp);
  KvCache cache({1, heads.num_kv_heads, f.config.head_dim}, {.num_blocks = 8, .block_size = 4});
  // Sequence 0: 5 new tokens at positions 0-4. Sequence 1: 4 new tokens at 3-6 after
  // 3 cached ones (written by a first step of the same layer).
  const std::unique_ptr<Communicator> solo = MakeSoloCommunicator();
  Communicator& ep = *solo;
  const RopeScaling rope_scaling = [&] {
    RopeScaling r;
    r.rotary_dim = f.config.head_dim;
    r.theta = f.config.rope.theta;
    return r;
  }();
  const RopeFrequencies rope = ComputeRopeFrequencies(rope_scaling, 0);
  auto step = [&](ForwardBatch batch, const Tensor& input) {
    ForwardContext context{batch, {}, cache, comm, ep, std::vector<const RopeFrequencies*>(batch.num_seqs(), &rope)};
    context.attention = {batch.query_start_loc, batch.seq_lens, batch.block_tables, batch.max_blocks_per_seq, 4};
    return attention->Forward(input, context);
  };
  ForwardBatch first;
  first.token_ids = {0, 0, 0};
  first.positions = {0, 1, 2};
  first.slot_mapping = {12, 13, 14};
  first.query_start_loc = {0, 3};
  first.seq_lens = {3};
  first.block_tables = {3, 5};
  first.max_blocks_per_seq = 2;
  step(first, x.Slice(0, 3).Clone());
  ForwardBatch second;
  second.token_ids.assign(9, 0);
  second.positions = {0, 1, 2, 3, 4, 3, 4, 5, 6};
  second.slot_mapping = {0, 1, 2, 3, 4 * 4 + 0, 15, 20, 21, 22};
  second.query_start_loc = {0, 5, 9};
  second.seq_lens = {5, 7};
  second.block_tables = {0, 4, 3, 5};
  second.max_blocks_per_seq = 2;
  return step(second, x.Slice(3, 12).Clone());
}

TEST(ParallelLayers, AttentionShardsHeadsAndReplicatesKvHeads) {
  // GQA 4/2 (tp 4 replicates KV heads), MQA 4/1 with biases, q/k norm.
  for (const char* name : {"llama_gqa_f32", "llama_mqa_tied_bf16", "qwen3_yarn_bf16", "qwen2_tied_swa_f16"}) {
    Fixture f = Open(name);
    const Tensor x = Random({12, f.config.hidden_size}, 3);
    const Tensor want = OnRanks(1, [&](int, Communicator& comm) { return RunAttention(f, 1, {0, 1}, comm, x); })[0];
    for (int tp : {2, 4}) {
      const std::vector<Tensor> outs =
          OnRanks(tp, [&](int rank, Communicator& comm) { return RunAttention(f, 1, {rank, tp}, comm, x); });
      for (int r = 0; r < tp; ++r) ExpectClose(want, outs[r], 1e-5, std::string(name) + " tp" + std::to_string(tp));
    }
  }
}

TEST(ParallelLayers, GatedMlpSlicesTheIntermediateWidth) {
  Fixture f = Open("llama_mqa_tied_bf16");  // mlp_bias
  const Tensor x = Random({9, f.config.hidden_size}, 4);
  auto run = [&](int rank, int tp, Communicator& comm) {
    absl::StatusOr<GatedMlp> mlp = GatedMlp::Load(*f.checkpoint, "model.layers.2.mlp", f.config.hidden_size,
                                                  f.config.intermediate_size, true, {rank, tp});
    EXPECT_TRUE(mlp.ok()) << mlp.status();
    return mlp->Forward(x, comm);
  };
  const Tensor want = OnRanks(1, [&](int r, Communicator& c) { return run(r, 1, c); })[0];
  for (int tp : {2, 4}) {
    const std::vector<Tensor> outs = OnRanks(tp, [&](int r, Communicator& c) { return run(r, tp, c); });
    for (int r = 0; r < tp; ++r) ExpectClose(want, outs[r], 1e-5, "mlp tp" + std::to_string(tp));
  }
}

TEST(ParallelLayers, SparseMoeUnderTensorAndExpertParallel) {
  for (const char* name : {"mixtral_f32", "qwen2moe_shared_bf16"}) {
    Fixture f = Open(name);
    const std::string prefix = f.config.architecture == Architecture::kMixtral ? "model.layers.0.block_sparse_moe"
                                                                               : "model.layers.0.mlp";
    const Tensor x = Random({11, f.config.hidden_size}, 5);
    // Every rank holds the same tokens (tp) or its own (dp): compare per token.
    auto run = [&](Shard tp, Shard ep, Communicator& tp_comm, Communicator& ep_comm, const Tensor& input) {
      absl::StatusOr<SparseMoe> moe = SparseMoe::Load(*f.checkpoint, prefix, f.config, tp, ep);
      EXPECT_TRUE(moe.ok()) << moe.status();
      ForwardBatch batch;
      KvCache cache({1, 1, 1}, {.num_blocks = 1, .block_size = 1});
      ForwardContext context{batch, {}, cache, tp_comm, ep_comm, {}};
      return moe->Forward(input, context);
    };
    const std::unique_ptr<Communicator> solo = MakeSoloCommunicator();
    const Tensor want = run({0, 1}, {0, 1}, *solo, *solo, x);
    // Tensor parallel experts, and expert parallel within the TP group (ep == tp).
    for (int tp : {2, 4}) {
      const std::vector<Tensor> sliced = OnRanks(tp, [&](int r, Communicator& c) {
        return run({r, tp}, {0, 1}, c, *MakeSoloCommunicator(), x);
      });
      const std::vector<Tensor> experts = OnRanks(tp, [&](int r, Communicator& c) {
        return run({r, tp}, {r, tp}, c, c, x);
      });
      for (int r = 0; r < tp; ++r) {
        ExpectClose(want, sliced[r], 1e-5, std::string(name) + " experts sliced tp" + std::to_string(tp));
        ExpectClose(want, experts[r], 1e-5, std::string(name) + " expert parallel ep" + std::to_string(tp));
      }
    }
    // Data-parallel attention: 2 ranks with different tokens (one with none) share the experts.
    const std::vector<Tensor> dp = OnRanks(2, [&](int r, Communicator& c) {
      const Tensor input = r == 0 ? x : Tensor::Empty(DType::kF32, {0, f.config.hidden_size});
      return run({0, 1}, {r, 2}, *MakeSoloCommunicator(), c, input);
    });
    ExpectClose(want, dp[0], 1e-5, std::string(name) + " dp2 ep2");
    EXPECT_EQ(dp[1].dim(0), 0);
  }
}

}  // namespace
}  // namespace lattice
