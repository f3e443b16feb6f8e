// Builders of the two Tokenizer implementations (tokenizer.h has the interface).
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "tokenizer/tokenizer.h"

namespace lattice::text {

// tokenizer.json text -> the library's pipeline.
absl::StatusOr<std::unique_ptr<Tokenizer>> MakeHfTokenizer(std::string_view tokenizer_json, TokenizerConfig config);
// A sentencepiece model file -> a tokenizer backed by libsentencepiece.
absl::StatusOr<std::unique_ptr<Tokenizer>> MakeSentencePieceTokenizer(const std::string& model_path,
                                                                      TokenizerConfig config);

}  // namespace lattice::text
