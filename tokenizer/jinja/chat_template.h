// A model's chat template and how the server renders a conversation with it, as
// transformers' apply_chat_template does: the template sees `messages`, `tools`,
// `documents`, `add_generation_prompt`, the tokenizer's special tokens (bos_token,
// eos_token, ...) and any extra keyword arguments (e.g. enable_thinking).
//
// Where the template comes from (first found wins):
//   1. the --chat-template FILE given to the server (the file's text is the template);
//   2. chat_template.jinja in the model directory;
//   3. chat_template.json's "chat_template";
//   4. tokenizer_config.json's "chat_template": a string, or a list of
//      {"name", "template"} of which "tool_use" is used when tools are passed (if
//      present) and "default" otherwise.
// Special tokens always come from tokenizer_config.json (strings or {"content": ...}).
#ifndef LATTICE_TOKENIZER_JINJA_CHAT_TEMPLATE_H_
#define LATTICE_TOKENIZER_JINJA_CHAT_TEMPLATE_H_

#include <filesystem>
#include <map>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "tokenizer/jinja/errors.h"
#include "tokenizer/jinja/template.h"

namespace lattice::jinja {

struct RenderOptions {
  bool add_generation_prompt = false;
  // A JSON array of tool schemas ({"type": "function", "function": {...}}); unset renders
  // `tools` as None, as transformers does when no tools are given.
  std::optional<nlohmann::ordered_json> tools;
  // Retrieval documents (a JSON array), for templates that take them; unset is None.
  std::optional<nlohmann::ordered_json> documents;
  // More template variables (a JSON object), e.g. {"enable_thinking": false}. They
  // override special tokens of the same name.
  nlohmann::ordered_json extra_kwargs = nlohmann::ordered_json::object();
  // Picks a named template (from a tokenizer_config.json list) instead of the default rule.
  std::optional<std::string> template_name;
  // The clock strftime_now reads.
  RenderEnvironment env;
};

// The special tokens passed to the template (those set in tokenizer_config.json).
struct SpecialTokens {
  std::optional<std::string> bos_token;
  std::optional<std::string> eos_token;
  std::optional<std::string> unk_token;
  std::optional<std::string> pad_token;
};

// Immutable after loading; Render may run on many threads at once.
class ChatTemplate {
 public:
  // One template (its source text). `origin` names it in errors.
  static absl::StatusOr<ChatTemplate> FromSource(std::string_view source, SpecialTokens tokens = {},
                                                 std::string origin = "chat template");
  // Named templates, as tokenizer_config.json's list form gives them.
  static absl::StatusOr<ChatTemplate> FromNamed(const std::map<std::string, std::string>& named,
                                                SpecialTokens tokens = {},
                                                std::string origin = "chat template");

  // Renders `messages` (a JSON array of message objects). Errors are InvalidArgument;
  // when the template itself calls raise_exception(msg) the status message is exactly
  // msg and IsRaisedException(status) is true (the client sent a conversation the
  // model does not accept).
  absl::StatusOr<std::string> Render(const nlohmann::ordered_json& messages,
                                     const RenderOptions& options = {}) const;

  const SpecialTokens& special_tokens() const { return tokens_; }
  // Where the template came from (a file path), for logs and errors.
  const std::string& origin() const { return origin_; }
  // The source of the template used without tools (the "default" one when named).
  const std::string& source() const { return default_source_; }

 private:
  ChatTemplate() = default;

  std::map<std::string, Template> named_;  // "" holds a single unnamed template
  std::string default_source_;
  SpecialTokens tokens_;
  std::string origin_;
};

// Loads the chat template of the model in `model_dir` (see the top of this file).
// NotFound when there is none, naming the places looked at; InvalidArgument for files
// that do not parse, naming the file.
absl::StatusOr<ChatTemplate> LoadChatTemplate(
    const std::filesystem::path& model_dir,
    const std::optional<std::filesystem::path>& override_file = std::nullopt);

}  // namespace lattice::jinja

#endif  // LATTICE_TOKENIZER_JINJA_CHAT_TEMPLATE_H_
