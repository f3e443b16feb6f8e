// A model directory with only a sentencepiece tokenizer.model runs through
// libsentencepiece (loaded privately by its plugin): its ids are sentencepiece's own
// for 449 strings, and the same strings through the converted tokenizer.json of the
// bundled model give the same ids.
#include "tests/tokenizer/tokenizer_test_util.h"
#include "tokenizer/tokenizer.h"

namespace lattice::text {
namespace {

using testing::FixtureDir;
using testing::ReadJson;

TEST(SentencePiece, EncodesAsSentencePieceDoesAndMatchesTheConvertedTokenizerJson) {
  auto sp = Tokenizer::Load(FixtureDir() + "/sentencepiece");
  ASSERT_TRUE(sp.ok()) << sp.status();
  auto hf = Tokenizer::Load(testing::TokenizerDir("stories260K"));
  ASSERT_TRUE(hf.ok()) << hf.status();
  EXPECT_EQ((*sp)->vocab_size(), 512);
  EXPECT_EQ((*sp)->bos_token_id(), 1);
  EXPECT_EQ((*sp)->eos_token_id(), 2);
  const auto cases = ReadJson(FixtureDir() + "/stories260K_expected.json");
  ASSERT_EQ(cases.size(), 449u);
  for (const auto& c : cases) {
    const std::string text = c["text"].get<std::string>();
    const auto want = c["ids"].get<std::vector<int32_t>>();
    auto got = (*sp)->Encode(text, false);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, want) << nlohmann::json(text).dump();
    auto got_hf = (*hf)->Encode(text, false);
    ASSERT_TRUE(got_hf.ok());
    EXPECT_EQ(*got_hf, want) << nlohmann::json(text).dump();
    auto with_bos = (*sp)->Encode(text, true);
    ASSERT_TRUE(with_bos.ok());
    ASSERT_FALSE(with_bos->empty());
    EXPECT_EQ((*with_bos)[0], 1);
  }
  // Control pieces written in the text are tokens; decoding skips them on request.
  auto ids = (*sp)->Encode("Hi<s>there", false);
  ASSERT_TRUE(ids.ok());
  EXPECT_NE(std::find(ids->begin(), ids->end(), 1), ids->end());
  auto skipped = (*sp)->Decode(*ids, true);
  ASSERT_TRUE(skipped.ok());
  EXPECT_EQ(skipped->find("<s>"), std::string::npos);
  auto kept = (*sp)->Decode(*ids, false);
  ASSERT_TRUE(kept.ok());
  EXPECT_NE(kept->find("<s>"), std::string::npos);
  EXPECT_FALSE((*sp)->Decode(std::vector<int32_t>{600}, false).ok());
  EXPECT_FALSE((*sp)->Encode("\xff", false).ok());
}

TEST(SentencePiece, AMalformedModelFileIsAnErrorNamingIt) {
  const std::string dir = ::testing::TempDir() + "/bad_sentencepiece";
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/tokenizer.model") << "not a model";
  auto t = Tokenizer::Load(dir);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(t.status().message().find("tokenizer.model"), std::string::npos) << t.status();
}

}  // namespace
}  // namespace lattice::text
