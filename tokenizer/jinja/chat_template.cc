// Finding, loading and rendering a model's chat template (see chat_template.h).
#include "tokenizer/jinja/chat_template.h"

#include <fstream>
#include <sstream>

#include "tokenizer/jinja/cat.h"
#include "tokenizer/jinja/status_macros.h"

namespace lattice::jinja {
namespace {

using Json = nlohmann::ordered_json;

absl::StatusOr<std::string> ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(Cat("cannot read ", path.string()));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

absl::StatusOr<Json> ReadJson(const std::filesystem::path& path) {
  JINJA_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  Json json = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) return absl::InvalidArgumentError(Cat(path.string(), ": invalid JSON"));
  return json;
}

// A special token as tokenizer_config.json writes it: "<s>" or {"content": "<s>", ...}.
std::optional<std::string> TokenText(const Json& config, const char* name) {
  auto it = config.find(name);
  if (it == config.end()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object()) {
    auto content = it->find("content");
    if (content != it->end() && content->is_string()) return content->get<std::string>();
  }
  return std::nullopt;
}

absl::Status Located(const absl::Status& status, const std::string& origin) {
  return absl::Status(status.code(), Cat(origin, ": ", status.message()));
}

// The templates a tokenizer_config.json / chat_template.json "chat_template" holds.
absl::StatusOr<ChatTemplate> FromConfigValue(const Json& value, SpecialTokens tokens,
                                             const std::string& origin) {
  if (value.is_string())
    return ChatTemplate::FromSource(value.get<std::string>(), std::move(tokens), origin);
  if (value.is_array()) {
    std::map<std::string, std::string> named;
    for (const Json& entry : value) {
      if (!entry.is_object() || !entry.contains("name") || !entry.contains("template") ||
          !entry["name"].is_string() || !entry["template"].is_string()) {
        return absl::InvalidArgumentError(
            Cat(origin, ": chat_template list entries must be {\"name\": ..., \"template\": ...}"));
      }
      named[entry["name"].get<std::string>()] = entry["template"].get<std::string>();
    }
    return ChatTemplate::FromNamed(named, std::move(tokens), origin);
  }
  return absl::InvalidArgumentError(Cat(origin, ": chat_template must be a string or a list"));
}

}  // namespace

absl::StatusOr<ChatTemplate> ChatTemplate::FromSource(std::string_view source, SpecialTokens tokens,
                                                      std::string origin) {
  return FromNamed({{"", std::string(source)}}, std::move(tokens), std::move(origin));
}

absl::StatusOr<ChatTemplate> ChatTemplate::FromNamed(
    const std::map<std::string, std::string>& named, SpecialTokens tokens, std::string origin) {
  if (named.empty()) return absl::InvalidArgumentError(Cat(origin, ": no chat template"));
  ChatTemplate out;
  for (const auto& [name, source] : named) {
    absl::StatusOr<Template> t = Template::Parse(source);
    if (!t.ok()) {
      return Located(t.status(), name.empty() ? origin : Cat(origin, " (template '", name, "')"));
    }
    out.named_.emplace(name, *std::move(t));
  }
  if (auto it = named.find(""); it != named.end()) {
    out.default_source_ = it->second;
  } else if (auto d = named.find("default"); d != named.end()) {
    out.default_source_ = d->second;
  }
  out.tokens_ = std::move(tokens);
  out.origin_ = std::move(origin);
  return out;
}

