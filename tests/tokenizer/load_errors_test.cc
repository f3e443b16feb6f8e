// Loading: what is not implemented is an error at load naming the component and its
// place in tokenizer.json, never a silent difference; a directory without tokenizer
// files is NOT_FOUND.
#include "tests/tokenizer/tokenizer_test_util.h"
#include "tokenizer/tokenizer.h"

namespace lattice::text {
namespace {

std::string Minimal(const std::string& patch_key, const std::string& patch_value) {
  nlohmann::json j = nlohmann::json::parse(R"({
    "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
    "normalizer": null, "pre_tokenizer": null, "post_processor": null, "decoder": null,
    "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
              "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
              "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}})");
  if (!patch_key.empty()) j[patch_key] = nlohmann::json::parse(patch_value);
  return j.dump();
}

TEST(TokenizerLoad, MinimalBpeWorks) {
  auto t = Tokenizer::FromJson(Minimal("", ""), "");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(*(*t)->Encode("abab", false), (std::vector<int32_t>{2, 2}));
  EXPECT_EQ(*(*t)->Decode(std::vector<int32_t>{2, 0}, false), "ab a");  // no decoder: joined by spaces
}

TEST(TokenizerLoad, UnsupportedComponentsAreNamed) {
  struct Case {
    std::string key, value, message;
  };
  const Case cases[] = {
      {"normalizer", R"({"type": "BertNormalizer"})", "tokenizer.json: normalizer: unsupported normalizer type 'BertNormalizer'"},
      {"normalizer", R"({"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "Precompiled", "precompiled_charsmap": ""}]})",
       "tokenizer.json: normalizer.normalizers[1]: unsupported normalizer type 'Precompiled'"},
      {"pre_tokenizer", R"({"type": "UnicodeScripts"})", "tokenizer.json: pre_tokenizer: unsupported pre_tokenizer type 'UnicodeScripts'"},
      {"pre_tokenizer", R"({"type": "Split", "pattern": {"Regex": "(("}, "behavior": "Isolated", "invert": false})",
       "tokenizer.json: pre_tokenizer: bad regex '(('"},
      {"pre_tokenizer", R"({"type": "Split", "pattern": {"String": " "}, "behavior": "Sideways", "invert": false})",
       "unsupported split behavior 'Sideways'"},
      {"decoder", R"({"type": "CTC"})", "tokenizer.json: decoder: unsupported decoder type 'CTC'"},
      {"post_processor", R"({"type": "Mystery"})", "tokenizer.json: post_processor: unsupported post_processor type 'Mystery'"},
      {"model", R"({"type": "Unigram", "vocab": []})", "tokenizer.json: model: unsupported model type 'Unigram'"},
      {"model", R"({"type": "WordPiece", "vocab": {}})", "unsupported model type 'WordPiece'"},
      {"model", R"({"type": "BPE", "dropout": 0.1, "vocab": {"a": 0}, "merges": []})", "BPE dropout is not supported"},
      {"model", R"({"type": "BPE", "vocab": {"a": 0}, "merges": ["a c"]})", "merges[0] ('a', 'c') uses a token not in vocab"},
      {"truncation", R"({"max_length": 5})", "'truncation' is set; not supported"},
  };
  for (const Case& c : cases) {
    auto t = Tokenizer::FromJson(Minimal(c.key, c.value), "");
    ASSERT_FALSE(t.ok()) << c.value;
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(t.status().message().find(c.message), std::string::npos) << t.status().message();
  }
  EXPECT_FALSE(Tokenizer::FromJson("{not json", "").ok());
}

TEST(TokenizerLoad, NoTokenizerFilesIsNotFound) {
  auto t = Tokenizer::Load(::testing::TempDir());
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kNotFound);
}

TEST(TokenizerLoad, InvalidUtf8TextIsRefused) {
  auto t = Tokenizer::FromJson(Minimal("", ""), "");
  ASSERT_TRUE(t.ok());
  auto ids = (*t)->Encode("ab\xc3(", false);
  ASSERT_FALSE(ids.ok());
  EXPECT_EQ(ids.status().message(), "text is not valid UTF-8 (at byte 2)");
}

}  // namespace
}  // namespace lattice::text
