// See text_flags.h.
#include "cli/text_flags.h"

#include "absl/strings/str_cat.h"
#include "cli/int_list.h"
#include "tokenizer/unicode.h"

namespace lattice {

void AddTextFlags(CLI::App& app, TextFlags& f) {
  auto* ids = app.add_option("--prompt-ids", f.prompt_ids, "Comma-separated prompt token ids; repeat for more prompts");
  auto* prompts = app.add_option("--prompt", f.prompts,
                                 "A text prompt (encoded with the tokenizer's special tokens); repeat for more");
  auto* chats = app.add_option("--chat", f.chats,
                               "A user message, rendered with the model's chat template; repeat for more chats");
  app.add_option("--system", f.system, "A system message before each --chat message");
  app.add_option("--stop", f.stop, "A string that ends generation when the output text contains it; repeatable");
  app.add_flag("--include-stop-str-in-output", f.include_stop_str_in_output,
               "Keep the stop string at the end of the output text");
  app.add_flag("--no-skip-special-tokens", f.keep_special_tokens, "Keep special tokens in the output text");
  // At least one prompt of some kind (CLI11 checks it after parsing).
  app.callback([ids, prompts, chats] {
    if (ids->count() + prompts->count() + chats->count() == 0) {
      throw CLI::RequiredError("--prompt-ids, --prompt or --chat");
    }
  });
}

absl::StatusOr<std::vector<v1::GenerateRequest>> BuildPromptRequests(const TextFlags& f) {
  // Protobuf strings must be UTF-8: say which flag is not, rather than send a request the
  // server cannot parse.
  auto check = [](const std::string& text, const char* flag) -> absl::Status {
    if (const size_t bad = text::ValidUtf8Prefix(text); bad != text.size()) {
      return absl::InvalidArgumentError(absl::StrCat(flag, " is not valid UTF-8 (at byte ", bad, ")"));
    }
    return absl::OkStatus();
  };
  for (const auto& p : f.prompts) {
    if (auto s = check(p, "--prompt"); !s.ok()) return s;
  }
  for (const auto& c : f.chats) {
    if (auto s = check(c, "--chat"); !s.ok()) return s;
  }
  for (const auto& stop : f.stop) {
    if (auto s = check(stop, "--stop"); !s.ok()) return s;
  }
  if (auto s = check(f.system, "--system"); !s.ok()) return s;
  std::vector<v1::GenerateRequest> requests;
  auto add_text_fields = [&](v1::GenerateRequest& r) {
    for (const auto& s : f.stop) r.add_stop(s);
    r.set_include_stop_str_in_output(f.include_stop_str_in_output);
    if (f.keep_special_tokens) r.set_skip_special_tokens(false);
  };
  for (const std::string& text : f.prompt_ids) {
    v1::GenerateRequest r;
    // An empty list is sent as an empty prompt: rejecting it is the server's job.
    if (!text.empty()) {
      absl::StatusOr<std::vector<int32_t>> ids = ParseIntList(text, "--prompt-ids");
      if (!ids.ok()) return ids.status();
      r.mutable_prompt_ids()->Add(ids->begin(), ids->end());
    }
    add_text_fields(r);
    requests.push_back(std::move(r));
  }
  for (const std::string& text : f.prompts) {
    v1::GenerateRequest r;
    r.set_prompt(text);
    add_text_fields(r);
    requests.push_back(std::move(r));
  }
  for (const std::string& text : f.chats) {
    v1::GenerateRequest r;
    if (!f.system.empty()) {
      v1::ChatMessage* system = r.add_messages();
      system->set_role("system");
      system->set_content(f.system);
    }
    v1::ChatMessage* user = r.add_messages();
    user->set_role("user");
    user->set_content(text);
    add_text_fields(r);
    requests.push_back(std::move(r));
  }
  return requests;
}

}  // namespace lattice
