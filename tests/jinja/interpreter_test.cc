// What the jinja2 fixtures cannot show: constructs jinja2 runs but we deliberately
// refuse (each must fail naming itself and its line, never render differently), error
// locations, concurrency, the clock, and the Python printing helpers on values no
// template fixture reaches.
#include <gtest/gtest.h>

#include <cmath>
#include <thread>

#include "tests/jinja/fixture_util.h"
#include "tokenizer/jinja/errors.h"
#include "tokenizer/jinja/json_dump.h"
#include "tokenizer/jinja/template.h"
#include "tokenizer/jinja/value.h"

namespace lattice::jinja {
namespace {

using Json = nlohmann::ordered_json;

absl::StatusOr<std::string> Render(const std::string& source, const Json& context = Json::object(),
                                   const RenderEnvironment& env = testing::FixedClock()) {
  absl::StatusOr<Template> t = Template::Parse(source);
  if (!t.ok()) return t.status();
  return t->Render(context, env);
}

std::string ErrorOf(const std::string& source, const Json& context = Json::object()) {
  absl::StatusOr<std::string> out = Render(source, context);
  if (out.ok()) return "rendered: " + *out;
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument) << out.status();
  return std::string(out.status().message());
}

TEST(Unsupported, FiltersJinja2HasAreNamedWithTheirLine) {
  EXPECT_EQ(ErrorOf("line 1\n{{ x|xmlattr }}"),
            "chat template line 2: unsupported filter 'xmlattr'");
  for (const char* filter :
       {"truncate", "wordwrap", "urlize", "urlencode", "striptags", "pprint", "filesizeformat",
        "forceescape", "random", "slice(2)", "groupby('a')"}) {
    const std::string message = ErrorOf(std::string("{{ 'a b'|") + filter + " }}");
    EXPECT_NE(message.find("chat template line 1: unsupported filter"), std::string::npos)
        << message;
  }
}

TEST(Unsupported, TagsJinja2HasAreNamedWithTheirLine) {
  EXPECT_EQ(ErrorOf("a\nb\n{% include 'other.jinja' %}"),
            "chat template line 3: unsupported tag 'include'");
  for (const char* tag :
       {"{% extends 'base' %}", "{% import 'm' as m %}", "{% from 'm' import x %}",
        "{% block body %}x{% endblock %}", "{% autoescape true %}x{% endautoescape %}"}) {
    EXPECT_NE(ErrorOf(tag).find("unsupported tag"), std::string::npos) << tag;
  }
  EXPECT_EQ(ErrorOf("{% for x in xs recursive %}{% endfor %}"),
            "chat template line 1: unsupported: recursive for loops");
}

TEST(Unsupported, ValuesPythonPrintsAsAddresses) {
  // jinja2 prints "<generator object ...>" / "<built-in method ...>"; we refuse.
  EXPECT_NE(ErrorOf("{{ [1, 2]|select('odd') }}").find("printing a generator"), std::string::npos);
  EXPECT_NE(ErrorOf("{{ range }}").find("printing a function"), std::string::npos);
  EXPECT_NE(ErrorOf("{{ 'a'.upper }}").find("printing a function"), std::string::npos);
}

TEST(Unsupported, OtherConstructs) {
  EXPECT_NE(ErrorOf("{{ 'x'.encode() }}").find("unsupported string method 'encode'"),
            std::string::npos);
  EXPECT_NE(ErrorOf("{{ cycler(1, 2) }}").find("unsupported global function"), std::string::npos);
  EXPECT_NE(ErrorOf("{{ '\\N{BULLET}' }}").find("named unicode escapes"), std::string::npos);
  EXPECT_NE(ErrorOf("{{ 'a' is sameas 'a' }}").find("unsupported"), std::string::npos);
  // Python integers are unbounded; ours are 64-bit and say so instead of wrapping.
  EXPECT_NE(ErrorOf("{{ 2 ** 64 }}").find("integer overflow"), std::string::npos);
  EXPECT_NE(ErrorOf("{{ 9223372036854775807 + 1 }}").find("integer overflow"), std::string::npos);
  EXPECT_NE(ErrorOf("{{ 99999999999999999999 }}").find("64 bits"), std::string::npos);
  EXPECT_NE(ErrorOf("{{ '{0.x}'.format(1) }}").find("unsupported"), std::string::npos);
}

TEST(Errors, RuntimeErrorsNameTheLine) {
  const Json context = Json::parse(R"({"messages": [{"role": "user", "content": "x"}]})");
  EXPECT_EQ(ErrorOf("{% for m in messages %}\n\n{{ m.content + 1 }}\n{% endfor %}", context),
            "chat template line 3: can only concatenate str (not \"int\") to str");
  EXPECT_EQ(ErrorOf("{%- macro f(x) %}\n{{ x.missing.deeper }}\n{% endmacro %}\n\n{{ f({}) }}"),
            "chat template line 2: 'dict object' has no attribute 'missing'");
  EXPECT_EQ(ErrorOf("{{ nosuch.attr }}"), "chat template line 1: 'nosuch' is undefined");
  EXPECT_EQ(ErrorOf("x\n{% if true %}\n{{ 1 / 0 }}{% endif %}"),
            "chat template line 3: division by zero");
}

TEST(Errors, SyntaxErrorsNameTheLine) {
  EXPECT_EQ(
      ErrorOf("ok\n{% if x %}\nno end"),
      "chat template line 3: unexpected end of template, expected 'elif' or 'else' or 'endif'");
  EXPECT_EQ(ErrorOf("\n\n{{ x|nosuch }}"), "chat template line 3: unknown filter 'nosuch'");
  EXPECT_EQ(ErrorOf("{% do x %}"), "chat template line 1: unsupported tag 'do'");
  EXPECT_EQ(ErrorOf("\n{# open comment"), "chat template line 2: missing end of comment tag");
  EXPECT_EQ(ErrorOf("{% nosuchtag %}"), "chat template line 1: unknown tag 'nosuchtag'");
}

TEST(Errors, RaiseExceptionIsDistinguishable) {
  absl::StatusOr<std::string> out = Render("\n\n{{ raise_exception('Bad roles: ' ~ 3) }}");
  ASSERT_FALSE(out.ok());
  EXPECT_TRUE(IsRaisedException(out.status()));
  EXPECT_EQ(out.status().message(), "Bad roles: 3");  // no line prefix: the template's own words
  out = Render("{{ 1 + none }}");
  ASSERT_FALSE(out.ok());
  EXPECT_FALSE(IsRaisedException(out.status()));
}

TEST(Errors, RunawayRecursionFailsCleanly) {
  EXPECT_NE(ErrorOf("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}").find("recursion"),
            std::string::npos);
}

TEST(Errors, HostileNestingFailsInsteadOfOverflowingTheStack) {
  EXPECT_NE(ErrorOf("{{ " + std::string(1000, '(') + "1" + std::string(1000, ')') + " }}")
                .find("nested too deeply"),
            std::string::npos);
  EXPECT_NE(ErrorOf(std::string(3000, '-') + "1").find("rendered"), std::string::npos);  // text
  EXPECT_NE(ErrorOf("{{ " + std::string(1000, '-') + "1 }}").find("nested too deeply"),
            std::string::npos);
  std::string blocks;
  for (int i = 0; i < 1000; ++i) blocks += "{% if true %}";
  EXPECT_NE(ErrorOf(blocks).find("nested too deeply"), std::string::npos);
  // Values built by the template or passed in as JSON.
  EXPECT_NE(ErrorOf("{% set ns = namespace(x=1) %}{% for i in range(2000) %}{% set ns.x = [ns.x] %}"
                    "{% endfor %}{{ ns.x }}")
                .find("nested deeper than"),
            std::string::npos);
  const Json deep = Json::parse(std::string(2000, '[') + std::string(2000, ']'));
  EXPECT_NE(ErrorOf("{{ x }}", Json{{"x", deep}}).find("nested deeper than"), std::string::npos);
}

TEST(Render, ContextMustBeAnObject) {
  absl::StatusOr<Template> t = Template::Parse("x");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->Render(Json::array()).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Render, OneTemplateManyThreads) {
  absl::StatusOr<Template> t = Template::Parse(
      "{%- set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}"
      "<{{ m.role }}>{{ m.content|trim }}{% if loop.last %}#{{ ns.n }}{% endif %}{% endfor %}");
  ASSERT_TRUE(t.ok()) << t.status();
  std::vector<std::thread> threads;
  std::vector<int> failures(8, 0);
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      for (int k = 0; k < 200; ++k) {
        Json messages = Json::array();
        for (int m = 0; m <= (i + k) % 5; ++m) {
          messages.push_back({{"role", "user"}, {"content", " " + std::to_string(m) + " "}});
        }
        std::string expected;
        for (int m = 0; m < static_cast<int>(messages.size()); ++m)
          expected += "<user>" + std::to_string(m);
        expected += "#" + std::to_string(messages.size());
        absl::StatusOr<std::string> out = t->Render(Json{{"messages", messages}});
        if (!out.ok() || *out != expected) ++failures[i];
      }
    });
  }
  for (std::thread& th : threads) th.join();
  for (int f : failures) EXPECT_EQ(f, 0);
}

