// See text_commands.h.
#include "cli/text_commands.h"

#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "tokenizer/jinja/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace lattice {
namespace {

std::unique_ptr<text::Tokenizer> LoadOrExit(const std::string& model) {
  auto tokenizer = text::Tokenizer::Load(model);
  if (!tokenizer.ok()) {
    std::cerr << "error: " << tokenizer.status().message() << "\n";
    return nullptr;
  }
  return std::move(*tokenizer);
}

}  // namespace

void AddTokenizeCommandFlags(CLI::App& app, TokenizeCommandOptions& options) {
  app.add_option("--model", options.model, "Model directory (only its tokenizer files are read)")->required();
  app.add_flag("--add-special-tokens", options.add_special_tokens,
               "Add the tokenizer's special tokens (BOS, ...) as a text prompt gets them");
  app.add_flag("--json", options.json, "Print {\"ids\": [...], \"tokens\": [...]} objects instead of id arrays");
  app.footer("Reads one JSON string per line on stdin; prints one JSON array of ids per line.");
}

int TokenizeCommand(const TokenizeCommandOptions& options) {
  auto tokenizer = LoadOrExit(options.model);
  if (tokenizer == nullptr) return 2;
  std::string line;
  for (int line_number = 1; std::getline(std::cin, line); ++line_number) {
    nlohmann::json input = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!input.is_string()) {
      std::cerr << "error: line " << line_number << ": expected a JSON string\n";
      return 2;
    }
    auto ids = tokenizer->Encode(input.get<std::string>(), options.add_special_tokens);
    if (!ids.ok()) {
      std::cerr << "error: line " << line_number << ": " << ids.status().message() << "\n";
      return 2;
    }
    if (options.json) {
      nlohmann::json tokens = nlohmann::json::array();
      for (int32_t id : *ids) tokens.push_back(tokenizer->IdToToken(id).value_or(""));
      std::cout << nlohmann::json{{"ids", *ids}, {"tokens", tokens}}.dump(-1, ' ', false,
                                                                          nlohmann::json::error_handler_t::replace)
                << "\n";
    } else {
      std::cout << nlohmann::json(*ids).dump() << "\n";
    }
  }
  return 0;
}

void AddDetokenizeCommandFlags(CLI::App& app, DetokenizeCommandOptions& options) {
  app.add_option("--model", options.model, "Model directory (only its tokenizer files are read)")->required();
  app.add_flag("--skip-special-tokens", options.skip_special_tokens, "Leave special tokens out of the text");
  app.footer("Reads one JSON array of ids per line on stdin; prints one JSON string per line.");
}

int DetokenizeCommand(const DetokenizeCommandOptions& options) {
  auto tokenizer = LoadOrExit(options.model);
  if (tokenizer == nullptr) return 2;
  std::string line;
  for (int line_number = 1; std::getline(std::cin, line); ++line_number) {
    nlohmann::json input = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    bool ok = input.is_array();
    std::vector<int32_t> ids;
    for (const auto& v : ok ? input : nlohmann::json::array()) {
      if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > INT32_MAX) {
        ok = false;
        break;
      }
      ids.push_back(v.get<int32_t>());
    }
    if (!ok) {
      std::cerr << "error: line " << line_number << ": expected a JSON array of token ids\n";
      return 2;
    }
    auto text = tokenizer->Decode(ids, options.skip_special_tokens);
    if (!text.ok()) {
      std::cerr << "error: line " << line_number << ": " << text.status().message() << "\n";
      return 2;
    }
    std::cout << nlohmann::json(*text).dump() << "\n";
  }
  return 0;
}

namespace {

absl::StatusOr<nlohmann::ordered_json> ReadJsonFile(const std::string& path, const char* flag) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(flag, ": cannot read ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  nlohmann::ordered_json j = nlohmann::ordered_json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(flag, ": ", path, " is not valid JSON"));
  return j;
}

}  // namespace

void AddChatTemplateCommandFlags(CLI::App& app, ChatTemplateCommandOptions& o) {
  app.add_option("--model", o.model, "Model directory (its tokenizer_config.json / chat_template.jinja)")->required();
  app.add_option("--messages", o.messages_file, "A JSON file holding the array of messages")->required();
  app.add_flag("--add-generation-prompt", o.add_generation_prompt, "End with the start of the assistant's turn");
  app.add_option("--chat-template", o.chat_template, "A Jinja file that replaces the model's chat template");
  app.add_option("--tools", o.tools_file, "A JSON file holding the array of tools");
  app.add_option("--kwargs", o.kwargs, "A JSON object of extra template variables, e.g. '{\"enable_thinking\": false}'");
}

int ChatTemplateCommand(const ChatTemplateCommandOptions& o) {
  auto fail = [](const absl::Status& status) {
    std::cerr << "error: " << status.message() << "\n";
    return 2;
  };
  auto chat = jinja::LoadChatTemplate(o.model, o.chat_template.empty()
                                                   ? std::nullopt
                                                   : std::optional<std::filesystem::path>(o.chat_template));
  if (!chat.ok()) return fail(chat.status());
  auto messages = ReadJsonFile(o.messages_file, "--messages");
  if (!messages.ok()) return fail(messages.status());
  if (!messages->is_array()) return fail(absl::InvalidArgumentError("--messages: expected a JSON array"));
  jinja::RenderOptions options;
  options.add_generation_prompt = o.add_generation_prompt;
  if (!o.tools_file.empty()) {
    auto tools = ReadJsonFile(o.tools_file, "--tools");
    if (!tools.ok()) return fail(tools.status());
    options.tools = std::move(*tools);
  }
  if (!o.kwargs.empty()) {
    nlohmann::ordered_json kwargs = nlohmann::ordered_json::parse(o.kwargs, nullptr, /*allow_exceptions=*/false);
    if (!kwargs.is_object()) return fail(absl::InvalidArgumentError("--kwargs: expected a JSON object"));
    options.extra_kwargs = std::move(kwargs);
  }
  auto rendered = chat->Render(*messages, options);
  if (!rendered.ok()) return fail(rendered.status());
  std::cout << *rendered;
  return 0;
}

}  // namespace lattice