absl::StatusOr<std::string> ChatTemplate::Render(const Json& messages,
                                                 const RenderOptions& options) const {
  if (!messages.is_array()) return absl::InvalidArgumentError("messages must be a JSON array");
  // transformers' choice among named templates: the one asked for, else "tool_use" when
  // tools are passed and it exists, else "default".
  const Template* chosen = nullptr;
  if (auto single = named_.find(""); single != named_.end()) {
    chosen = &single->second;
  } else if (options.template_name) {
    auto it = named_.find(*options.template_name);
    if (it == named_.end()) {
      return absl::InvalidArgumentError(
          Cat(origin_, ": no chat template named '", *options.template_name, "'"));
    }
    chosen = &it->second;
  } else if (auto tool_use = named_.find("tool_use"); options.tools && tool_use != named_.end()) {
    chosen = &tool_use->second;
  } else if (auto d = named_.find("default"); d != named_.end()) {
    chosen = &d->second;
  } else {
    return absl::InvalidArgumentError(
        Cat(origin_, ": this model has several chat templates and none named 'default'"));
  }

  Json context = Json::object();
  const std::pair<const char*, const std::optional<std::string>*> tokens[] = {
      {"bos_token", &tokens_.bos_token},
      {"eos_token", &tokens_.eos_token},
      {"unk_token", &tokens_.unk_token},
      {"pad_token", &tokens_.pad_token}};
  for (const auto& [name, value] : tokens) {
    if (value->has_value()) context[name] = **value;
  }
  if (!options.extra_kwargs.is_null() && !options.extra_kwargs.is_object()) {
    return absl::InvalidArgumentError("chat template kwargs must be a JSON object");
  }
  if (options.extra_kwargs.is_object()) {
    for (const auto& [key, value] : options.extra_kwargs.items()) {
      if (key == "messages" || key == "tools" || key == "documents" ||
          key == "add_generation_prompt") {
        return absl::InvalidArgumentError(Cat("chat template kwargs may not set '", key, "'"));
      }
      context[key] = value;
    }
  }
  context["messages"] = messages;
  context["tools"] = options.tools ? *options.tools : Json(nullptr);
  context["documents"] = options.documents ? *options.documents : Json(nullptr);
  context["add_generation_prompt"] = options.add_generation_prompt;
  return chosen->Render(context, options.env);
}

absl::StatusOr<ChatTemplate> LoadChatTemplate(
    const std::filesystem::path& model_dir,
    const std::optional<std::filesystem::path>& override_file) {
  const std::filesystem::path config_path = model_dir / "tokenizer_config.json";
  Json config = Json::object();
  std::error_code ec;
  if (std::filesystem::exists(config_path, ec)) {
    JINJA_ASSIGN_OR_RETURN(config, ReadJson(config_path));
    if (!config.is_object())
      return absl::InvalidArgumentError(Cat(config_path.string(), ": not a JSON object"));
  }
  SpecialTokens tokens;
  tokens.bos_token = TokenText(config, "bos_token");
  tokens.eos_token = TokenText(config, "eos_token");
  tokens.unk_token = TokenText(config, "unk_token");
  tokens.pad_token = TokenText(config, "pad_token");

  if (override_file) {
    JINJA_ASSIGN_OR_RETURN(std::string source, ReadFile(*override_file));
    return ChatTemplate::FromSource(source, std::move(tokens), override_file->string());
  }
  const std::filesystem::path jinja_path = model_dir / "chat_template.jinja";
  if (std::filesystem::exists(jinja_path, ec)) {
    JINJA_ASSIGN_OR_RETURN(std::string source, ReadFile(jinja_path));
    return ChatTemplate::FromSource(source, std::move(tokens), jinja_path.string());
  }
  const std::filesystem::path json_path = model_dir / "chat_template.json";
  if (std::filesystem::exists(json_path, ec)) {
    JINJA_ASSIGN_OR_RETURN(Json json, ReadJson(json_path));
    if (!json.is_object() || !json.contains("chat_template")) {
      return absl::InvalidArgumentError(Cat(json_path.string(), ": no \"chat_template\" field"));
    }
    return FromConfigValue(json["chat_template"], std::move(tokens), json_path.string());
  }
  if (auto it = config.find("chat_template"); it != config.end() && !it->is_null()) {
    return FromConfigValue(*it, std::move(tokens), config_path.string());
  }
  return absl::NotFoundError(
      Cat("no chat template for ", model_dir.string(),
          ": no chat_template.jinja, chat_template.json or \"chat_template\" in "
          "tokenizer_config.json; pass one with --chat-template FILE"));
}

}  // namespace lattice::jinja
