// Bounded JSON parsing and rendering (see json_util.h).
#include "worker/json_util.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace lattice {
namespace {

using json = nlohmann::json;

constexpr size_t kMaxRenderChars = 60;

void Render(const json& value, std::string& out, int depth) {
  if (!value.is_structured()) {
    const std::string text = value.dump(-1, ' ', false, json::error_handler_t::replace);
    out += text.size() > kMaxRenderChars ? text.substr(0, kMaxRenderChars) + "..." : text;
    return;
  }
  if (depth >= 3) {
    out += value.is_array() ? "[...]" : "{...}";
    return;
  }
  out += value.is_array() ? '[' : '{';
  for (auto it = value.begin(); it != value.end(); ++it) {
    if (it != value.begin()) out += ',';
    if (out.size() > kMaxRenderChars) {
      out += "...";
      break;
    }
    if (value.is_object()) {
      out += json(it.key()).dump(-1, ' ', false, json::error_handler_t::replace) + ":";
    }
    Render(*it, out, depth + 1);
  }
  out += value.is_array() ? ']' : '}';
}

struct TooDeep {};

}  // namespace

std::string DescribeJson(const json& value) {
  std::string text = absl::StrCat(value.type_name(), " ");
  Render(value, text, 0);
  return text;
}

absl::StatusOr<json> ParseJson(const std::string& what, const char* begin, const char* end,
                               const json::parser_callback_t& on_event) {
  json::parser_callback_t callback = [&](int depth, json::parse_event_t event, json& parsed) {
    if (depth > kMaxJsonDepth) throw TooDeep{};  // aborts the parse; caught below
    return on_event ? on_event(depth, event, parsed) : true;
  };
  try {
    json parsed = json::parse(begin, end, callback);
    return absl::StatusOr<json>(std::move(parsed));
  } catch (const TooDeep&) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": JSON nests deeper than ", kMaxJsonDepth, " levels"));
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": not valid JSON: ", e.what()));
  }
}

absl::StatusOr<json> ReadJsonFile(const std::string& path, size_t max_bytes) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return absl::NotFoundError(absl::StrCat(path, ": no such file"));
  }
  if (!std::filesystem::is_regular_file(path, ec)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  }
  const auto size = std::filesystem::file_size(path, ec);
  if (ec || size > max_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": unreadable or larger than ", max_bytes, " bytes"));
  }
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  if (!in) return absl::InvalidArgumentError(absl::StrCat(path, ": cannot read"));
  const std::string text = buffer.str();
  return ParseJson(path, text.data(), text.data() + text.size());
}

}  // namespace lattice
