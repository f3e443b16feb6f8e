// Every template of tests/fixtures/jinja/render_cases.json (feature by feature: whitespace
// control, printing, operators, statements, scoping, macros, filters, tests, methods,
// globals, errors) and of random_cases.json (seeded random combinations of all of them)
// must render byte for byte as jinja2 rendered it under transformers' settings, or fail
// where jinja2 failed. Regenerate with tests/fixtures/jinja/make_expected.py.
#include <gtest/gtest.h>

#include "tests/jinja/fixture_util.h"
#include "tokenizer/jinja/errors.h"
#include "tokenizer/jinja/template.h"

namespace lattice::jinja {
namespace {

using testing::FixedClock;
using testing::ReadJsonFixture;
using Json = nlohmann::ordered_json;

std::vector<Json> LoadCases() {
  Json fixture = ReadJsonFixture("tests/fixtures/jinja/render_cases.json");
  if (!fixture.is_object()) return {};
  return fixture["cases"].get<std::vector<Json>>();
}

// Renders `source` and checks the result against a fixture entry's "expected",
// "raised" or "error".
void ExpectAsJinja2(const std::string& source, const Json& context, const Json& c) {
  SCOPED_TRACE("template: " + source);
  absl::StatusOr<std::string> out;
  absl::StatusOr<Template> t = Template::Parse(source);
  if (t.ok()) {
    out = t->Render(context, FixedClock());
  } else {
    out = t.status();
  }
  if (c.contains("expected")) {
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ(*out, c["expected"].get<std::string>());
  } else if (c.contains("raised")) {
    ASSERT_FALSE(out.ok()) << "rendered: " << *out;
    EXPECT_TRUE(IsRaisedException(out.status())) << out.status();
    EXPECT_EQ(out.status().message(), c["raised"].get<std::string>());
  } else {
    ASSERT_FALSE(out.ok()) << "jinja2 raised " << c["error"] << " but we rendered: " << *out;
    EXPECT_FALSE(IsRaisedException(out.status()));
    EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(std::string(out.status().message()).find("chat template line "), std::string::npos)
        << out.status();
  }
}

class RenderCase : public ::testing::TestWithParam<Json> {};

TEST(RenderCases, FixtureIsPresent) { EXPECT_GT(LoadCases().size(), 250u); }

TEST_P(RenderCase, MatchesJinja2) {
  const Json& c = GetParam();
  ExpectAsJinja2(c["template"].get<std::string>(), c["context"], c);
}

INSTANTIATE_TEST_SUITE_P(Jinja2, RenderCase, ::testing::ValuesIn(LoadCases()),
                         [](const ::testing::TestParamInfo<Json>& info) {
                           return testing::TestName(info.param["name"].get<std::string>());
                         });

const Json& RandomFixture() {
  static const Json* fixture = new Json(ReadJsonFixture("tests/fixtures/jinja/random_cases.json"));
  return *fixture;
}

std::vector<int> RandomCaseIndexes() {
  const Json& fixture = RandomFixture();
  std::vector<int> indexes;
  if (!fixture.is_object()) return indexes;
  for (size_t i = 0; i < fixture["cases"].size(); ++i) indexes.push_back(static_cast<int>(i));
  return indexes;
}

class RandomCase : public ::testing::TestWithParam<int> {};

TEST(RandomCases, FixtureIsPresent) { EXPECT_GE(RandomCaseIndexes().size(), 600u); }

TEST_P(RandomCase, MatchesJinja2) {
  const Json& c = RandomFixture()["cases"][GetParam()];
  ExpectAsJinja2(c["template"].get<std::string>(), RandomFixture()["context"], c);
}

INSTANTIATE_TEST_SUITE_P(Jinja2, RandomCase, ::testing::ValuesIn(RandomCaseIndexes()));

}  // namespace
}  // namespace lattice::jinja
