// A Hugging Face tokenizer: `tokenizer.json` (+ `tokenizer_config.json`) run exactly as
// the `tokenizers` library runs it, or a sentencepiece `tokenizer.model` where no
// tokenizer.json exists. Used by the coordinator, `lattice run` and the CLI; workers
// never tokenize.
//
// Thread safety: a loaded Tokenizer is immutable apart from internal caches, which are
// locked; Encode and Decode may be called from any thread at once.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace lattice::text {

// What tokenizer_config.json says beside the tokenizer itself.
struct TokenizerConfig {
  std::string tokenizer_class;
  std::optional<std::string> bos_token;
  std::optional<std::string> eos_token;
  std::optional<std::string> unk_token;
  std::optional<std::string> pad_token;
  std::optional<bool> add_bos_token;
  std::optional<bool> add_eos_token;
};

// Parses tokenizer_config.json text (token fields may be strings or {"content": ...}).
absl::StatusOr<TokenizerConfig> ParseTokenizerConfig(std::string_view json);

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // From DIR/tokenizer.json (and DIR/tokenizer_config.json if present), else
  // DIR/tokenizer.model. NOT_FOUND when DIR has neither; INVALID_ARGUMENT naming the
  // file and component when something in it is malformed or not implemented.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Load(const std::string& dir);
  // From the texts of tokenizer.json and tokenizer_config.json (the latter may be "").
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromJson(std::string_view tokenizer_json,
                                                             std::string_view tokenizer_config_json);
  // Whether DIR holds tokenizer files Load would read.
  static bool HasTokenizerFiles(const std::string& dir);

  // The ids of `text` (which must be valid UTF-8: INVALID_ARGUMENT otherwise, naming
  // the byte offset). add_special_tokens runs the post-processor (BOS and the like).
  virtual absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text, bool add_special_tokens) const = 0;
  // The text of `ids`; an id outside the vocabulary is INVALID_ARGUMENT naming it.
  // Bytes that do not form valid UTF-8 come out as U+FFFD, as the library does.
  virtual absl::StatusOr<std::string> Decode(std::span<const int32_t> ids, bool skip_special_tokens) const = 0;

  // One past the largest id (the model vocabulary and the added tokens).
  virtual int32_t vocab_size() const = 0;
  virtual std::optional<int32_t> TokenToId(std::string_view token) const = 0;
  virtual std::optional<std::string> IdToToken(int32_t id) const = 0;
  // Whether `id` is a special token (skipped by skip_special_tokens).
  virtual bool IsSpecialId(int32_t id) const = 0;

  const TokenizerConfig& config() const { return config_; }
  std::optional<int32_t> bos_token_id() const;
  std::optional<int32_t> eos_token_id() const;

 protected:
  TokenizerConfig config_;
};

}  // namespace lattice::text
