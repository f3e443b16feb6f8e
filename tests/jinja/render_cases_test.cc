// Every template of tests/fixtures/jinja/render_cases.json (feature by feature: whitespace
// control, printing, operators, statements, scoping, macros, filters, tests, methods,
// globals, errors) and of random_cases.json (seeded random combinations of all of them)
// must render byte for byte as jinja2 rendered it under transformers' settings, or fail
// where jinja2 failed. Regenerate with tests/fixtures/jinja/make_expected.py.
#include <gtest/gtest.h>

#include <map>

#include "tests/jinja/fixture_util.h"
#include "tokenizer/jinja/errors.h"
#include "tokenizer/jinja/template.h"

namespace lattice::jinja {
namespace {

using testing::FixedClock;
using testing::ReadJsonFixture;
using Json = nlohmann::ordered_json;

const Json& Fixture(const char* path) {
  static auto* fixtures = new std::map<std::string, Json>();
  auto it = fixtures->find(path);
  if (it == fixtures->end()) it = fixtures->emplace(path, ReadJsonFixture(path)).first;
  return it->second;
}

const Json& RenderCases() {
  static const Json empty = Json::array();
  const Json& fixture = Fixture("tests/fixtures/jinja/render_cases.json");
  return fixture.is_object() ? fixture["cases"] : empty;
}

const Json& RandomFixture() { return Fixture("tests/fixtures/jinja/random_cases.json"); }

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

class RenderCase : public ::testing::TestWithParam<std::string> {};

TEST(RenderCases, FixtureIsPresent) { EXPECT_GT(RenderCases().size(), 300u); }

TEST_P(RenderCase, MatchesJinja2) {
  int count = 0;
  for (const Json& c : RenderCases()) {
    if (!testing::InGroup(c, GetParam())) continue;
    SCOPED_TRACE("case " + c["name"].get<std::string>());
    ExpectAsJinja2(c["template"].get<std::string>(), c["context"], c);
    ++count;
  }
  EXPECT_GT(count, 0);
}

INSTANTIATE_TEST_SUITE_P(Jinja2, RenderCase,
                         ::testing::ValuesIn(testing::CaseGroups(RenderCases())),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return testing::TestName(info.param);
                         });

// Random cases in chunks of this many.
constexpr int kRandomChunk = 100;

std::vector<int> RandomChunks() {
  const Json& fixture = RandomFixture();
  std::vector<int> chunks;
  if (!fixture.is_object()) return chunks;
  for (size_t i = 0; i < fixture["cases"].size(); i += kRandomChunk)
    chunks.push_back(static_cast<int>(i));
  return chunks;
}

class RandomCase : public ::testing::TestWithParam<int> {};

TEST(RandomCases, FixtureIsPresent) { EXPECT_GE(RandomFixture()["cases"].size(), 600u); }

TEST_P(RandomCase, MatchesJinja2) {
  const Json& cases = RandomFixture()["cases"];
  for (size_t i = GetParam();
       i < cases.size() && i < static_cast<size_t>(GetParam() + kRandomChunk); ++i) {
    SCOPED_TRACE("random case " + std::to_string(i));
    ExpectAsJinja2(cases[i]["template"].get<std::string>(), RandomFixture()["context"], cases[i]);
  }
}

INSTANTIATE_TEST_SUITE_P(Jinja2, RandomCase, ::testing::ValuesIn(RandomChunks()));

}  // namespace
}  // namespace lattice::jinja
