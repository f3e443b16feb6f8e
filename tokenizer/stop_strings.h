// Stop strings matched on the detokenized text of one sequence, across token
// boundaries. Text is released as soon as no stop string can begin in it: only the
// longest tail that is a prefix of some stop string is held back. The first stop
// string to occur (the earliest start; at equal starts the one listed first) ends the
// sequence, and the output ends before it, or after it with include_in_output
// (vLLM's include_stop_str_in_output).
//
// One owner; not thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lattice::text {

class StopStringMatcher {
 public:
  StopStringMatcher(std::vector<std::string> stops, bool include_in_output);

  struct Result {
    std::string text;                 // released now
    std::optional<size_t> stop_index;  // set when a stop string matched: the sequence ends
  };
  // Adds newly decoded text. With `check` false (vLLM: before min_tokens) no stop is
  // declared, but text that could start one is still held back.
  Result Push(std::string_view text, bool check = true);
  // The sequence ended without a stop string: the held-back tail.
  std::string Flush();

  bool empty() const { return stops_.empty(); }
  const std::vector<std::string>& stops() const { return stops_; }

 private:
  std::vector<std::string> stops_;
  bool include_in_output_;
  std::string pending_;  // held back: a tail that may still become a stop string
  // pending_[0, unchecked_) arrived before checking began: a match must end past it
  // (vLLM looks back only len(stop) - 1 characters before the first checked text).
  size_t unchecked_ = 0;
  bool stopped_ = false;
};

}  // namespace lattice::text
