// DecoderModel::Load against checkpoints that do not fit the config: a missing
// tensor, an unexpected one, a wrong shape, a non-float dtype: each a clear error
// naming the tensor, for the whole model and for one shard of it.
#include <filesystem>

#include <gtest/gtest.h>

#include "tests/unit/safetensors_writer.h"
#include "worker/model.h"

namespace lattice {
namespace {

namespace fs = std::filesystem;
using testing::RawTensor;

std::string FixtureDir(const std::string& name) {
  return std::string(LATTICE_SOURCE_DIR) + "/tests/fixtures/models/" + name;
}

// Every tensor of a fixture, as raw bytes in its stored dtype.
std::vector<RawTensor> ReadAll(const std::string& fixture) {
  absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint = Checkpoint::Open(FixtureDir(fixture));
  EXPECT_TRUE(checkpoint.ok()) << checkpoint.status();
  std::vector<RawTensor> tensors;
  for (const std::string& name : (*checkpoint)->Names()) {
    absl::StatusOr<Tensor> raw = (*checkpoint)->LoadRaw(name);
    EXPECT_TRUE(raw.ok());
    const char* names[] = {"F32", "BF16", "F16", "I32"};
    tensors.push_back({name, names[static_cast<int>(raw->dtype())], raw->shape(),
                       std::string(static_cast<const char*>(raw->raw_data()), raw->nbytes())});
  }
  return tensors;
}

// A copy of the fixture's config with `tensors` as its single-file checkpoint.
std::string WriteModel(const std::string& fixture, const std::vector<RawTensor>& tensors, const std::string& tag) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("model_load_" + tag);
  fs::remove_all(dir);
  fs::create_directories(dir);
  fs::copy(fs::path(FixtureDir(fixture)) / "config.json", dir / "config.json");
  testing::WriteBytes((dir / "model.safetensors").string(), testing::Serialize(tensors));
  return dir.string();
}

absl::Status LoadStatus(const std::string& dir, const ModelShard& shard = {}) {
  absl::StatusOr<ModelConfig> config = LoadModelConfig(dir);
  EXPECT_TRUE(config.ok()) << config.status();
  return DecoderModel::Load(dir, *config, shard).status();
}

void Erase(std::vector<RawTensor>& tensors, const std::string& name) {
  std::erase_if(tensors, [&](const RawTensor& t) { return t.name == name; });
}

RawTensor& Find(std::vector<RawTensor>& tensors, const std::string& name) {
  for (RawTensor& t : tensors) {
    if (t.name == name) return t;
  }
  ADD_FAILURE() << "no tensor " << name;
  return tensors.front();
}

TEST(ModelLoad, TheFixtureAsWrittenBackLoads) {
  EXPECT_TRUE(LoadStatus(WriteModel("mixtral_f32", ReadAll("mixtral_f32"), "roundtrip")).ok());
}

TEST(ModelLoad, EachMismatchIsAnErrorNamingTheTensor) {
  struct Case {
    const char* name;
    const char* fixture;
    std::function<void(std::vector<RawTensor>&)> edit;
    absl::StatusCode code;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"missing", "llama_gqa_f32", [](auto& t) { Erase(t, "model.layers.1.mlp.down_proj.weight"); },
       absl::StatusCode::kNotFound, "model.layers.1.mlp.down_proj.weight"},
      {"missing head", "llama_gqa_f32", [](auto& t) { Erase(t, "lm_head.weight"); },
       absl::StatusCode::kNotFound, "lm_head.weight"},
      {"missing expert", "mixtral_f32", [](auto& t) { Erase(t, "model.layers.2.block_sparse_moe.experts.3.w2.weight"); },
       absl::StatusCode::kNotFound, "experts.3.w2.weight"},
      {"missing q norm", "qwen3_yarn_bf16", [](auto& t) { Erase(t, "model.layers.0.self_attn.q_norm.weight"); },
       absl::StatusCode::kNotFound, "q_norm.weight"},
      {"missing bias", "qwen2_tied_swa_f16", [](auto& t) { Erase(t, "model.layers.3.self_attn.k_proj.bias"); },
       absl::StatusCode::kNotFound, "k_proj.bias"},
      {"unexpected", "llama_gqa_f32",
       [](auto& t) { t.push_back({"model.layers.1.mlp.extra.weight", "F32", {2}, testing::F32Bytes({1, 2})}); },
       absl::StatusCode::kInvalidArgument, "unexpected tensor in checkpoint"},
      {"layer past the last", "llama_gqa_f32",
       [](auto& t) { t.push_back({"model.layers.9.input_layernorm.weight", "F32", {1}, testing::F32Bytes({1})}); },
       absl::StatusCode::kInvalidArgument, "model.layers.9.input_layernorm.weight"},
      {"expert past the last", "mixtral_f32",
       [](auto& t) {
         t.push_back({"model.layers.0.block_sparse_moe.experts.4.w1.weight", "F32", {1}, testing::F32Bytes({1})});
       },
       absl::StatusCode::kInvalidArgument, "experts.4.w1.weight"},
      {"wrong shape", "llama_gqa_f32",
       [](auto& t) {
         RawTensor& q = Find(t, "model.layers.0.self_attn.q_proj.weight");
         q.shape = {32, 128};
       },
       absl::StatusCode::kInvalidArgument, "model.layers.0.self_attn.q_proj.weight"},
      {"not a float", "llama_gqa_f32",
       [](auto& t) {
         RawTensor& norm = Find(t, "model.norm.weight");
         norm.dtype = "I32";
       },
       absl::StatusCode::kInvalidArgument, "model.norm.weight"},
      {"tied head of the wrong shape", "llama_mqa_tied_bf16",
       [](auto& t) { t.push_back({"lm_head.weight", "F32", {2}, testing::F32Bytes({1, 2})}); },
       absl::StatusCode::kInvalidArgument, "lm_head.weight"},
  };
  for (const Case& c : cases) {
    std::vector<RawTensor> tensors = ReadAll(c.fixture);
    c.edit(tensors);
    const absl::Status status = LoadStatus(WriteModel(c.fixture, tensors, "case"));
    EXPECT_EQ(status.code(), c.code) << c.name << ": " << status;
    EXPECT_NE(status.message().find(c.message), std::string::npos) << c.name << ": " << status;
  }
}

TEST(ModelLoad, ShardsLoadOnlyTheirPartAndStillCatchStrangers) {
  std::vector<RawTensor> tensors = ReadAll("mixtral_f32");
  const std::string good = WriteModel("mixtral_f32", tensors, "shard_good");
  // Stage 1 of 2, expert-parallel rank 1 of 2: other stages' layers and other ranks'
  // experts are someone else's, not unexpected.
  const ModelShard shard{.tp = {1, 2}, .ep = {1, 2}, .first_layer = 2, .end_layer = 4};
  EXPECT_TRUE(LoadStatus(good, shard).ok());
  tensors.push_back({"model.layers.0.block_sparse_moe.extra", "F32", {1}, testing::F32Bytes({1})});
  const std::string bad = WriteModel("mixtral_f32", tensors, "shard_bad");
  // The stage that owns layer 0 reports it; the other stage leaves it to that one.
  const absl::Status first = LoadStatus(bad, {.tp = {0, 2}, .ep = {0, 2}, .first_layer = 0, .end_layer = 2});
  EXPECT_NE(first.message().find("model.layers.0.block_sparse_moe.extra"), std::string::npos) << first;
  EXPECT_TRUE(LoadStatus(bad, shard).ok());
}

}  // namespace
}  // namespace lattice
