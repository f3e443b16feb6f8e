// The simulated device: hardware parameters, the cost model against the decode
// steps it was fitted to, and the stepper's pipeline clocks.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "worker/model_config.h"
#include "worker/sim/cost_model.h"
#include "worker/sim/sim_stepper.h"

namespace lattice::sim {
namespace {

ModelConfig Model(const std::string& name) {
  absl::StatusOr<ModelConfig> config = LoadModelConfig(std::string(LATTICE_SOURCE_DIR) + "/bench/models/" + name);
  EXPECT_TRUE(config.ok()) << config.status();
  return *config;
}

RankLayout Layout(int tp, int pp, int dp = 1, int ep = 1) {
  const ParallelConfig p{.tp = tp, .pp = pp, .dp = dp, .ep = ep};
  return *RankLayout::Create(p.world_size(), p);
}

std::vector<std::vector<SeqWork>> Decode(int batch, int context) {
  return {std::vector<SeqWork>(batch, SeqWork{.num_new_tokens = 1, .context_len = context, .sample = true})};
}

TEST(SimHardware, NamesAndFiles) {
  ASSERT_TRUE(LoadHardware("h200").ok());
  absl::StatusOr<Hardware> h100 = LoadHardware("h100");
  ASSERT_TRUE(h100.ok());
  EXPECT_LT(h100->memory_bytes, LoadHardware("h200")->memory_bytes);
  EXPECT_EQ(LoadHardware("a100").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LoadHardware("/nonexistent/hw.json").status().code(), absl::StatusCode::kNotFound);

  const std::string path = testing::TempDir() + "/sim_hw.json";
  std::ofstream(path) << R"({"base": "h100", "name": "slow", "memory_efficiency": 0.5, "host_sync_s": 2e-4,
                             "network": {"bandwidth": 1e9, "latency_s": 1e-4, "hop_latency_s": 1e-5}})";
  absl::StatusOr<Hardware> custom = LoadHardware(path);
  ASSERT_TRUE(custom.ok()) << custom.status();
  EXPECT_EQ(custom->name, "slow");
  EXPECT_DOUBLE_EQ(custom->memory_efficiency, 0.5);
  EXPECT_DOUBLE_EQ(custom->network.bandwidth, 1e9);
  EXPECT_DOUBLE_EQ(custom->network.hop_latency_s, 1e-5);
  EXPECT_DOUBLE_EQ(custom->host_sync_s, 2e-4);
  EXPECT_DOUBLE_EQ(custom->moe_grouped_flops, h100->moe_grouped_flops);
  EXPECT_DOUBLE_EQ(custom->memory_bandwidth, h100->memory_bandwidth);  // from the base
  EXPECT_EQ(HardwareToJson(*custom)["name"], "slow");
  EXPECT_EQ(HardwareToJson(*custom)["network"]["hop_latency_s"], 1e-5);