TEST(Render, ClockAndTimeZoneComeFromTheEnvironment) {
  RenderEnvironment env;
  env.time_zone = absl::FixedTimeZone(2 * 3600);
  env.now = absl::FromCivil(absl::CivilSecond(2025, 1, 31, 23, 30, 0), absl::UTCTimeZone());
  absl::StatusOr<std::string> out =
      Render("{{ strftime_now('%Y-%m-%d %H:%M %b %A') }}", Json::object(), env);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "2025-02-01 01:30 Feb Saturday");
}

TEST(Render, LargeLoopsStayFast) {
  absl::StatusOr<std::string> out = Render(
      "{% set ns = namespace(s=0) %}{% for i in range(100000) %}{% set ns.s = ns.s + i %}{% endfor "
      "%}{{ ns.s }}");
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "4999950000");
}

TEST(Values, FloatReprIsPythons) {
  const std::pair<double, const char*> cases[] = {
      {0.1, "0.1"},
      {1.0, "1.0"},
      {100.0, "100.0"},
      {-2.5, "-2.5"},
      {1e16, "1e+16"},
      {1e15, "1000000000000000.0"},
      {0.0001, "0.0001"},
      {1e-5, "1e-05"},
      {5e-324, "5e-324"},
      {1.7976931348623157e308, "1.7976931348623157e+308"},
      {123456789012345678.0, "1.2345678901234568e+17"},
      {0.1 + 0.2, "0.30000000000000004"},
      {-0.0, "-0.0"},
      {1.5e-7, "1.5e-07"},
      {2.5e20, "2.5e+20"},
      {INFINITY, "inf"},
      {-INFINITY, "-inf"},
      {NAN, "nan"}};
  for (const auto& [d, text] : cases) EXPECT_EQ(PyFloatRepr(d), text);
}

