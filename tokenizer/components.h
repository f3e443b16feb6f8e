// The pieces of a Hugging Face `tokenizer.json` pipeline (normalizers, pre-tokenizers,
// post-processors, decoders), each built from its JSON object. They follow the
// `tokenizers` library component by component; a component type or option we do not
// implement is an error at load naming it, never a silent difference.
//
// Offsets are not tracked (nothing here needs them): a split carries its text, the
// added token it already is (if any), and whether it starts the input (what Metaspace's
// prepend_scheme "first" asks).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace lattice::text {

struct Split {
  std::string text;
  int32_t token_id = -1;  // >= 0: already an added token, left alone by what follows
  bool at_start = false;  // begins at offset 0 of the original input
};

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void Normalize(std::string* text) const = 0;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Splits every split that is not an added token further (empty results dropped).
  virtual void PreTokenize(std::vector<Split>* splits) const = 0;
};

// Decoders work on token strings as the library's decode_chain does; the results are
// concatenated at the end.
class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual std::vector<std::string> DecodeChain(std::vector<std::string> tokens) const = 0;
};

// Adds the special tokens of a single sequence (TemplateProcessing and friends).
class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  virtual std::vector<int32_t> Process(std::vector<int32_t> ids) const = 0;
};

// Each returns nullptr for a JSON null. `where` names the position in tokenizer.json
// for error messages.
absl::StatusOr<std::unique_ptr<Normalizer>> MakeNormalizer(const nlohmann::json& j, const std::string& where);
absl::StatusOr<std::unique_ptr<PreTokenizer>> MakePreTokenizer(const nlohmann::json& j, const std::string& where);
absl::StatusOr<std::unique_ptr<Decoder>> MakeDecoder(const nlohmann::json& j, const std::string& where);
absl::StatusOr<std::unique_ptr<PostProcessor>> MakePostProcessor(const nlohmann::json& j, const std::string& where);

// A processor that puts `before` and `after` around the sequence.
std::unique_ptr<PostProcessor> MakeAffixPostProcessor(std::vector<int32_t> before, std::vector<int32_t> after);

// The GPT-2 byte-to-unicode table: byte b is the code point ByteToChar()[b].
const std::vector<char32_t>& ByteToChar();
// The inverse, -1 for code points that are no byte.
int CharToByte(char32_t c);
// Maps every byte of `text` to its byte-level character.
std::string ByteLevelEncode(std::string_view text);

}  // namespace lattice::text
