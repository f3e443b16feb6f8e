// Comma-separated integer flags (see int_list.h).
#include "cli/int_list.h"

#include <charconv>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace lattice {

absl::StatusOr<std::vector<int32_t>> ParseIntList(const std::string& text, const char* flag) {
  std::vector<int32_t> values;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
    while (!part.empty() && part.back() == ' ') part.remove_suffix(1);
    int32_t value = 0;
    const auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), value);
    if (part.empty() || ec != std::errc() || end != part.data() + part.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat(flag, ": '", std::string(part), "' in \"", text, "\" is not a token id"));
    }
    values.push_back(value);
  }
  return values;
}

}  // namespace lattice
