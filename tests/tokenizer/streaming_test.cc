// Streaming detokenization and stop strings. For every corpus case of every real
// tokenizer, and for random id sequences full of byte-fallback pieces and partial
// UTF-8, the pieces emitted token by token concatenate to the full decode and none of
// them is invalid UTF-8 (so none ends inside a character).
#include "tests/tokenizer/tokenizer_test_util.h"
#include "tokenizer/incremental_detokenizer.h"
#include "tokenizer/stop_strings.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace lattice::text {
namespace {

using testing::FixtureDir;
using testing::ReadJson;
using testing::TokenizerDir;

// Streams `ids` after `context`; checks every piece and the concatenation.
void CheckStream(const Tokenizer& t, std::span<const int32_t> context, std::span<const int32_t> ids, bool skip,
                 const std::string& what) {
  IncrementalDetokenizer detok(t, skip, context);
  std::string streamed;
  for (int32_t id : ids) {
    auto piece = detok.Push(id);
    ASSERT_TRUE(piece.ok()) << piece.status() << " " << what;
    ASSERT_TRUE(IsValidUtf8(*piece)) << what;
    streamed += *piece;
  }
  auto rest = detok.Finish();
  ASSERT_TRUE(rest.ok()) << rest.status() << " " << what;
  ASSERT_TRUE(IsValidUtf8(*rest)) << what;
  streamed += *rest;
  auto full = IncrementalDetokenizer::FullDecode(t, skip, context, ids);
  ASSERT_TRUE(full.ok());
  ASSERT_EQ(streamed, *full) << what;
  if (context.empty()) {
    ASSERT_EQ(streamed, *t.Decode(ids, skip)) << what;
  }
}

class Streaming : public ::testing::TestWithParam<std::string> {};

TEST_P(Streaming, PiecesConcatenateToTheFullDecode) {
  const std::string name = GetParam();
  LATTICE_REQUIRE_TOKENIZER(name);
  auto tokenizer = Tokenizer::Load(TokenizerDir(name));
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  const auto expected = ReadJson(FixtureDir() + "/expected_" + name + ".json");
  int n = 0;
  for (const auto& c : expected["cases"]) {
    const auto ids = c["ids"].get<std::vector<int32_t>>();
    const std::string what = name + " case " + std::to_string(n++);
    for (bool skip : {false, true}) {
      CheckStream(**tokenizer, {}, ids, skip, what);
      // A prompt as context, the rest as the generated tokens.
      const size_t split = ids.size() / 2;
      CheckStream(**tokenizer, std::span<const int32_t>(ids.data(), split),
                  std::span<const int32_t>(ids.data() + split, ids.size() - split), skip, what + " (context)");
    }
  }
  for (const auto& r : expected["random"]) {
    const auto ids = r["ids"].get<std::vector<int32_t>>();
    for (bool skip : {false, true}) {
      CheckStream(**tokenizer, {}, ids, skip, name + " random " + r["ids"].dump());
      CheckStream(**tokenizer, std::span<const int32_t>(ids.data(), ids.size() / 3),
                  std::span<const int32_t>(ids.data() + ids.size() / 3, ids.size() - ids.size() / 3), skip,
                  name + " random (context) " + r["ids"].dump());
    }
  }
}

INSTANTIATE_TEST_SUITE_P(RealTokenizers, Streaming, ::testing::Values("llama3", "qwen3", "llama2", "stories260K"),
                         [](const auto& info) { return info.param; });

TEST(Streaming, MultiByteCharacterIsHeldUntilComplete) {
  LATTICE_REQUIRE_TOKENIZER("llama2");
  auto t = Tokenizer::Load(TokenizerDir("llama2"));
  ASSERT_TRUE(t.ok());
  // A character Llama 2 spells as byte-fallback pieces.
  auto ids = (*t)->Encode("\xF0\x9F\xAB\xA0", false);  // U+1FAE0
  ASSERT_TRUE(ids.ok());
  ASSERT_GE(ids->size(), 4u);
  IncrementalDetokenizer detok(**t, false, {});
  std::string out;
  for (size_t i = 0; i < ids->size(); ++i) {
    auto piece = detok.Push((*ids)[i]);
    ASSERT_TRUE(piece.ok());
    out += *piece;
  }
  EXPECT_EQ(out, "");  // the last piece is a byte piece: still held
  auto rest = detok.Finish();
  ASSERT_TRUE(rest.ok());
  EXPECT_EQ(out + *rest, "\xF0\x9F\xAB\xA0");  // Strip drops the prepended space
}

TEST(Streaming, LeadingSpaceOfTheFirstNewTokenComesFromContext) {
  LATTICE_REQUIRE_TOKENIZER("llama2");
  auto t = Tokenizer::Load(TokenizerDir("llama2"));
  ASSERT_TRUE(t.ok());
  auto prompt = (*t)->Encode("Once upon a", true);
  auto rest = (*t)->Encode("Once upon a time there", false);
  ASSERT_TRUE(prompt.ok() && rest.ok());
  std::vector<int32_t> generated(rest->begin() + static_cast<std::ptrdiff_t>(prompt->size() - 1), rest->end());
  IncrementalDetokenizer detok(**t, true, *prompt);
  std::string out;
  for (int32_t id : generated) out += *detok.Push(id);
  out += *detok.Finish();
  EXPECT_EQ(out, " time there");
}

StopStringMatcher::Result Feed(StopStringMatcher& m, std::initializer_list<std::string_view> pieces,
                               std::string* released) {
  StopStringMatcher::Result last;
  for (auto p : pieces) {
    last = m.Push(p);
    *released += last.text;
    if (last.stop_index) break;
  }
  return last;
}

TEST(StopStrings, MatchesAcrossPiecesAndHoldsOnlyPossiblePrefixes) {
  StopStringMatcher m({"the end"}, false);
  auto r = m.Push("and so th");
  EXPECT_EQ(r.text, "and so ");  // "th" may begin "the end"
  EXPECT_FALSE(r.stop_index);
  r = m.Push("e e");
  EXPECT_EQ(r.text, "");
  r = m.Push("nd. More");
  ASSERT_TRUE(r.stop_index);
  EXPECT_EQ(*r.stop_index, 0u);
  EXPECT_EQ(r.text, "");
  EXPECT_EQ(m.Push("ignored").text, "");
}

TEST(StopStrings, HeldTextIsReleasedOnceItCannotMatch) {
  StopStringMatcher m({"STOP"}, false);
  EXPECT_EQ(m.Push("ST").text, "");
  EXPECT_EQ(m.Push("ART").text, "START");
  EXPECT_EQ(m.Push("S").text, "");
  EXPECT_EQ(m.Flush(), "S");
}

TEST(StopStrings, IncludeInOutput) {
  StopStringMatcher m({"</answer>"}, true);
  std::string out;
  auto r = Feed(m, {"42</ans", "wer> trailing"}, &out);
  ASSERT_TRUE(r.stop_index);
  EXPECT_EQ(out, "42</answer>");
}

TEST(StopStrings, OverlappingStopsTakeTheEarliestStart) {
  StopStringMatcher m({"bcd", "abc"}, false);
  std::string out;
  auto r = Feed(m, {"xa", "bcd"}, &out);
  ASSERT_TRUE(r.stop_index);
  EXPECT_EQ(*r.stop_index, 1u);  // "abc" starts first
  EXPECT_EQ(out, "x");
}

TEST(StopStrings, SameStartPrefersTheFirstListed) {
  StopStringMatcher m({"ab", "abc"}, true);
  std::string out;
  auto r = Feed(m, {"zabc"}, &out);
  ASSERT_TRUE(r.stop_index);
  EXPECT_EQ(*r.stop_index, 0u);
  EXPECT_EQ(out, "zab");
}

TEST(StopStrings, StopAtTheVeryEnd) {
  StopStringMatcher m({"\n\n"}, false);
  std::string out;
  auto r = Feed(m, {"line", "\n", "\n"}, &out);
  ASSERT_TRUE(r.stop_index);
  EXPECT_EQ(out, "line");
}

TEST(StopStrings, NotCheckedBeforeMinTokensButStillHeld) {
  StopStringMatcher m({"x"}, false);
  auto r = m.Push("axb", /*check=*/false);
  EXPECT_FALSE(r.stop_index);
  EXPECT_EQ(r.text, "axb");
  r = m.Push("cx", true);
  ASSERT_TRUE(r.stop_index);
  EXPECT_EQ(r.text, "c");
}

TEST(StopStrings, AStopWhollyBeforeMinTokensDoesNotFire) {
  StopStringMatcher m({"abc", "b"}, false);
  auto r = m.Push("ab", /*check=*/false);
  EXPECT_EQ(r.text, "");  // "ab" may begin "abc"
  r = m.Push("x", true);
  EXPECT_FALSE(r.stop_index);  // the "b" lies wholly in text from before min_tokens
  EXPECT_EQ(r.text, "abx");
  r = m.Push("b", true);
  ASSERT_TRUE(r.stop_index);
  EXPECT_EQ(*r.stop_index, 1u);
}

TEST(StopStrings, MultiByteStopsNeverSplitACharacter) {
  StopStringMatcher m({"你好"}, false);
  auto r = m.Push("说你");
  EXPECT_EQ(r.text, "说");
  EXPECT_TRUE(IsValidUtf8(r.text));
  r = m.Push("们");
  EXPECT_EQ(r.text, "你们");
}

}  // namespace
}  // namespace lattice::text