TEST(Values, StringReprIsPythons) {
  EXPECT_EQ(PyStringRepr("plain"), "'plain'");
  EXPECT_EQ(PyStringRepr("it's"), "\"it's\"");
  EXPECT_EQ(PyStringRepr("both ' \""), "'both \\' \"'");
  EXPECT_EQ(PyStringRepr("a\nb\t\\\x01\x7f"), "'a\\nb\\t\\\\\\x01\\x7f'");
  EXPECT_EQ(PyStringRepr("é你😀\u00a0\u200b\u2028"), "'é你😀\\xa0\\u200b\\u2028'");
}

TEST(Values, JsonFromAndToPython) {
  const Json json = Json::parse(
      R"({"b": [1, 2.5, -0.0, 1e300, "é\u2028", null, true], "a": {}, "u": 18446744073709551615})");
  const Value v = *Value::FromJson(json);
  JsonDumpOptions options;
  absl::StatusOr<std::string> out = JsonDumps(v, options);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out,
            "{\"b\": [1, 2.5, -0.0, 1e+300, \"é\u2028\", null, true], \"a\": {}, \"u\": "
            "1.8446744073709552e+19}");
  options.ensure_ascii = true;
  options.indent = "  ";
  options.sort_keys = true;
  out = JsonDumps(v, options);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out,
            "{\n  \"a\": {},\n  \"b\": [\n    1,\n    2.5,\n    -0.0,\n    1e+300,\n    "
            "\"\\u00e9\\u2028\",\n"
            "    null,\n    true\n  ],\n  \"u\": 1.8446744073709552e+19\n}");
  EXPECT_FALSE(JsonDumps(Value::Undefined(), {}).ok());
}

}  // namespace
}  // namespace lattice::jinja
