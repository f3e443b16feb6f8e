// libFuzzer target: arbitrary bytes as a prompt (valid UTF-8 or not) through a real
// tokenizer, and arbitrary ids through decoding and streaming detokenization with stop
// strings. Nothing may crash; valid text must round-trip through the stream contract.
//   clang++-14 -fsanitize=fuzzer,address ... (see tests/fuzz/README.md)
//   LATTICE_FUZZ_TOKENIZER=DIR ./tokenizer_fuzz -max_total_time=60
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "tokenizer/incremental_detokenizer.h"
#include "tokenizer/stop_strings.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace {

const lattice::text::Tokenizer& GetTokenizer() {
  static const std::unique_ptr<lattice::text::Tokenizer> tokenizer = [] {
    const char* dir = std::getenv("LATTICE_FUZZ_TOKENIZER");
    auto t = lattice::text::Tokenizer::Load(dir != nullptr ? dir : "models/stories260K");
    if (!t.ok()) std::abort();
    return std::move(*t);
  }();
  return *tokenizer;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto& t = GetTokenizer();
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto ids = t.Encode(text, size % 2 == 0);
  if (lattice::text::IsValidUtf8(text) != ids.ok()) std::abort();  // invalid text, and only it, is refused
  // The bytes as ids too: decoding anything must not crash; unknown ids are errors.
  std::vector<int32_t> raw;
  for (size_t i = 0; i + 2 <= size; i += 2) raw.push_back((data[i] << 8 | data[i + 1]) % (t.vocab_size() + 8));
  (void)t.Decode(raw, size % 3 == 0);
  const std::vector<int32_t>& stream = ids.ok() ? *ids : raw;
  lattice::text::IncrementalDetokenizer detok(t, size % 5 == 0, {});
  lattice::text::StopStringMatcher stops({std::string(text.substr(0, size % 4)), "\n\n"}, size % 2 == 1);
  std::string out;
  for (int32_t id : stream) {
    auto piece = detok.Push(id);
    if (!piece.ok()) std::abort();
    if (!lattice::text::IsValidUtf8(*piece)) std::abort();
    out += *piece;
    if (stops.Push(*piece).stop_index) break;
  }
  auto rest = detok.Finish();
  if (!rest.ok() || !lattice::text::IsValidUtf8(*rest)) std::abort();
  return 0;
}
