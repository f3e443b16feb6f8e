// Text in, text out, end to end with real processes: the bundled stories260K model
// (models/stories260K) through `lattice run` and through `lattice serve --tp 2 --pp 2`
// with `lattice generate` and the gRPC stub. The story for "Once upon a time" is
// llama2.c's greedy output (models/stories260K/SOURCE.md), word for word; stop
// strings, chats and streamed text agree between the two paths; bad text input gets
// its exact code and message and the server goes on.
#include <filesystem>
#include <fstream>
#include <functional>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "lattice/v1/lattice.grpc.pb.h"
#include "tests/e2e/fixtures.h"
#include "tests/e2e/run_process.h"
#include "tests/e2e/server.h"

namespace lattice {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::Server;

fs::path StoriesModel() {
  const char* env = std::getenv("LATTICE_SOURCE_DIR");
  return fs::path(env != nullptr && env[0] != '\0' ? env : LATTICE_SOURCE_DIR) / "models/stories260K";
}

// What llama2.c's run.c prints for "Once upon a time" at temperature 0 (SOURCE.md).
constexpr char kStory[] =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw "
    "a big, red ball. She wanted to play with it, but it was too high.\n";

testing::ProcessResult Lattice(std::vector<std::string> args) {
  args.insert(args.begin(), LATTICE_BINARY);
  return testing::RunProcess(args);
}

std::string RunText(const std::vector<std::string>& flags) {
  std::vector<std::string> args = {"run", "--model", StoriesModel().string()};
  args.insert(args.end(), flags.begin(), flags.end());
  const testing::ProcessResult r = Lattice(args);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return r.out;
}

TEST(Text, RunPrintsTheReferenceStory) {
  const std::string out = RunText({"--prompt", "Once upon a time", "--max-tokens", "400"});
  ASSERT_GE(out.size(), sizeof(kStory) - 1) << out;
  EXPECT_EQ(out.substr(0, sizeof(kStory) - 1), kStory);
  // --json keeps the ids and adds the text; the model ends the story with BOS (id 1).
  const auto lines = testing::ParseJsonLines(
      RunText({"--prompt", "Once upon a time", "--max-tokens", "400", "--json"}));
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0]["prompt_ids"], json::parse("[1,403,407,261,378]"));
  EXPECT_EQ(lines[0]["finish_reason"], "stop");
  EXPECT_EQ(lines[0]["output_ids"].back(), 1);
  EXPECT_EQ("Once upon a time" + lines[0]["text"].get<std::string>() + "\n", out);
}

TEST(Text, TokenizeAndDetokenizeCommands) {
  const fs::path in = fs::path(::testing::TempDir()) / "tokenize_in.jsonl";
  std::ofstream(in) << "\"Once upon a time\"\n\"\"\n\"caf\\u00e9 \\ud83d\\ude00\"\n";
  testing::ProcessResult r =
      testing::RunProcess({"/bin/sh", "-c",
                           std::string(LATTICE_BINARY) + " tokenize --model " + StoriesModel().string() +
                               " --add-special-tokens < " + in.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto lines = testing::ParseJsonLines(r.out);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0], json::parse("[1,403,407,261,378]"));
  EXPECT_EQ(lines[1], json::parse("[1]"));
  const fs::path ids = fs::path(::testing::TempDir()) / "detokenize_in.jsonl";
  std::ofstream(ids) << lines[0].dump() << "\n" << lines[2].dump() << "\n[1, 99999]\n";
  r = testing::RunProcess({"/bin/sh", "-c",
                           std::string(LATTICE_BINARY) + " detokenize --model " + StoriesModel().string() +
                               " --skip-special-tokens < " + ids.string()});
  EXPECT_EQ(r.exit_code, 2);  // the third line has an id outside the vocabulary
  const auto texts = testing::ParseJsonLines(r.out);
  ASSERT_EQ(texts.size(), 2u);
  EXPECT_EQ(texts[0], "Once upon a time");
  EXPECT_EQ(texts[1], "caf\u00e9 \U0001F600");
  EXPECT_NE(r.err.find("line 3: token id 99999 is not in the vocabulary"), std::string::npos) << r.err;
}