  std::ofstream(path) << R"({"memory_efficency": 0.5})";
  absl::Status typo = LoadHardware(path).status();
  EXPECT_EQ(typo.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(typo.message().find("memory_efficency"), std::string::npos) << typo;
  std::ofstream(path) << R"({"matmul_efficiency": 2})";
  EXPECT_EQ(LoadHardware(path).status().code(), absl::StatusCode::kInvalidArgument);
}

// The H200 parameters were fitted to these measurements (Llama-3.1-8B, bf16, 1k
// contexts, CUDA graphs, bench/results/2026-11-22-h200-decode-b1.md): the model must
// give them back within 12% (a roofline sum comes out low in the middle, where
// neither the weights nor the KV stream at full bandwidth yet).
TEST(SimCostModel, ReproducesTheMeasuredH200DecodeSteps) {
  const CostModel model(Model("llama-3.1-8b"), Layout(1, 1), {}, *LoadHardware("h200"), 2);
  const std::pair<int, double> measured_ms[] = {{1, 4.36}, {8, 5.07}, {64, 7.47}, {256, 15.62}};
  for (const auto& [batch, ms] : measured_ms) {
    const double predicted = model.Stage(0, Decode(batch, 1024)).total() * 1e3;
    EXPECT_NEAR(predicted, ms, 0.12 * ms) << "batch " << batch;
    std::printf("decode batch %d: measured %.2f ms, predicted %.2f ms (%+.1f%%)\n", batch, ms, predicted,
                100 * (predicted / ms - 1));
  }
}

TEST(SimCostModel, ShapesBehaveAsTheHardwareDoes) {
  const Hardware h200 = *LoadHardware("h200");
  const ModelConfig llama8b = Model("llama-3.1-8b");
  const CostModel one(llama8b, Layout(1, 1), {}, h200, 2);
  const CostModel tp2(llama8b, Layout(2, 1), {}, h200, 2);
  // TP halves the bytes per GPU but adds all-reduces.
  const StageCost a = one.Stage(0, Decode(1, 1024));
  const StageCost b = tp2.Stage(0, Decode(1, 1024));
  EXPECT_LT(b.total(), a.total());
  EXPECT_GT(b.total(), a.total() / 2);
  EXPECT_EQ(a.tp_comm_s, 0);
  EXPECT_GT(b.tp_comm_s, 0);
  // A long prefill is compute-bound: the time grows with the tokens.
  const std::vector<std::vector<SeqWork>> prefill4k = {{{.num_new_tokens = 4096, .context_len = 4096, .sample = true}}};
  const std::vector<std::vector<SeqWork>> prefill8k = {{{.num_new_tokens = 8192, .context_len = 8192, .sample = true}}};
  EXPECT_GT(one.Stage(0, prefill8k).total(), 1.9 * one.Stage(0, prefill4k).total());
  // Weights and KV capacity: 8B fits one H100 with room for KV; 70B does not.
  EXPECT_NEAR(static_cast<double>(one.WeightBytesPerGpu(0)), 16.06e9, 0.1e9);
  EXPECT_EQ(one.KvBytesPerTokenPerGpu(0), 32 * 2 * 8 * 128 * 2);
  EXPECT_GT(one.KvBlocksPerGpu(0, 16, 0.9), 50000);  // about 110 GB of an H200
  const CostModel big(Model("llama-3.1-70b"), Layout(1, 1), {}, *LoadHardware("h100"), 2);
  EXPECT_LT(big.KvBlocksPerGpu(0, 16, 0.9), 2);
  // Pipeline stages split the layers; only the last pays the LM head and step overhead.
  const CostModel pp2(llama8b, Layout(1, 2), {}, h200, 2);
  const StageCost s0 = pp2.Stage(0, Decode(8, 1024));
  const StageCost s1 = pp2.Stage(1, Decode(8, 1024));
  EXPECT_GT(s0.send_s, 0);
  EXPECT_EQ(s1.send_s, 0);
  EXPECT_GT(s1.total(), s0.total());
}

TEST(SimCostModel, ExpertsTouchedGrowWithTokensAndEpSplitsThem) {
  const Hardware h200 = *LoadHardware("h200");
  const ModelConfig mixtral = Model("mixtral-8x7b");
  const CostModel tp2(mixtral, Layout(2, 1), {}, h200, 2);
  const double b1 = tp2.Stage(0, Decode(1, 1024)).moe_s;
  const double b64 = tp2.Stage(0, Decode(64, 1024)).moe_s;
  EXPECT_GT(b64, 3 * b1);  // 2 of 8 experts at batch 1, nearly all at 64
  EXPECT_LT(b64, 4.5 * b1);
  // EP exchanges tokens by all-to-all (after a host sync for the counts) in eager steps;
  // a decode graph runs each rank's experts on every token instead.
  const CostModel ep2(mixtral, Layout(2, 1, 1, 2), {}, h200, 2);
  const std::vector<std::vector<SeqWork>> prefill = {{{.num_new_tokens = 512, .context_len = 512, .sample = true}}};
  EXPECT_GT(ep2.Stage(0, prefill).ep_comm_s, 32 * (h200.ep_exchange_s + h200.ep_exchange_per_peer_s));
  EXPECT_EQ(ep2.Stage(0, Decode(64, 1024)).ep_comm_s, 0);
  // Under DP attention a decode graph all-gathers the DP ranks' tokens instead.
  const CostModel dp2ep2(mixtral, Layout(1, 1, 2, 2), {}, h200, 2);
  EXPECT_GT(dp2ep2.Stage(0, {Decode(8, 1024)[0], Decode(8, 1024)[0]}).ep_comm_s, 0);
  // DP attention: the slowest DP rank sets each layer's pace.
  const CostModel dp2(mixtral, Layout(1, 1, 2, 2), {}, h200, 2);
  std::vector<std::vector<SeqWork>> uneven = {Decode(64, 4096)[0], Decode(1, 128)[0]};
  std::vector<std::vector<SeqWork>> even = {Decode(64, 4096)[0], Decode(64, 4096)[0]};
  EXPECT_GT(dp2.Stage(0, uneven).attention_s, 0.9 * dp2.Stage(0, even).attention_s);
}

// A TP all-reduce of a decode step's small message is latency-bound, and the latency
// grows with the ring's steps: fitted to the light-load TPOT of the 70B at tp4 and tp8
// and the 8B at tp2 (bench/results/2026-11-22-issue7-scaling.md). The numbers a
// change of the fit should have to answer for: the 70B's decode step at batch 32.
TEST(SimCostModel, TensorParallelAllReducesCostMoreWithMoreRanks) {
  const Hardware h200 = *LoadHardware("h200");
  const ModelConfig llama70b = Model("llama-3.1-70b");
  const CostModel tp2(llama70b, Layout(2, 1), {}, h200, 2);
  const CostModel tp4(llama70b, Layout(4, 1), {}, h200, 2);
  const CostModel tp8(llama70b, Layout(8, 1), {}, h200, 2);
  const StageCost s2 = tp2.Stage(0, Decode(32, 576));
  const StageCost s4 = tp4.Stage(0, Decode(32, 576));
  const StageCost s8 = tp8.Stage(0, Decode(32, 576));
  // 160 all-reduces of 32 x 8192 bf16 (512 KiB) per step.
  EXPECT_GT(s8.tp_comm_s, 1.3 * s4.tp_comm_s);
  EXPECT_GT(s4.tp_comm_s, 1.2 * s2.tp_comm_s);
  EXPECT_NEAR(s4.tp_comm_s / 160, 36e-6, 6e-6);
  EXPECT_NEAR(s8.tp_comm_s / 160, 52e-6, 8e-6);
  // The all-reduces, not the halved weights, now set the tp4 -> tp8 step.
  EXPECT_GT(s8.tp_comm_s, s8.gemm_s);
  EXPECT_LT(s8.total(), s4.total());
  EXPECT_GT(s8.total(), 0.75 * s4.total());
  std::printf("70B decode batch 32: tp2 %.2f ms (all-reduce %.2f), tp4 %.2f (%.2f), tp8 %.2f (%.2f)\n",
              s2.total() * 1e3, s2.tp_comm_s * 1e3, s4.total() * 1e3, s4.tp_comm_s * 1e3, s8.total() * 1e3,
              s8.tp_comm_s * 1e3);
  // A prefill chunk's all-reduce is bandwidth-bound: 2(n-1)/n of 128 MiB at the bus bandwidth.
  const std::vector<std::vector<SeqWork>> chunk = {{{.num_new_tokens = 8192, .context_len = 8192, .sample = true}}};
  const double bytes = 8192.0 * 8192 * 2;
  EXPECT_NEAR(tp8.Stage(0, chunk).tp_comm_s / 160, 2 * 7.0 / 8 * bytes / h200.nvlink.bandwidth, 60e-6);
}

// The expert terms were fitted to Mixtral-8x7B's decode and prefill steps on one H200
// (bench/results/2026-11-22-issue7/moe_step_bench.jsonl): decode with CUDA graphs
// through the grouped kernels (batch 1-64), batch 256 and the 2048-token prefill
// through the per-expert cuBLASLt route (eager).
TEST(SimCostModel, ReproducesTheMeasuredMixtralSteps) {
  const CostModel model(Model("mixtral-8x7b"), Layout(1, 1), {}, *LoadHardware("h200"), 2);
  const std::pair<int, double> measured_ms[] = {{1, 10.43}, {8, 25.44}, {64, 43.63}, {256, 40.13}};
  for (const auto& [batch, ms] : measured_ms) {
    const double predicted = model.Stage(0, Decode(batch, 1024)).total() * 1e3;
    EXPECT_NEAR(predicted, ms, 0.08 * ms) << "batch " << batch;
    std::printf("Mixtral decode batch %d: measured %.2f ms, predicted %.2f ms (%+.1f%%)\n", batch, ms, predicted,
                100 * (predicted / ms - 1));
  }
  const std::vector<std::vector<SeqWork>> prefill = {{{.num_new_tokens = 2048, .context_len = 2048, .sample = true}}};
  const double predicted = model.Stage(0, prefill).total() * 1e3;
  EXPECT_NEAR(predicted, 103.2, 0.08 * 103.2);
  std::printf("Mixtral prefill 2048: measured 103.2 ms, predicted %.1f ms (%+.1f%%)\n", predicted,
              100 * (predicted / 103.2 - 1));
  // The grouped kernels are far below the roofline: batch 64 streams every expert
  // once, yet takes longer than the per-expert route's batch 256.
  EXPECT_GT(model.Stage(0, Decode(64, 1024)).moe_s, model.Stage(0, Decode(256, 1024)).moe_s);
}

// Qwen3-30B-A3B on one H200 (bench/results/2026-11-22-issue7/session5/qwen3_*.jsonl):
// decode with graphs (grouped kernels), the 4 x 2048 prefill per expert (>= 512 rows,
// 256 GEMM launches per layer: moe_per_expert_launch_s). Its 128 narrow experts were not
// part of the fit: batches 64 and 256 and the prefill land within 10%; batches 1 and 8
// are 43% and 23% low (the grouped kernels' small-batch cost on narrow experts is not
// modelled; see bench/results/2026-11-22-issue7-scaling.md).
TEST(SimCostModel, ReproducesTheMeasuredQwen3Steps) {
  const CostModel model(Model("qwen3-30b-a3b"), Layout(1, 1), {}, *LoadHardware("h200"), 2);
  const std::pair<int, double> measured_ms[] = {{1, 4.45}, {8, 10.58}, {64, 21.98}, {256, 33.60}};
  for (const auto& [batch, ms] : measured_ms) {
    const double predicted = model.Stage(0, Decode(batch, 1024)).total() * 1e3;
    if (batch >= 64) EXPECT_NEAR(predicted, ms, 0.08 * ms) << "batch " << batch;
    EXPECT_LT(predicted, 1.08 * ms) << "batch " << batch;
    std::printf("Qwen3 decode batch %d: measured %.2f ms, predicted %.2f ms (%+.1f%%)\n", batch, ms, predicted,
                100 * (predicted / ms - 1));
  }
  std::vector<std::vector<SeqWork>> prefill(1);
  for (int i = 0; i < 4; ++i) prefill[0].push_back({.num_new_tokens = 2048, .context_len = 2048, .sample = true});
  const double predicted = model.Stage(0, prefill).total() * 1e3;
  EXPECT_NEAR(predicted, 175.0, 0.1 * 175.0);
  std::printf("Qwen3 prefill 4 x 2048: measured 175.0 ms, predicted %.1f ms (%+.1f%%)\n", predicted,
              100 * (predicted / 175.0 - 1));
}

pb::StepRequest DecodeStep(int64_t step, int64_t seq_id, int32_t token, bool is_new, int32_t block) {
  pb::StepRequest request;
  request.set_step(step);
  pb::ScheduledSequence* s = request.add_dp()->add_sequences();
  s->set_seq_id(seq_id);
  s->set_is_new(is_new);
  s->set_start_position(0);
  s->set_sample(true);
  s->add_token_ids(token);
  if (is_new) {
    s->add_block_ids(block);
    s->mutable_sampling()->set_seed(7);
  }
  return request;
}

// Two micro-batches sent together through two stages overlap: the second finishes
// one stage time after the first, not a whole pipeline later.
TEST(SimStepper, PipelineStagesOverlapMicroBatches) {
  const ModelConfig llama8b = Model("llama-3.1-8b");
  const CostModel model(llama8b, Layout(1, 2), {}, *LoadHardware("h200"), 2);
  SimStepper stepper(model, 0, 16, 100, llama8b.vocab_size);
  const auto t0 = SimStepper::Clock::now();
  absl::StatusOr<SimStepper::Outcome> first = stepper.Step(DecodeStep(1, 1, 5, true, 1), t0);
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<SimStepper::Outcome> second = stepper.Step(DecodeStep(2, 2, 6, true, 2), t0);
  ASSERT_TRUE(second.ok()) << second.status();
  const double stage0 = first->stages[0].total(), stage1 = first->stages[1].total();
  const double latency = std::chrono::duration<double>(first->due - t0).count();
  EXPECT_NEAR(latency, stage0 + first->stages[0].send_s + stage1, 1e-6);
  const double gap = std::chrono::duration<double>(second->due - first->due).count();
  EXPECT_NEAR(gap, std::max(stage0, stage1), 1e-6);
  ASSERT_EQ(first->result.tokens_size(), 1);
  EXPECT_EQ(first->result.tokens(0).seq_id(), 1);
  EXPECT_GE(first->result.tokens(0).token_id(), 0);
  EXPECT_LT(first->result.tokens(0).token_id(), llama8b.vocab_size);
  // A step the tables reject is an error, not a crash.
  EXPECT_EQ(stepper.Step(DecodeStep(3, 99, 1, false, 0), t0).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace lattice::sim
