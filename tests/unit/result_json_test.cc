// The per-prompt JSON line shared by `lattice run --json` and `lattice generate --json`:
// exact text, since e2e tests and tests/e2e/python_client.py compare lines as strings.
#include "cli/result_json.h"

#include <gtest/gtest.h>

namespace lattice {
namespace {

TEST(ResultJsonTest, PrintsKeysSortedAndCompact) {
  const std::vector<TokenLogprobs> logprobs = {{{5, -0.25f}, {7, -1.5f}}, {{9, -0.125f}}};
  EXPECT_EQ(ResultToJson({1, 2, 3}, {5, 9}, logprobs, FinishReason::kStop).dump(),
            R"({"finish_reason":"stop","logprobs":[[[5,-0.25],[7,-1.5]],[[9,-0.125]]],)"
            R"("output_ids":[5,9],"prompt_ids":[1,2,3]})");
}

TEST(ResultJsonTest, NoLogprobsIsAnEmptyList) {
  EXPECT_EQ(ResultToJson({4}, {6, 6, 6}, {}, FinishReason::kLength).dump(),
            R"({"finish_reason":"length","logprobs":[],"output_ids":[6,6,6],"prompt_ids":[4]})");
}

TEST(ResultJsonTest, EmptyPromptAndOutput) {
  EXPECT_EQ(ResultToJson({}, {}, {}, FinishReason::kLength).dump(),
            R"({"finish_reason":"length","logprobs":[],"output_ids":[],"prompt_ids":[]})");
}

// A logprob is a float widened to double and printed shortest-round-trip, which is also
// what Python prints for a proto float field; printing the float's own shortest digits
// ("-0.1") would differ.
TEST(ResultJsonTest, LogprobIsTheFloatWidenedToDouble) {
  EXPECT_EQ(ResultToJson({1}, {2}, {{{2, -0.1f}}}, FinishReason::kStop)["logprobs"].dump(),
            "[[[2,-0.10000000149011612]]]");
}

}  // namespace
}  // namespace lattice
