// Comma-separated integer flags (--prompt-ids, --stop-token-ids, --pp-layers).
#include "cli/int_list.h"

#include <gtest/gtest.h>

namespace lattice {
namespace {

TEST(IntListTest, ParsesWithSpacesAroundParts) {
  absl::StatusOr<std::vector<int32_t>> ids = ParseIntList(" 1, 2 ,-3,2147483647", "--prompt-ids");
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(*ids, (std::vector<int32_t>{1, 2, -3, 2147483647}));
}

TEST(IntListTest, RejectsEmptyPartsJunkAndOverflowNamingTheFlag) {
  for (const char* text : {"", "1,,2", "1,", "1,x", "1 2", "2147483648", "0x10"}) {
    absl::StatusOr<std::vector<int32_t>> ids = ParseIntList(text, "--stop-token-ids");
    ASSERT_FALSE(ids.ok()) << text;
    EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_NE(ids.status().message().find("--stop-token-ids"), absl::string_view::npos)
        << ids.status();
  }
}

}  // namespace
}  // namespace lattice
