// See stop_strings.h.
#include "tokenizer/stop_strings.h"

#include <algorithm>

namespace lattice::text {

StopStringMatcher::StopStringMatcher(std::vector<std::string> stops, bool include_in_output)
    : include_in_output_(include_in_output) {
  for (auto& s : stops) {
    if (!s.empty()) stops_.push_back(std::move(s));
  }
}

StopStringMatcher::Result StopStringMatcher::Push(std::string_view text, bool check) {
  Result result;
  if (stopped_) return result;
  pending_.append(text);
  if (stops_.empty()) {
    result.text = std::move(pending_);
    pending_.clear();
    return result;
  }
  if (!check) unchecked_ = pending_.size();
  if (check) {
    size_t best = std::string::npos;
    for (size_t i = 0; i < stops_.size(); ++i) {
      const size_t len = stops_[i].size();
      const size_t from = unchecked_ + 1 > len ? unchecked_ + 1 - len : 0;
      const size_t at = pending_.find(stops_[i], from);
      if (at != std::string::npos && (!result.stop_index || at < best)) {
        best = at;
        result.stop_index = i;
      }
    }
    if (result.stop_index) {
      const size_t end = include_in_output_ ? best + stops_[*result.stop_index].size() : best;
      result.text = pending_.substr(0, end);
      pending_.clear();
      stopped_ = true;
      return result;
    }
  }
  // Hold back the longest tail of pending_ that is a proper prefix of a stop string.
  size_t hold = 0;
  for (const auto& stop : stops_) {
    for (size_t len = std::min(stop.size() - 1, pending_.size()); len > hold; --len) {
      if (pending_.compare(pending_.size() - len, len, stop, 0, len) == 0) {
        hold = len;
        break;
      }
    }
  }
  const size_t released = pending_.size() - hold;
  result.text = pending_.substr(0, released);
  pending_.erase(0, released);
  unchecked_ = check ? 0 : unchecked_ - std::min(unchecked_, released);
  return result;
}

std::string StopStringMatcher::Flush() {
  std::string out = std::move(pending_);
  pending_.clear();
  return out;
}

}  // namespace lattice::text
