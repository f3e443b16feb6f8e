// See text_service.h.
#include "coordinator/text_service.h"

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "tokenizer/unicode.h"

namespace lattice {
namespace {

absl::StatusOr<nlohmann::ordered_json> ParseJsonField(const std::string& text, const std::string& field,
                                                      bool want_object) {
  nlohmann::ordered_json j = nlohmann::ordered_json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(field, " is not valid JSON"));
  if (want_object && !j.is_object()) return absl::InvalidArgumentError(absl::StrCat(field, " must be a JSON object"));
  if (!want_object && !j.is_array()) return absl::InvalidArgumentError(absl::StrCat(field, " must be a JSON array"));
  return j;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TextService>> TextService::Create(const TextServiceOptions& options) {
  std::unique_ptr<TextService> service(new TextService());
  service->options_ = options;
  service->pool_ = std::make_unique<TextPool>(options.num_threads);
  if (!options.tokenizer_dir.empty() && text::Tokenizer::HasTokenizerFiles(options.tokenizer_dir)) {
    auto tokenizer = text::Tokenizer::Load(options.tokenizer_dir);
    if (!tokenizer.ok()) return tokenizer.status();
    service->tokenizer_ = std::move(*tokenizer);
  }
  if (!options.tokenizer_dir.empty() || !options.chat_template_file.empty()) {
    auto chat = jinja::LoadChatTemplate(
        options.tokenizer_dir, options.chat_template_file.empty()
                                   ? std::nullopt
                                   : std::optional<std::filesystem::path>(options.chat_template_file));
    if (chat.ok()) {
      service->chat_template_ = std::move(*chat);
    } else if (!absl::IsNotFound(chat.status()) || !options.chat_template_file.empty()) {
      return chat.status();
    }
  }
  return service;
}

absl::Status TextService::CheckRequest(const v1::GenerateRequest& r) const {
  const int kinds = (r.prompt_ids_size() > 0) + !r.prompt().empty() + (r.messages_size() > 0);
  if (kinds == 0) {
    return absl::InvalidArgumentError("the prompt is empty: set one of prompt_ids, prompt and messages");
  }
  if (kinds > 1) return absl::InvalidArgumentError("set only one of prompt_ids, prompt and messages");
  if ((!r.prompt().empty() || r.messages_size() > 0) && !has_tokenizer()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the model has no tokenizer (tokenizer.json or tokenizer.model in ", options_.tokenizer_dir,
                     "): send prompt_ids"));
  }
  if (r.messages_size() > 0 && !has_chat_template()) {
    return absl::FailedPreconditionError(
        "the model has no chat template (tokenizer_config.json chat_template, chat_template.jinja or "
        "--chat-template): send a prompt");
  }
  if (r.stop_size() > 0 && !has_tokenizer()) {
    return absl::FailedPreconditionError("stop strings need a tokenizer, and the model has none");
  }
  if (r.stop_size() > options_.max_stop_strings) {
    return absl::InvalidArgumentError(
        absl::StrCat("stop has ", r.stop_size(), " strings, more than the limit of ", options_.max_stop_strings));
  }
  for (int i = 0; i < r.stop_size(); ++i) {
    if (r.stop(i).empty()) return absl::InvalidArgumentError(absl::StrCat("stop[", i, "] is empty"));
    if (static_cast<int32_t>(r.stop(i).size()) > options_.max_stop_string_bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("stop[", i, "] is longer than ", options_.max_stop_string_bytes, " bytes"));
    }
  }
  for (int i = 0; i < r.messages_size(); ++i) {
    if (r.messages(i).role().empty()) return absl::InvalidArgumentError(absl::StrCat("messages[", i, "].role is empty"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> TextService::RenderChat(const v1::GenerateRequest& r) const {
  if (!chat_template_) return absl::FailedPreconditionError("the model has no chat template");
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  for (int i = 0; i < r.messages_size(); ++i) {
    const v1::ChatMessage& m = r.messages(i);
    nlohmann::ordered_json message = {{"role", m.role()}, {"content", m.content()}};
    if (!m.extra_json().empty()) {
      auto extra = ParseJsonField(m.extra_json(), absl::StrCat("messages[", i, "].extra_json"), true);
      if (!extra.ok()) return extra.status();
      for (auto& [key, value] : extra->items()) message[key] = value;
    }
    messages.push_back(std::move(message));
  }
  jinja::RenderOptions options;
  options.add_generation_prompt = !r.chat().has_add_generation_prompt() || r.chat().add_generation_prompt();
  if (!r.chat().tools_json().empty()) {
    auto tools = ParseJsonField(r.chat().tools_json(), "chat.tools_json", false);
    if (!tools.ok()) return tools.status();
    options.tools = std::move(*tools);
  }
  if (!r.chat().template_kwargs_json().empty()) {
    auto kwargs = ParseJsonField(r.chat().template_kwargs_json(), "chat.template_kwargs_json", true);
    if (!kwargs.ok()) return kwargs.status();
    options.extra_kwargs = std::move(*kwargs);
  }
  auto rendered = chat_template_->Render(messages, options);
  if (!rendered.ok()) {
    // The template rejected the conversation (raise_exception): its own words.
    if (jinja::IsRaisedException(rendered.status())) return absl::InvalidArgumentError(rendered.status().message());
    return absl::InvalidArgumentError(absl::StrCat("chat template: ", rendered.status().message()));
  }
  return rendered;
}

absl::StatusOr<std::vector<int32_t>> TextService::PromptIds(const v1::GenerateRequest& r) const {
  if (r.prompt_ids_size() > 0) return std::vector<int32_t>(r.prompt_ids().begin(), r.prompt_ids().end());
  std::string text;
  bool add_special_tokens = true;
  if (r.messages_size() > 0) {
    auto rendered = RenderChat(r);
    if (!rendered.ok()) return rendered.status();
    text = std::move(*rendered);
    add_special_tokens = false;  // the template wrote them
  } else {
    text = r.prompt();
  }
  auto ids = tokenizer_->Encode(text, add_special_tokens);
  if (!ids.ok()) return absl::InvalidArgumentError(absl::StrCat("prompt: ", ids.status().message()));
  if (ids->empty()) return absl::InvalidArgumentError("the prompt encodes to no tokens");
  return ids;
}

OutputText::OutputText(const text::Tokenizer& tokenizer, std::span<const int32_t> prompt_ids,
                       const v1::GenerateRequest& request)
    : detokenizer_(tokenizer, !request.has_skip_special_tokens() || request.skip_special_tokens(), prompt_ids),
      stops_(std::vector<std::string>(request.stop().begin(), request.stop().end()),
             request.include_stop_str_in_output()),
      min_tokens_(request.sampling().min_tokens()),
      include_stop_(request.include_stop_str_in_output()) {}

absl::StatusOr<OutputText::Piece> OutputText::Push(int32_t id, int32_t num_output_tokens, bool stops_sequence) {
  num_output_tokens_ = num_output_tokens;
  Piece piece;
  if (stops_sequence && !include_stop_) return piece;
  auto decoded = detokenizer_.Push(id);
  if (!decoded.ok()) return decoded.status();
  auto result = stops_.Push(*decoded, num_output_tokens > min_tokens_);
  piece.text = std::move(result.text);
  if (result.stop_index) piece.stop_string = stops_.stops()[*result.stop_index];
  return piece;
}

absl::StatusOr<OutputText::Piece> OutputText::Finish() {
  auto rest = detokenizer_.Finish();
  if (!rest.ok()) return rest.status();
  // Held-back text may still complete a stop string: it ends the output there.
  auto result = stops_.Push(*rest, num_output_tokens_ > min_tokens_);
  Piece piece;
  piece.text = std::move(result.text);
  if (result.stop_index) {
    piece.stop_string = stops_.stops()[*result.stop_index];
  } else {
    piece.text += stops_.Flush();
  }
  return piece;
}

}  // namespace lattice