TEST(Text, InvalidUtf8IsRefusedAndInvalidBytesDecodeAsReplacementCharacters) {
  testing::ProcessResult r =
      Lattice({"run", "--model", StoriesModel().string(), "--prompt", "caf\xc3", "--max-tokens", "3"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--prompt is not valid UTF-8 (at byte 3)"), std::string::npos) << r.err;
  r = Lattice({"generate", "--server", "127.0.0.1:1", "--prompt", "\xff", "--timeout", "1"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("INVALID_ARGUMENT: --prompt is not valid UTF-8 (at byte 0)"), std::string::npos) << r.err;
  // Ids whose bytes are no valid UTF-8 (byte-fallback pieces <0xFF>, <0xE4> alone)
  // decode to U+FFFD, as the tokenizers library decodes them.
  const fs::path ids = fs::path(::testing::TempDir()) / "invalid_bytes.jsonl";
  std::ofstream(ids) << "[258]\n[231, 261]\n";
  r = testing::RunProcess({"/bin/sh", "-c",
                           std::string(LATTICE_BINARY) + " detokenize --model " + StoriesModel().string() + " < " +
                               ids.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto texts = testing::ParseJsonLines(r.out);
  ASSERT_EQ(texts.size(), 2u);
  EXPECT_EQ(texts[0], "\uFFFD");
  EXPECT_EQ(texts[1].get<std::string>().substr(0, 3), "\uFFFD");
}

TEST(Text, ChatTemplateCommandRendersTheModelsTemplate) {
  const fs::path messages = fs::path(::testing::TempDir()) / "messages.json";
  std::ofstream(messages) << R"([{"role": "user", "content": "  A dog and a cat  "}])";
  const testing::ProcessResult r = Lattice({"chat-template", "--model", StoriesModel().string(), "--messages",
                                            messages.string(), "--add-generation-prompt"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "<s>A dog and a cat");
}

// One server for the serving checks: tp2 x pp2 on the CPU, four worker processes.
class TextServe : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server_ = new Server(StoriesModel(), {"--tp", "2", "--pp", "2"}); }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  static testing::ProcessResult Generate(std::vector<std::string> flags) {
    flags.insert(flags.begin(), {"generate", "--server", server_->address()});
    return Lattice(flags);
  }
  static Server* server_;
};
Server* TextServe::server_ = nullptr;

TEST_F(TextServe, ModelInfoSaysTextIsServed) {
  grpc::ClientContext context;
  v1::ModelInfo info;
  ASSERT_TRUE(server_->stub().GetModelInfo(&context, {}, &info).ok());
  EXPECT_EQ(info.model_name(), "stories260K");
  EXPECT_TRUE(info.has_tokenizer());
  EXPECT_TRUE(info.has_chat_template());
}

TEST_F(TextServe, GenerateStreamsTheReferenceStoryAsRunDoes) {
  const std::vector<std::string> flags = {"--prompt", "Once upon a time", "--max-tokens", "400"};
  testing::ProcessResult r = Generate({"--prompt", "Once upon a time", "--max-tokens", "400", "--stream"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.substr(0, sizeof(kStory) - 1), kStory);
  EXPECT_EQ(r.out, RunText(flags));
  // Several prompts at once, JSON: the same ids and text as `lattice run`.
  const std::vector<std::string> many = {"--prompt", "Once upon a time", "--prompt", "The cat",
                                         "--prompt-ids", "1,403,407", "--chat", "A big dog",
                                         "--max-tokens", "60", "--json"};
  r = Generate(many);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto served = testing::ParseJsonLines(r.out);
  const auto offline = testing::ParseJsonLines(RunText(many));
  ASSERT_EQ(served.size(), 4u);
  ASSERT_EQ(offline.size(), 4u);
  for (size_t i = 0; i < served.size(); ++i) {
    EXPECT_EQ(served[i]["prompt_ids"], offline[i]["prompt_ids"]) << i;
    EXPECT_EQ(served[i]["output_ids"], offline[i]["output_ids"]) << i;
    EXPECT_EQ(served[i]["text"], offline[i]["text"]) << i;
  }
}

// A second client (Python's gRPC runtime and its generated stubs): the same ids and text.
TEST_F(TextServe, PythonClientGetsWhatGenerateGets) {
  const std::vector<std::string> flags = {"--prompt", "Once upon a time", "--prompt", "Tom and Sue", "--chat",
                                          "A cat", "--max-tokens", "40", "--stop", "park"};
  testing::ProcessResult r = Generate([&] {
    auto f = flags;
    f.push_back("--json");
    return f;
  }());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto want = testing::ParseJsonLines(r.out);
  std::vector<std::string> argv = {"/usr/bin/python3", std::string(LATTICE_SOURCE_DIR) + "/tests/e2e/python_client.py",
                                   "--stubs", LATTICE_PYTHON_STUBS, "--server", server_->address()};
  argv.insert(argv.end(), flags.begin(), flags.end());
  r = testing::RunProcess(argv);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto got = testing::ParseJsonLines(r.out);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got, want);
  EXPECT_EQ(got[0]["stop_string"], "park");
}

TEST_F(TextServe, StopStringsEndTheTextAsRunDoes) {
  for (const std::vector<std::string>& stop :
       {std::vector<std::string>{"--stop", "red"}, std::vector<std::string>{"--stop", "red", "--include-stop-str-in-output"},
        std::vector<std::string>{"--stop", "zzz", "--stop", "Lily."}, std::vector<std::string>{"--stop", "y. She"}}) {
    std::vector<std::string> flags = {"--prompt", "Once upon a time", "--max-tokens", "100", "--json"};
    flags.insert(flags.end(), stop.begin(), stop.end());
    const testing::ProcessResult r = Generate(flags);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto served = testing::ParseJsonLines(r.out);
    const auto offline = testing::ParseJsonLines(RunText(flags));
    ASSERT_EQ(served.size(), 1u);
    EXPECT_EQ(served[0], offline[0]) << stop[1];
    EXPECT_EQ(served[0]["finish_reason"], "stop");
    EXPECT_TRUE(served[0].contains("stop_string"));
  }
  const auto red = testing::ParseJsonLines(
      RunText({"--prompt", "Once upon a time", "--max-tokens", "100", "--json", "--stop", "red"}));
  EXPECT_EQ(red[0]["text"], ", there was a little girl named Lily. She loved to play outside in the park. One day, "
                            "she saw a big, ");
  EXPECT_EQ(red[0]["stop_string"], "red");
  // A stop token's own text is left out, as vLLM does (the story's first token is ",").
  for (const char* include : {"", "--include-stop-str-in-output"}) {
    std::vector<std::string> flags = {"--prompt", "Once upon a time", "--max-tokens", "20", "--json", "--stop-token-ids",
                                      "432"};
    if (include[0] != '\0') flags.push_back(include);
    const testing::ProcessResult r = Generate(flags);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto served = testing::ParseJsonLines(r.out);
    ASSERT_EQ(served.size(), 1u);
    EXPECT_EQ(served[0]["output_ids"], json::parse("[432]"));
    EXPECT_EQ(served[0]["finish_reason"], "stop");
    EXPECT_EQ(served[0]["text"], include[0] != '\0' ? "," : "");
  }
  // The server is left with no blocks in use.
  EXPECT_EQ(server_->Status().kv_blocks_used(), 0);
}

TEST_F(TextServe, StreamedPiecesConcatenateToTheText) {
  v1::GenerateRequest request;
  request.set_prompt("Once upon a time");
  request.set_max_tokens(80);
  grpc::ClientContext context;
  auto reader = server_->stub().Generate(&context, request);
  v1::GenerateResponse response;
  std::string text;
  int messages = 0, with_text = 0;
  std::vector<int32_t> prompt_ids, ids;
  while (reader->Read(&response)) {
    ++messages;
    with_text += !response.text().empty();
    text += response.text();
    ids.insert(ids.end(), response.token_ids().begin(), response.token_ids().end());
    if (response.prompt_ids_size() > 0) prompt_ids.assign(response.prompt_ids().begin(), response.prompt_ids().end());
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(prompt_ids, (std::vector<int32_t>{1, 403, 407, 261, 378}));
  EXPECT_EQ(ids.size(), 80u);
  EXPECT_GT(with_text, 40);  // text streams, it is not all held for the end
  EXPECT_EQ("Once upon a time" + text + "\n", RunText({"--prompt", "Once upon a time", "--max-tokens", "80"}));
}

// Each bad request: its code and message, and the server still serves afterwards.
TEST_F(TextServe, BadTextInputGetsItsCodeAndTheServerGoesOn) {
  struct Case {
    const char* name;
    std::function<void(v1::GenerateRequest&)> edit;
    grpc::StatusCode code;
    std::string message;
  };
  const Case cases[] = {
      {"empty prompt", [](auto& r) { r.set_prompt(""); }, grpc::StatusCode::INVALID_ARGUMENT,
       "the prompt is empty: set one of prompt_ids, prompt and messages"},
      {"two prompts", [](auto& r) { r.add_prompt_ids(5); }, grpc::StatusCode::INVALID_ARGUMENT,
       "set only one of prompt_ids, prompt and messages"},
      {"prompt and messages",
       [](auto& r) {
         auto* m = r.add_messages();
         m->set_role("user");
         m->set_content("hi");
       },
       grpc::StatusCode::INVALID_ARGUMENT, "set only one of prompt_ids, prompt and messages"},
      {"id outside the vocabulary",
       [](auto& r) {
         r.clear_prompt();
         r.add_prompt_ids(1);
         r.add_prompt_ids(512);
       },
       grpc::StatusCode::INVALID_ARGUMENT, "prompt_ids[1] = 512"},
      {"message without role",
       [](auto& r) {
         r.clear_prompt();
         r.add_messages()->set_content("hi");
       },
       grpc::StatusCode::INVALID_ARGUMENT, "messages[0].role is empty"},
      {"bad extra_json",
       [](auto& r) {
         r.clear_prompt();
         auto* m = r.add_messages();
         m->set_role("user");
         m->set_extra_json("{oops");
       },
       grpc::StatusCode::INVALID_ARGUMENT, "messages[0].extra_json is not valid JSON"},
      {"empty stop string", [](auto& r) { r.add_stop(""); }, grpc::StatusCode::INVALID_ARGUMENT, "stop[0] is empty"},
  };
  for (const Case& c : cases) {
    v1::GenerateRequest request;
    request.set_prompt("Once upon a time");
    request.set_max_tokens(4);
    c.edit(request);
    grpc::ClientContext context;
    auto reader = server_->stub().Generate(&context, request);
    v1::GenerateResponse response;
    EXPECT_FALSE(reader->Read(&response)) << c.name;
    const grpc::Status status = reader->Finish();
    EXPECT_EQ(status.error_code(), c.code) << c.name << ": " << status.error_message();
    EXPECT_NE(status.error_message().find(c.message), std::string::npos) << c.name << ": " << status.error_message();
  }
  // Invalid UTF-8 cannot be built with the C++ or Python protobuf runtimes; send the
  // wire bytes of {prompt: "\xff\xfe", max_tokens: 4} by hand.
  {
    grpc::GenericStub generic(grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials()));
    const std::string wire = std::string("\x42\x02\xff\xfe\x18\x04", 6);
    grpc::Slice slice(wire);
    grpc::ByteBuffer send(&slice, 1), received;
    grpc::ClientContext context;
    grpc::CompletionQueue cq;
    auto wait = [&cq](intptr_t want) {
      void* tag = nullptr;
      bool ok = false;
      EXPECT_TRUE(cq.Next(&tag, &ok));
      EXPECT_EQ(reinterpret_cast<intptr_t>(tag), want);
      return ok;
    };
    auto call = generic.PrepareCall(&context, "/lattice.v1.Lattice/Generate", &cq);
    call->StartCall(reinterpret_cast<void*>(1));
    wait(1);
    call->Write(send, reinterpret_cast<void*>(2));
    wait(2);
    call->WritesDone(reinterpret_cast<void*>(3));
    wait(3);
    call->Read(&received, reinterpret_cast<void*>(4));
    EXPECT_FALSE(wait(4));  // no response message
    grpc::Status status;
    call->Finish(&status, reinterpret_cast<void*>(5));
    wait(5);
    // gRPC itself rejects the message before our handler sees it (proto3 strings must be
    // UTF-8): gRPC C++ 1.51's callback server answers a request it cannot parse with
    // UNIMPLEMENTED and no message.
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNIMPLEMENTED) << status.error_message();
    cq.Shutdown();
  }
  const testing::ProcessResult r = Generate({"--prompt", "Once upon a time", "--max-tokens", "5"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(server_->Status().kv_blocks_used(), 0);
}

// A model without tokenizer files serves ids and refuses text; a chat needs a template;
// a template that raises gives its own message.
TEST(TextServeErrors, MissingTokenizerTemplateAndRaisingTemplates) {
  const fs::path dir = fs::path(::testing::TempDir()) / "stories_no_template";
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const char* f : {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json"}) {
    fs::copy_file(StoriesModel() / f, dir / f);
  }
  json config = testing::ReadJson(StoriesModel() / "tokenizer_config.json");
  config.erase("chat_template");
  std::ofstream(dir / "tokenizer_config.json") << config.dump();
  auto status_of = [](Server& server, const v1::GenerateRequest& request) {
    grpc::ClientContext context;
    auto reader = server.stub().Generate(&context, request);
    v1::GenerateResponse response;
    while (reader->Read(&response)) {
    }
    return reader->Finish();
  };
  v1::GenerateRequest chat;
  chat.set_max_tokens(3);
  auto* m = chat.add_messages();
  m->set_role("system");
  m->set_content("Be nice.");
  m = chat.add_messages();
  m->set_role("user");
  m->set_content("A dog");
  {
    Server server(dir, {});
    grpc::Status s = status_of(server, chat);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_EQ(s.error_message(),
              "the model has no chat template (tokenizer_config.json chat_template, chat_template.jinja or "
              "--chat-template): send a prompt");
    v1::GenerateRequest text;
    text.set_prompt("Once upon a time");
    text.set_max_tokens(3);
    EXPECT_TRUE(status_of(server, text).ok());
  }
  {
    const fs::path raising = fs::path(::testing::TempDir()) / "raising.jinja";
    std::ofstream(raising) << "{% for m in messages %}{% if m.role == 'system' %}"
                              "{{ raise_exception('System messages are not supported') }}{% endif %}"
                              "{{ m.content }}{% endfor %}";
    Server server(dir, {"--chat-template", raising.string()});
    grpc::Status s = status_of(server, chat);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(s.error_message(), "System messages are not supported");
    chat.mutable_messages()->erase(chat.mutable_messages()->begin());
    EXPECT_TRUE(status_of(server, chat).ok());
  }
  {
    // A fixture without tokenizer files: ids only.
    Server server(testing::FixturesDir() / "llama_gqa_f32", {});
    grpc::ClientContext context;
    v1::ModelInfo info;
    ASSERT_TRUE(server.stub().GetModelInfo(&context, {}, &info).ok());
    EXPECT_FALSE(info.has_tokenizer());
    v1::GenerateRequest text;
    text.set_prompt("hello");
    text.set_max_tokens(3);
    grpc::Status s = status_of(server, text);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_NE(s.error_message().find("the model has no tokenizer"), std::string::npos) << s.error_message();
    v1::GenerateRequest stop;
    stop.add_prompt_ids(5);
    stop.add_stop("x");
    stop.set_max_tokens(3);
    s = status_of(server, stop);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_EQ(s.error_message(), "stop strings need a tokenizer, and the model has none");
    v1::GenerateRequest ids;
    ids.add_prompt_ids(5);
    ids.set_max_tokens(3);
    EXPECT_TRUE(status_of(server, ids).ok());
  }
}

}  // namespace
}  // namespace lattice
