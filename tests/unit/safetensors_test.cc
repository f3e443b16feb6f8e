// Checkpoint: real safetensors files written by a small writer here, read back in
// every float dtype, single and sharded; and a table of broken or hostile files,
// each of which must be a clear error naming the file (and tensor), never a crash.
#include "worker/safetensors.h"

#include "tests/unit/safetensors_writer.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

namespace lattice {
namespace {

using json = nlohmann::json;
using testing::Bf16Bytes;
using testing::F16Bytes;
using testing::F32Bytes;
using testing::FileBytes;
using testing::I32Bytes;
using testing::RawTensor;
using testing::Serialize;
using testing::WriteBytes;

std::string NewDir() {
  static int counter = 0;
  const std::string dir =
      (std::filesystem::path(::testing::TempDir()) / "safetensors_test_").string() +
      ::testing::UnitTest::GetInstance()->current_test_info()->name() + "_" +
      std::to_string(counter++);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

std::vector<float> Values(const Tensor& t) {
  const auto s = t.span<float>();
  return {s.begin(), s.end()};
}

void ExpectError(const absl::Status& status, absl::StatusCode code,
                 const std::vector<std::string>& substrings) {
  EXPECT_EQ(status.code(), code) << status;
  for (const std::string& s : substrings) {
    EXPECT_NE(status.message().find(s), std::string::npos) << status;
  }
}

// Exactly representable in bf16 and f16, so the round trip is exact.
const std::vector<float> kValues = {1.5f, -2.0f, 0.15625f, 0.0f, -0.0f, 1024.0f};

TEST(SafetensorsTest, RoundTripsEveryFloatDType) {
  const std::string dir = NewDir();
  const std::string path = dir + "/model.safetensors";
  WriteBytes(path, Serialize({{"w.f32", "F32", {2, 3}, F32Bytes(kValues)},
                              {"w.bf16", "BF16", {3, 2}, Bf16Bytes(kValues)},
                              {"w.f16", "F16", {6}, F16Bytes(kValues)},
                              {"ids", "I32", {2}, I32Bytes({7, -9})}},
                             {{"format", "pt"}}));
  absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = Checkpoint::OpenFile(path);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  Checkpoint& c = **ckpt;
  EXPECT_EQ(c.Names(), (std::vector<std::string>{"ids", "w.bf16", "w.f16", "w.f32"}));
  ASSERT_TRUE(c.Contains("w.bf16"));
  EXPECT_FALSE(c.Contains("__metadata__"));
  EXPECT_EQ(c.Find("w.bf16")->dtype, DType::kBF16);
  EXPECT_EQ(c.Find("w.bf16")->shape, (Shape{3, 2}));
  EXPECT_EQ(c.Find("missing"), nullptr);

  for (const auto& [name, shape] : std::vector<std::pair<std::string, Shape>>{
           {"w.f32", {2, 3}}, {"w.bf16", {3, 2}}, {"w.f16", {6}}}) {
    SCOPED_TRACE(name);
    absl::StatusOr<Tensor> t = c.Load(name, shape);
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_EQ(t->dtype(), DType::kF32);
    EXPECT_EQ(t->shape(), shape);
    EXPECT_EQ(Values(*t), kValues);
  }
  absl::StatusOr<Tensor> ids = c.LoadRaw("ids");
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(ids->dtype(), DType::kI32);
  EXPECT_EQ(ids->data<int32_t>()[1], -9);
}

TEST(SafetensorsTest, LoadRawIsAZeroCopyViewThatOutlivesTheCheckpoint) {
  const std::string dir = NewDir();
  WriteBytes(dir + "/model.safetensors", Serialize({{"a", "F32", {1}, F32Bytes({3.0f})},
                                                    {"b", "BF16", {2, 3}, Bf16Bytes(kValues)}}));
  Tensor raw;
  {
    absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = Checkpoint::Open(dir);
    ASSERT_TRUE(ckpt.ok()) << ckpt.status();
    absl::StatusOr<Tensor> t = (*ckpt)->LoadRaw("b");
    ASSERT_TRUE(t.ok()) << t.status();
    absl::StatusOr<Tensor> again = (*ckpt)->LoadRaw("b");
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(t->raw_data(), again->raw_data());  // the same mapped bytes, not a copy
    raw = *t;
  }  // the checkpoint is gone; the mapping lives on in the tensor's buffer
  EXPECT_EQ(raw.dtype(), DType::kBF16);
  EXPECT_EQ(raw.shape(), (Shape{2, 3}));
  EXPECT_EQ(Values(raw.To(DType::kF32)), kValues);
}

TEST(SafetensorsTest, MisalignedDataAndEmptyTensorsLoad) {
  const std::string dir = NewDir();
  const std::string path = dir + "/model.safetensors";
  // align 1: no padding, and metadata grown until the header length is odd, so the
  // data section starts on an odd byte.
  std::string bytes;
  for (std::string pad;; pad += 'x') {
    bytes = Serialize({{"x", "F32", {6}, F32Bytes(kValues)},
                       {"empty", "F32", {0, 4}, ""},
                       {"scalar", "F16", {}, F16Bytes({-2.0f})},
                       {"y", "BF16", {6}, Bf16Bytes(kValues)}},
                      {{"pad", pad}}, 1);
    uint64_t n = 0;
    std::memcpy(&n, bytes.data(), 8);
    if (n % 2 == 1) break;
  }
  WriteBytes(path, bytes);
  absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = Checkpoint::OpenFile(path);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  for (const char* name : {"x", "y"}) {
    absl::StatusOr<Tensor> t = (*ckpt)->Load(name, {6});
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_EQ(Values(*t), kValues);
  }
  absl::StatusOr<Tensor> empty = (*ckpt)->Load("empty", {0, 4});
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_EQ(empty->numel(), 0);
  absl::StatusOr<Tensor> scalar = (*ckpt)->Load("scalar", {});
  ASSERT_TRUE(scalar.ok()) << scalar.status();
  EXPECT_EQ(Values(*scalar), std::vector<float>{-2.0f});
}

TEST(CheckpointTest, OpensAShardedIndex) {
  const std::string dir = NewDir();
  WriteBytes(dir + "/model-00001-of-00002.safetensors",
             Serialize({{"model.embed_tokens.weight", "BF16", {3, 2}, Bf16Bytes(kValues)},
                        {"model.norm.weight", "F32", {2}, F32Bytes({1.0f, 2.0f})}}));
  WriteBytes(dir + "/model-00002-of-00002.safetensors",
             Serialize({{"lm_head.weight", "F16", {2, 3}, F16Bytes(kValues)}}));
  const json index = {{"metadata", {{"total_size", 40}}},
                      {"weight_map",
                       {{"model.embed_tokens.weight", "model-00001-of-00002.safetensors"},
                        {"model.norm.weight", "model-00001-of-00002.safetensors"},
                        {"lm_head.weight", "model-00002-of-00002.safetensors"}}}};
  WriteBytes(dir + "/model.safetensors.index.json", index.dump());
  // Not named by the index, so not opened.
  WriteBytes(dir + "/model.safetensors", "garbage");

  absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = Checkpoint::Open(dir);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  Checkpoint& c = **ckpt;
  EXPECT_EQ(c.Names(), (std::vector<std::string>{"lm_head.weight", "model.embed_tokens.weight",
                                                 "model.norm.weight"}));
  EXPECT_NE(c.Find("lm_head.weight")->file_index, c.Find("model.norm.weight")->file_index);
  EXPECT_EQ(c.Find("model.embed_tokens.weight")->file_index,
            c.Find("model.norm.weight")->file_index);
  absl::StatusOr<Tensor> head = c.Load("lm_head.weight", {2, 3});
  ASSERT_TRUE(head.ok()) << head.status();
  EXPECT_EQ(Values(*head), kValues);
  absl::StatusOr<Tensor> embed = c.Load("model.embed_tokens.weight", {3, 2});
  ASSERT_TRUE(embed.ok()) << embed.status();
  EXPECT_EQ(Values(*embed), kValues);
  absl::StatusOr<Tensor> norm = c.Load("model.norm.weight", {2});
  ASSERT_TRUE(norm.ok()) << norm.status();
  EXPECT_EQ(Values(*norm), (std::vector<float>{1.0f, 2.0f}));
}

// Every fixture checkpoint (single files and a sharded index, as transformers 5.17
// saves them) opens and every tensor loads at its stored shape.
TEST(CheckpointTest, OpensEveryFixture) {
  const std::filesystem::path root =
      std::filesystem::path(LATTICE_SOURCE_DIR) / "tests/fixtures/models";
  int checked = 0;
  for (const auto& entry : std::filesystem::directory_iterator(root)) {
    if (!entry.is_directory()) continue;
    SCOPED_TRACE(entry.path().string());
    absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = Checkpoint::Open(entry.path().string());
    ASSERT_TRUE(ckpt.ok()) << ckpt.status();
    ASSERT_FALSE((*ckpt)->Names().empty());
    int max_file = 0;
    for (const std::string& name : (*ckpt)->Names()) {
      const TensorInfo* info = (*ckpt)->Find(name);
      max_file = std::max(max_file, info->file_index);
      absl::StatusOr<Tensor> t = (*ckpt)->Load(name, info->shape);
      ASSERT_TRUE(t.ok()) << t.status();
    }
    EXPECT_TRUE((*ckpt)->Unused().empty());
    if (entry.path().filename() == "qwen3moe_sharded_f32") {
      EXPECT_GT(max_file, 1);  // several shards
    }
    ++checked;
  }
  EXPECT_GE(checked, 10);
}

TEST(CheckpointTest, UnusedListsWhatWasNeverLoadedOrMarked) {
  const std::string dir = NewDir();
  WriteBytes(dir + "/model.safetensors", Serialize({{"a", "F32", {1}, F32Bytes({1.0f})},
                                                    {"b", "F32", {1}, F32Bytes({2.0f})},
                                                    {"c", "F32", {1}, F32Bytes({3.0f})},
                                                    {"d", "F32", {1}, F32Bytes({4.0f})},
                                                    {"e", "F32", {1}, F32Bytes({5.0f})}}));
  absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = Checkpoint::Open(dir);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  Checkpoint& c = **ckpt;
  EXPECT_EQ(c.Unused(), (std::vector<std::string>{"a", "b", "c", "d", "e"}));
  ASSERT_TRUE(c.Load("b", {1}).ok());
  ASSERT_TRUE(c.LoadRaw("d").ok());
  c.MarkUsed("a");
  c.MarkUsed("no.such.tensor");            // harmless
  EXPECT_FALSE(c.Load("e", {2, 2}).ok());  // a failed load does not count as used
  EXPECT_EQ(c.Unused(), (std::vector<std::string>{"c", "e"}));
}

TEST(CheckpointTest, LoadErrorsNameTheTensor) {
  const std::string dir = NewDir();
  const std::string path = dir + "/model.safetensors";
  WriteBytes(path, Serialize({{"w", "F32", {2, 3}, F32Bytes(kValues)},
                              {"ids", "I32", {2}, I32Bytes({1, 2})}}));
  absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = Checkpoint::Open(dir);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  ExpectError((*ckpt)->Load("w", {3, 2}).status(), absl::StatusCode::kInvalidArgument,
              {"tensor w has shape [2, 3], expected [3, 2]", path});
  ExpectError((*ckpt)->Load("w", {6}).status(), absl::StatusCode::kInvalidArgument,
              {"expected [6]"});
  ExpectError((*ckpt)->Load("ids", {2}).status(), absl::StatusCode::kInvalidArgument,
              {"tensor ids has dtype I32, not a float type", path});
  ExpectError((*ckpt)->Load("nope", {1}).status(), absl::StatusCode::kNotFound,
              {"missing tensor nope", dir});
  ExpectError((*ckpt)->LoadRaw("nope").status(), absl::StatusCode::kNotFound,
              {"missing tensor nope"});
}

std::string Header(const json& entries) { return entries.dump(); }
json Entry(const std::string& dtype, const json& shape, const json& offsets) {
  return {{"dtype", dtype}, {"shape", shape}, {"data_offsets", offsets}};
}

TEST(SafetensorsTest, BrokenFilesAreErrorsNamingFileAndTensor) {
  const std::string data24(24, '\0');
  std::string huge_n = FileBytes("{}", "");
  huge_n[7] = 0x40;  // N = 2^62 + 8
  std::string past_end = FileBytes("{}", "");
  past_end[0] = 100;  // N = 100 in a 16-byte file
  std::string over_limit(16, '\0');
  const uint64_t limit_plus_one = kMaxSafetensorsHeaderBytes + 1;
  std::memcpy(over_limit.data(), &limit_plus_one, 8);

  struct Case {
    std::string name;
    std::string bytes;
    absl::StatusCode code;
    std::vector<std::string> substrings;  // besides the file path
  };
  const auto invalid = absl::StatusCode::kInvalidArgument;
  const std::vector<Case> cases = {
      {"empty file", "", invalid, {"shorter than the 8-byte header length"}},
      {"truncated length", std::string("\x10\0\0", 3), invalid, {"file is 3 bytes"}},
      {"huge N", huge_n, invalid, {"header length 4611686018427387912 exceeds the limit"}},
      {"N over the limit", over_limit, invalid, {"exceeds the limit of 104857600 bytes"}},
      {"N past the end",
       past_end,
       invalid,
       {"header length 100 exceeds the 8 bytes after the length field"}},
      {"header not JSON",
       FileBytes("{\"w\": {\"dtype\": ", data24),
       invalid,
       {"header: not valid JSON"}},
      {"header nests deeply",
       FileBytes("{\"w\": " + std::string(1 << 20, '[') + std::string(1 << 20, ']') + "}", ""),
       invalid,
       {"header: JSON nests deeper than 64 levels"}},
      {"entry nests deeply",
       FileBytes("{\"w\": " + std::string(40, '[') + std::string(40, ']') + "}", ""),
       invalid,
       {"tensor 'w': entry must be an object, got array [[[[...]]]]"}},
      {"header not an object",
       FileBytes("[1, 2]", data24),
       invalid,
       {"header is not a JSON object but array"}},
      {"entry not an object",
       FileBytes(Header({{"w", "F32"}}), data24),
       invalid,
       {"tensor 'w': entry must be an object"}},
      {"missing data_offsets",
       FileBytes(Header({{"w", {{"dtype", "F32"}, {"shape", {2}}}}}), data24),
       invalid,
       {"tensor 'w': missing field 'data_offsets'"}},
      {"missing dtype",
       FileBytes(Header({{"w", {{"shape", {2}}, {"data_offsets", {0, 8}}}}}), data24),
       invalid,
       {"tensor 'w': missing field 'dtype'"}},
      {"dtype not a string",
       FileBytes(Header({{"w", {{"dtype", 32}, {"shape", {2}}, {"data_offsets", {0, 8}}}}}),
                 data24),
       invalid,
       {"tensor 'w': dtype must be a string"}},
      {"unknown dtype",
       FileBytes(Header({{"w", Entry("Q4_K", {2}, {0, 8})}}), data24),
       invalid,
       {"tensor 'w': unknown dtype string \"Q4_K\""}},
      {"unsupported dtype",
       FileBytes(Header({{"w", Entry("I64", {2}, {0, 16})}}), data24),
       invalid,
       {"tensor 'w': unsupported dtype I64"}},
      {"shape not a list",
       FileBytes(Header({{"w", Entry("F32", 2, {0, 8})}}), data24),
       invalid,
       {"tensor 'w': shape must be a list"}},
      {"negative dimension",
       FileBytes(Header({{"w", Entry("F32", {2, -1}, {0, 8})}}), data24),
       invalid,
       {"tensor 'w': negative dimension"}},
      {"fractional dimension",
       FileBytes(Header({{"w", Entry("F32", {2.5}, {0, 8})}}), data24),
       invalid,
       {"tensor 'w': shape must hold integers"}},
      {"numel overflow",
       FileBytes(Header({{"w", Entry("F32", {1ull << 40, 1ull << 40}, {0, 8})}}), data24),
       invalid,
       {"tensor 'w': shape", "overflows the element count"}},
      {"offsets not a pair",
       FileBytes(Header({{"w", Entry("F32", {2}, {0, 8, 16})}}), data24),
       invalid,
       {"tensor 'w': data_offsets must be [begin, end]"}},
      {"negative offset",
       FileBytes(Header({{"w", Entry("F32", {2}, {-8, 0})}}), data24),
       invalid,
       {"tensor 'w': data_offsets must be [begin, end] of non-negative integers"}},
      {"offsets reversed",
       FileBytes(Header({{"w", Entry("F32", {0}, {8, 0})}}), data24),
       invalid,
       {"tensor 'w': data_offsets [8, 0] end before they begin"}},
      {"offsets out of bounds",
       FileBytes(Header({{"w", Entry("F32", {4}, {16, 32})}}), data24),
       invalid,
       {"tensor 'w': data_offsets [16, 32] end beyond the data section of 24 bytes"}},
      {"huge offsets",
       FileBytes(Header({{"w", Entry("F32", {4}, {~0ull - 8, ~0ull})}}), data24),
       invalid,
       {"tensor 'w'", "end beyond the data section"}},
      {"size mismatch",
       FileBytes(Header({{"w", Entry("BF16", {2, 3}, {0, 24})}}), data24),
       invalid,
       {"tensor 'w': data_offsets [0, 24] span 24 bytes but shape [2, 3] of BF16 needs 12"}},
      {"overlap",
       FileBytes(Header({{"a", Entry("F32", {4}, {0, 16})}, {"b", Entry("F32", {2}, {8, 16})}}),
                 data24),
       invalid,
       {"tensor 'b': data_offsets [8, 16] overlap tensor 'a' at [0, 16]"}},
      {"duplicate name",
       FileBytes(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                      "w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}})",
                 data24),
       invalid,
       {"tensor 'w': appears twice in the header"}},
      {"metadata not strings",
       FileBytes(Header({{"__metadata__", {{"format", 1}}}}), data24),
       invalid,
       {"__metadata__ value of 'format' must be a string"}},
  };
  for (const Case& t : cases) {
    SCOPED_TRACE(t.name);
    const std::string path = NewDir() + "/model.safetensors";
    WriteBytes(path, t.bytes);
    absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = Checkpoint::OpenFile(path);
    ASSERT_FALSE(ckpt.ok());
    std::vector<std::string> substrings = t.substrings;
    substrings.push_back(path);
    ExpectError(ckpt.status(), t.code, substrings);
  }
}

TEST(SafetensorsTest, MutatedFilesNeverCrash) {
  // Random byte edits to a valid file: each open either fails cleanly or yields
  // tensors that load (or fail cleanly) within the mapped bytes.
  const std::string valid = Serialize({{"a", "F32", {2, 3}, F32Bytes(kValues)},
                                       {"b", "BF16", {6}, Bf16Bytes(kValues)},
                                       {"c", "F16", {3, 2}, F16Bytes(kValues)}},
                                      {{"format", "pt"}});
  const std::string path = NewDir() + "/model.safetensors";
  std::mt19937 rng(1234);
  int opened = 0;
  for (int i = 0; i < 400; ++i) {
    std::string bytes = valid;
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits; ++e) {
      const size_t at = rng() % bytes.size();
      switch (rng() % 4) {
        case 0:
          bytes[at] = static_cast<char>(rng());
          break;
        case 1:
          bytes[at] = "0123456789[]{},:\"-"[rng() % 18];
          break;
        case 2:
          bytes.resize(at);
          break;
        default:
          bytes.insert(at, 1, static_cast<char>(rng()));
          break;
      }
      if (bytes.empty()) break;
    }
    WriteBytes(path, bytes);
    absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = Checkpoint::OpenFile(path);
    if (!ckpt.ok()) {
      EXPECT_EQ(ckpt.status().code(), absl::StatusCode::kInvalidArgument) << ckpt.status();
      continue;
    }
    ++opened;
    for (const std::string& name : (*ckpt)->Names()) {
      const TensorInfo* info = (*ckpt)->Find(name);
      absl::StatusOr<Tensor> t = (*ckpt)->Load(name, info->shape);
      if (t.ok()) {
        EXPECT_EQ(t->shape(), info->shape);
      }
    }
  }
  EXPECT_GT(opened, 0);  // some edits land in the data and leave the header valid
}

TEST(CheckpointTest, BrokenDirectoriesAndIndexes) {
  const std::string shard_a = Serialize({{"a", "F32", {1}, F32Bytes({1.0f})}});
  const std::string shard_ab =
      Serialize({{"a", "F32", {1}, F32Bytes({1.0f})}, {"b", "F32", {1}, F32Bytes({2.0f})}});
  const std::string shard_b = Serialize({{"b", "F32", {1}, F32Bytes({2.0f})}});
  const std::string deep_index =
      "{\"weight_map\": " + std::string(100000, '[') + std::string(100000, ']') + "}";
  struct Case {
    std::string name;
    const char* index;  // nullptr: no index file
    std::vector<std::pair<std::string, std::string>> files;
    absl::StatusCode code;
    std::vector<std::string> substrings;
  };
  const auto invalid = absl::StatusCode::kInvalidArgument;
  const std::vector<Case> cases = {
      {"nothing there",
       nullptr,
       {},
       absl::StatusCode::kNotFound,
       {"no model.safetensors or model.safetensors.index.json"}},
      {"index not JSON",
       "{\"weight_map\": ",
       {},
       invalid,
       {"model.safetensors.index.json: not valid JSON"}},
      {"no weight_map",
       R"({"metadata": {}})",
       {},
       invalid,
       {"index.json: missing field 'weight_map'"}},
      {"index nests deeply",
       deep_index.c_str(),
       {},
       invalid,
       {"index.json: JSON nests deeper than 64 levels"}},
      {"weight_map not an object",
       R"({"weight_map": ["x.safetensors"]})",
       {},
       invalid,
       {"weight_map must be a non-empty object"}},
      {"file name not a string",
       R"({"weight_map": {"a": 3}})",
       {},
       invalid,
       {"weight_map entry for tensor 'a' must be a file name"}},
      {"path traversal",
       R"({"weight_map": {"a": "../model.safetensors"}})",
       {},
       invalid,
       {"shard file name string \"../model.safetensors\" (for tensor 'a')", "path separator"}},
      {"absolute path", R"({"weight_map": {"a": "/etc/passwd"}})", {}, invalid, {"path separator"}},
      {"dot-dot", R"({"weight_map": {"a": ".."}})", {}, invalid, {"path separator or '..'"}},
      {"missing shard",
       R"({"weight_map": {"a": "s1.safetensors", "b": "s2.safetensors"}})",
       {{"s1.safetensors", shard_a}},
       absl::StatusCode::kNotFound,
       {"s2.safetensors", "named by", "does not exist"}},
      {"tensor missing in its shard",
       R"({"weight_map": {"a": "s1.safetensors", "c": "s1.safetensors"}})",
       {{"s1.safetensors", shard_a}},
       invalid,
       {"tensor 'c' is missing from shard s1.safetensors, where", "index.json places it"}},
      {"tensor in the other shard",
       R"({"weight_map": {"a": "s1.safetensors", "b": "s1.safetensors"}})",
       {{"s1.safetensors", shard_a}, {"s2.safetensors", shard_b}},
       invalid,
       {"tensor 'b' is missing from shard"}},
      {"tensor in two shards",
       R"({"weight_map": {"a": "s1.safetensors", "b": "s2.safetensors"}})",
       {{"s1.safetensors", shard_ab}, {"s2.safetensors", shard_b}},
       invalid,
       {"tensor 'b' is in two files", "s1.safetensors", "s2.safetensors"}},
      {"broken shard",
       R"({"weight_map": {"a": "s1.safetensors"}})",
       {{"s1.safetensors", "short"}},
       invalid,
       {"s1.safetensors: file is 5 bytes"}},
  };
  for (const Case& t : cases) {
    SCOPED_TRACE(t.name);
    const std::string dir = NewDir();
    if (t.index != nullptr) WriteBytes(dir + "/model.safetensors.index.json", t.index);
    for (const auto& [name, bytes] : t.files) WriteBytes(dir + "/" + name, bytes);
    absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = Checkpoint::Open(dir);
    ASSERT_FALSE(ckpt.ok());
    std::vector<std::string> substrings = t.substrings;
    substrings.push_back(dir);
    ExpectError(ckpt.status(), t.code, substrings);
  }
  ExpectError(Checkpoint::OpenFile(NewDir() + "/absent.safetensors").status(),
              absl::StatusCode::kNotFound, {"absent.safetensors: no such file"});
  ExpectError(Checkpoint::OpenFile(NewDir()).status(), invalid, {"not a regular file"});
}

}  // namespace
}  // namespace lattice
