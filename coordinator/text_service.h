// TextService: the coordinator's text layer, below every front end (gRPC today, HTTP
// next): it owns the model's tokenizer and chat template (either may be missing: the
// model then serves ids only), turns a request's prompt (ids, text or chat messages)
// into ids, and makes each sequence's OutputText. Its methods are const and may be
// called from any thread; the heavy ones run on its TextPool, never on the scheduler
// thread.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/text_pool.h"
#include "lattice/v1/lattice.pb.h"
#include "tokenizer/incremental_detokenizer.h"
#include "tokenizer/jinja/chat_template.h"
#include "tokenizer/stop_strings.h"
#include "tokenizer/tokenizer.h"

namespace lattice {

struct TextServiceOptions {
  std::string tokenizer_dir;       // where tokenizer.json / tokenizer.model live ("" = none)
  std::string chat_template_file;  // --chat-template: overrides the model's template
  int num_threads = 2;             // TextPool threads
  int32_t max_stop_strings = 16;
  int32_t max_stop_string_bytes = 1024;
};

class TextService {
 public:
  // A missing tokenizer is not an error (ids only); a malformed one, or an unreadable
  // --chat-template file, is.
  static absl::StatusOr<std::unique_ptr<TextService>> Create(const TextServiceOptions& options);

  bool has_tokenizer() const { return tokenizer_ != nullptr; }
  bool has_chat_template() const { return chat_template_.has_value(); }
  const text::Tokenizer* tokenizer() const { return tokenizer_.get(); }
  TextPool& pool() const { return *pool_; }

  // Checks the prompt and text fields without doing the work: exactly one prompt kind,
  // what text needs is present, stop strings within limits. INVALID_ARGUMENT or
  // FAILED_PRECONDITION naming the field.
  absl::Status CheckRequest(const v1::GenerateRequest& request) const;
  // The prompt's ids: prompt_ids as given, text encoded with special tokens, messages
  // rendered by the chat template and encoded without. Runs the template and the
  // tokenizer: call it on the pool.
  absl::StatusOr<std::vector<int32_t>> PromptIds(const v1::GenerateRequest& request) const;
  // The chat template's text for `request.messages` (what PromptIds encodes).
  absl::StatusOr<std::string> RenderChat(const v1::GenerateRequest& request) const;

 private:
  TextService() = default;
  std::unique_ptr<text::Tokenizer> tokenizer_;
  std::optional<jinja::ChatTemplate> chat_template_;
  std::unique_ptr<TextPool> pool_;
  TextServiceOptions options_;
};

// The output text of one sequence: detokenized token by token, cut at the first stop
// string. One owner at a time (the call's text task); not thread-safe.
class OutputText {
 public:
  OutputText(const text::Tokenizer& tokenizer, std::span<const int32_t> prompt_ids,
             const v1::GenerateRequest& request);

  struct Piece {
    std::string text;
    std::optional<std::string> stop_string;  // set: the sequence ends at this token
  };
  // The next output token; `num_output_tokens` counts it. Stop strings count only from
  // min_tokens on (vLLM). `stops_sequence`: the token is the eos or stop token that ends
  // the sequence; as in vLLM its text is left out unless include_stop_str_in_output.
  absl::StatusOr<Piece> Push(int32_t id, int32_t num_output_tokens, bool stops_sequence = false);
  // The end of the sequence (not by a stop string): the text held back, which may still
  // complete a stop string.
  absl::StatusOr<Piece> Finish();

 private:
  text::IncrementalDetokenizer detokenizer_;
  text::StopStringMatcher stops_;
  int32_t min_tokens_;
  bool include_stop_;
  int32_t num_output_tokens_ = 0;
};

}  // namespace lattice
