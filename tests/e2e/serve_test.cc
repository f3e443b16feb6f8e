// The serving path end to end: `lattice serve` (coordinator plus worker processes on
// loopback) answering real gRPC clients: ours (`lattice generate`, and the C++ stub
// for concurrency, cancellation and status), and a Python client generated from
// proto/. Outputs must equal `lattice run`; the cluster must survive bad input,
// preempt under a small KV pool, reuse prefixes, overlap pipeline micro-batches and
// free every block of a cancelled stream.
#include <chrono>
#include <future>
#include <thread>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "lattice/v1/lattice.grpc.pb.h"
#include "tests/e2e/fixtures.h"
#include "tests/e2e/run_process.h"
#include "tests/e2e/server.h"

namespace lattice {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::FixtureNames;
using testing::FixturesDir;
using testing::ReadJson;

using testing::Server;

std::vector<std::string> PromptFlags(const std::vector<std::vector<int>>& prompts) {
  std::vector<std::string> flags;
  for (const auto& p : prompts) {
    flags.push_back("--prompt-ids");
    flags.push_back(absl::StrJoin(p, ","));
  }
  return flags;
}

std::vector<std::vector<int>> FixturePrompts(const fs::path& model) {
  std::vector<std::vector<int>> prompts;
  const json expected = ReadJson(model / "expected.json");
  for (const json& p : expected["prompts"]) prompts.push_back(p["prompt_ids"].get<std::vector<int>>());
  return prompts;
}

std::vector<json> RunJson(const std::vector<std::string>& command, const std::vector<std::string>& args) {
  std::vector<std::string> argv = command;
  argv.insert(argv.end(), args.begin(), args.end());
  const testing::ProcessResult r = testing::RunProcess(argv);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return testing::ParseJsonLines(r.out);
}

void ExpectSame(const std::vector<json>& want, const std::vector<json>& got, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_EQ(got[i]["output_ids"], want[i]["output_ids"]) << what << " prompt " << i;
    EXPECT_EQ(got[i]["finish_reason"], want[i]["finish_reason"]) << what;
    ASSERT_EQ(got[i]["logprobs"].size(), want[i]["logprobs"].size()) << what;
    for (size_t t = 0; t < want[i]["logprobs"].size(); ++t) {
      for (size_t k = 0; k < want[i]["logprobs"][t].size(); ++k) {
        EXPECT_NEAR(got[i]["logprobs"][t][k][1].get<double>(), want[i]["logprobs"][t][k][1].get<double>(), 1e-4)
            << what << " prompt " << i << " token " << t;
      }
    }
  }
}

class ServeFixtureTest : public ::testing::TestWithParam<std::string> {
 protected:
  fs::path model() const { return FixturesDir() / GetParam(); }
  std::vector<std::string> Args() const {
    std::vector<std::string> args = PromptFlags(FixturePrompts(model()));
    for (const char* a : {"--max-tokens", "10", "--logprobs", "5", "--ignore-eos", "--json"}) args.push_back(a);
    return args;
  }
  std::vector<json> Want() const { return RunJson({LATTICE_BINARY, "run", "--model", model().string()}, Args()); }
};

TEST_P(ServeFixtureTest, Tp2Pp2ServesWhatRunPrints) {
  const std::vector<json> want = Want();
  Server server(model(), {"--tp", "2", "--pp", "2"});
  ExpectSame(want, RunJson({LATTICE_BINARY, "generate", "--server", server.address()}, Args()), "lattice generate");
  ExpectSame(want,
             RunJson({"/usr/bin/python3", std::string(LATTICE_SOURCE_DIR) + "/tests/e2e/python_client.py", "--stubs",
                      LATTICE_PYTHON_STUBS, "--server", server.address()},
                     Args()),
             "python client");
}

TEST_P(ServeFixtureTest, MpirunServesWhatRunPrints) {
  const std::vector<json> want = Want();
  Server server(model(), {"--tp", "2", "--pp", "2"},
                {"/usr/bin/mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "4"});
  ExpectSame(want, RunJson({LATTICE_BINARY, "generate", "--server", server.address()}, Args()), "mpirun serve");
}

TEST_P(ServeFixtureTest, CoordinatorAndSeparatelyLaunchedWorkersServeWhatRunPrints) {
  const std::vector<json> want = Want();
  std::vector<int> workers;
  {
    Server coordinator(model(), {"--tp", "2", "--pp", "2", "--store-host", "127.0.0.1"}, {}, "coordinator",
                       /*wait_ready=*/false);
    for (int rank = 3; rank >= 0; --rank) {  // any order; one takes its rank from LeaderWorkerSet's variable
      std::vector<std::string> argv = {LATTICE_BINARY, "worker", "--coordinator", coordinator.address(),
                                       "--kv-cache-memory", "8M"};
      if (rank != 2) argv.insert(argv.end(), {"--rank", std::to_string(rank)});
      workers.push_back(testing::StartProcess(argv, rank == 2 ? testing::EnvOverrides{"LWS_WORKER_INDEX=2"}
                                                              : testing::EnvOverrides{}));
    }
    coordinator.WaitReady();
    ExpectSame(want, RunJson({LATTICE_BINARY, "generate", "--server", coordinator.address()}, Args()),
               "coordinator + workers");
  }
  // The coordinator's orderly shutdown ends every worker cleanly.
  for (int pid : workers) EXPECT_EQ(testing::WaitProcess(pid, 30), 0);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ServeFixtureTest, ::testing::ValuesIn(FixtureNames()),
                         [](const auto& info) { return info.param; });

// The sampling controls (penalties, min_tokens, logit_bias) through the public API:
// `lattice generate` against a tp2 server prints `lattice run`'s tokens, and a bad value
// is INVALID_ARGUMENT naming the field.
TEST(ServeSamplingControls, GenerateWithControlsServesWhatRunPrints) {
  const fs::path model = FixturesDir() / "llama_linear_headdim_f32";
  std::vector<std::string> args = PromptFlags(FixturePrompts(model));
  for (const char* a : {"--max-tokens", "10", "--json", "--seed", "4", "--repetition-penalty", "1.3",
                        "--frequency-penalty", "0.5", "--presence-penalty", "0.25", "--min-tokens", "2",
                        "--logit-bias", "5:3,494:-1"}) {
    args.push_back(a);
  }
  Server server(model, {"--tp", "2"});
  for (const char* temperature : {"0", "0.8"}) {
    std::vector<std::string> with = args;
    with.insert(with.end(), {"--temperature", temperature});
    const std::vector<json> want = RunJson({LATTICE_BINARY, "run", "--model", model.string()}, with);
    ExpectSame(want, RunJson({LATTICE_BINARY, "generate", "--server", server.address()}, with),
               std::string("lattice generate, T=") + temperature);
  }
  for (const auto& [flags, field] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"--presence-penalty", "3"}, "presence_penalty"},
           {{"--repetition-penalty", "-1"}, "repetition_penalty"},
           {{"--min-tokens", "5", "--max-tokens", "4"}, "min_tokens"},
           {{"--logit-bias", "600:1"}, "logit_bias token 600"}}) {
    std::vector<std::string> argv = {LATTICE_BINARY, "generate", "--server", server.address(), "--prompt-ids", "1,2"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    const testing::ProcessResult r = testing::RunProcess(argv);
    EXPECT_EQ(r.exit_code, 2) << field << ": " << r.err;
    EXPECT_NE(r.err.find("INVALID_ARGUMENT"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(field), std::string::npos) << r.err;
  }
  EXPECT_TRUE(server.Status().healthy());
}

// One streaming Generate with our C++ stub: every token, the final usage.
struct Streamed {
  grpc::Status status;
  std::vector<int> tokens;
  v1::Usage usage;
  v1::FinishReason finish = v1::FINISH_REASON_UNSPECIFIED;
};

Streamed Generate(v1::Lattice::Stub& stub, const std::vector<int>& prompt, int max_tokens) {
  v1::GenerateRequest request;
  request.mutable_prompt_ids()->Add(prompt.begin(), prompt.end());
  request.set_max_tokens(max_tokens);
  request.set_ignore_eos(true);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
  std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader = stub.Generate(&context, request);
  Streamed out;
  v1::GenerateResponse response;
  while (reader->Read(&response)) {
    out.tokens.insert(out.tokens.end(), response.token_ids().begin(), response.token_ids().end());
    if (response.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
      out.finish = response.finish_reason();
      out.usage = response.usage();
    }
  }
  out.status = reader->Finish();
  return out;
}

std::vector<int> Prompt(int length, int salt) {
  std::vector<int> p;
  for (int i = 0; i < length; ++i) p.push_back(3 + (i * 37 + salt * 11) % 500);
  return p;
}

TEST(Serve, SixtyFourConcurrentClientsAndOverlappingMicroBatches) {
  const fs::path model = FixturesDir() / "qwen2moe_shared_bf16";
  std::vector<std::vector<int>> prompts;
  std::vector<int> lengths;
  for (int i = 0; i < 64; ++i) {
    prompts.push_back(Prompt(1 + (i * 7) % 40, i));
    lengths.push_back(1 + (i * 5) % 16);
  }
  std::vector<std::string> args = PromptFlags(prompts);
  for (const char* a : {"--max-tokens", "16", "--ignore-eos", "--json"}) args.push_back(a);
  const std::vector<json> want = RunJson({LATTICE_BINARY, "run", "--model", model.string()}, args);
  ASSERT_EQ(want.size(), 64u);

  Server server(model, {"--tp", "2", "--pp", "2", "--num-micro-batches", "2", "--max-num-seqs", "8"});
  std::vector<Streamed> got(64);
  std::vector<std::thread> clients;
  for (int i = 0; i < 64; ++i) {
    clients.emplace_back([&, i] { got[i] = Generate(server.stub(), prompts[i], lengths[i]); });
  }
  for (std::thread& t : clients) t.join();
  for (int i = 0; i < 64; ++i) {
    ASSERT_TRUE(got[i].status.ok()) << i << ": " << got[i].status.error_message();
    const auto full = want[i]["output_ids"].get<std::vector<int>>();
    EXPECT_EQ(got[i].tokens, std::vector<int>(full.begin(), full.begin() + lengths[i])) << "client " << i;
    EXPECT_EQ(got[i].finish, v1::FINISH_REASON_LENGTH);
    EXPECT_EQ(got[i].usage.completion_tokens(), lengths[i]);
    EXPECT_EQ(got[i].usage.prompt_tokens(), static_cast<int>(prompts[i].size()));
  }
  const v1::InstanceStatus status = server.Status();
  EXPECT_GT(status.num_overlapped_steps(), 0) << "stage 0 never had a second micro-batch in flight";
  EXPECT_EQ(status.kv_blocks_used(), 0);
  EXPECT_EQ(status.num_running(), 0);
}

TEST(Serve, ASharedPrefixIsServedFromTheCache) {
  Server server(FixturesDir() / "llama_gqa_f32", {"--tp", "2"});
  const std::vector<int> first = Prompt(40, 1);
  std::vector<int> second(first.begin(), first.begin() + 35);
  second.push_back(7);
  const Streamed a = Generate(server.stub(), first, 4);
  const int64_t computed_after_a = server.Status().num_computed_tokens();
  const Streamed b = Generate(server.stub(), second, 4);
  ASSERT_TRUE(a.status.ok() && b.status.ok());
  EXPECT_EQ(a.usage.cached_tokens(), 0);
  EXPECT_EQ(b.usage.cached_tokens(), 32);  // two full blocks of 16
  // 40 prompt tokens and 3 decodes for the first; 36 - 32 and 3 for the second.
  EXPECT_EQ(computed_after_a, 40 + 3);
  EXPECT_EQ(server.Status().num_computed_tokens() - computed_after_a, 4 + 3);
  EXPECT_GT(server.Status().prefix_cache_hits(), 0);
}

TEST(Serve, ASmallKvPoolPreemptsAndStillAnswersRight) {
  const fs::path model = FixturesDir() / "llama_gqa_f32";
  std::vector<std::vector<int>> prompts;
  for (int i = 0; i < 8; ++i) prompts.push_back(Prompt(20 + i, i));
  std::vector<std::string> args = PromptFlags(prompts);
  for (const char* a : {"--max-tokens", "12", "--ignore-eos", "--json"}) args.push_back(a);
  const std::vector<json> want = RunJson({LATTICE_BINARY, "run", "--model", model.string()}, args);
  // tp2 x pp2 of this model: 4 KiB per block per worker; 40 KiB is 10 blocks (9 usable).
  Server server(model, {"--tp", "2", "--pp", "2", "--kv-cache-memory", "40960", "--block-size", "16"});
  std::vector<Streamed> got(prompts.size());
  std::vector<std::thread> clients;
  for (size_t i = 0; i < prompts.size(); ++i) {
    clients.emplace_back([&, i] { got[i] = Generate(server.stub(), prompts[i], 12); });
  }
  for (std::thread& t : clients) t.join();
  for (size_t i = 0; i < prompts.size(); ++i) {
    ASSERT_TRUE(got[i].status.ok()) << got[i].status.error_message();
    EXPECT_EQ(got[i].tokens, want[i]["output_ids"].get<std::vector<int>>()) << "prompt " << i;
  }
  const v1::InstanceStatus status = server.Status();
  EXPECT_EQ(status.kv_blocks_total(), 9);
  EXPECT_GT(status.num_preemptions(), 0);
  EXPECT_EQ(status.kv_blocks_used(), 0);
}

TEST(Serve, CancellingMidStreamFreesItsBlocks) {
  Server server(FixturesDir() / "llama_gqa_f32", {"--pp", "2"});
  // The tiny model can finish a whole request between the first token and the
  // cancel landing; such an attempt proves nothing, so try again (bounded).
  bool cancelled = false;
  for (int attempt = 0; attempt < 10 && !cancelled; ++attempt) {
    v1::GenerateRequest request;
    const std::vector<int> prompt = Prompt(30, 3 + attempt);
    request.mutable_prompt_ids()->Add(prompt.begin(), prompt.end());
    request.set_max_tokens(220);
    request.set_ignore_eos(true);
    grpc::ClientContext context;
    std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader = server.stub().Generate(&context, request);
    v1::GenerateResponse response;
    ASSERT_TRUE(reader->Read(&response));
    context.TryCancel();
    while (reader->Read(&response)) {
    }
    const grpc::StatusCode code = reader->Finish().error_code();
    ASSERT_TRUE(code == grpc::StatusCode::CANCELLED || code == grpc::StatusCode::OK) << code;
    cancelled = code == grpc::StatusCode::CANCELLED;
    v1::InstanceStatus status;
    for (int i = 0; i < 100; ++i) {
      status = server.Status();
      if (status.kv_blocks_used() == 0 && status.num_running() == 0) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    EXPECT_EQ(status.kv_blocks_used(), 0);
    EXPECT_EQ(status.num_running(), 0);
  }
  EXPECT_TRUE(cancelled) << "every attempt finished before its cancel landed";
  // And it still serves.
  EXPECT_TRUE(Generate(server.stub(), Prompt(5, 1), 3).status.ok());
}

TEST(Serve, BadInputIsInvalidArgumentNamingTheFieldAndTheServerGoesOn) {
  Server server(FixturesDir() / "llama_gqa_f32", {});
  struct Case {
    const char* name;
    std::function<void(v1::GenerateRequest&)> edit;
    grpc::StatusCode code;
    const char* message;
  };
  const Case cases[] = {
      {"empty prompt", [](auto& r) { r.clear_prompt_ids(); }, grpc::StatusCode::INVALID_ARGUMENT, "the prompt is empty"},
      {"id outside vocab", [](auto& r) { r.set_prompt_ids(1, 512); }, grpc::StatusCode::INVALID_ARGUMENT,
       "prompt_ids[1] = 512"},
      {"negative id", [](auto& r) { r.set_prompt_ids(0, -3); }, grpc::StatusCode::INVALID_ARGUMENT, "prompt_ids[0]"},
      {"too long", [](auto& r) { r.set_max_tokens(1000); }, grpc::StatusCode::INVALID_ARGUMENT, "maximum length"},
      {"max_tokens 0", [](auto& r) { r.set_max_tokens(0); }, grpc::StatusCode::INVALID_ARGUMENT, "max_tokens"},
      {"negative temperature", [](auto& r) { r.mutable_sampling()->set_temperature(-1); },
       grpc::StatusCode::INVALID_ARGUMENT, "temperature"},
      {"NaN temperature", [](auto& r) { r.mutable_sampling()->set_temperature(std::nanf("")); },
       grpc::StatusCode::INVALID_ARGUMENT, "temperature"},
      {"infinite temperature", [](auto& r) { r.mutable_sampling()->set_temperature(INFINITY); },
       grpc::StatusCode::INVALID_ARGUMENT, "temperature"},
      {"top_p 0", [](auto& r) { r.mutable_sampling()->set_top_p(0); }, grpc::StatusCode::INVALID_ARGUMENT, "top_p"},
      {"top_p 1.5", [](auto& r) { r.mutable_sampling()->set_top_p(1.5); }, grpc::StatusCode::INVALID_ARGUMENT, "top_p"},
      {"top_k -2", [](auto& r) { r.mutable_sampling()->set_top_k(-2); }, grpc::StatusCode::INVALID_ARGUMENT, "top_k"},
      {"min_p 2", [](auto& r) { r.mutable_sampling()->set_min_p(2); }, grpc::StatusCode::INVALID_ARGUMENT, "min_p"},
      {"negative logprobs", [](auto& r) { r.set_logprobs(-1); }, grpc::StatusCode::INVALID_ARGUMENT, "logprobs"},
      {"too many stop ids",
       [](auto& r) {
         for (int i = 0; i < 65; ++i) r.add_stop_token_ids(5);
       },
       grpc::StatusCode::INVALID_ARGUMENT, "stop_token_ids"},
      {"stop id outside vocab", [](auto& r) { r.add_stop_token_ids(9999); }, grpc::StatusCode::INVALID_ARGUMENT,
       "stop_token_ids[0]"},
      {"oversized prompt",
       [](auto& r) {
         for (int i = 0; i < 300; ++i) r.add_prompt_ids(5);
       },
       grpc::StatusCode::INVALID_ARGUMENT, "maximum length"},
  };
  for (const Case& c : cases) {
    v1::GenerateRequest request;
    for (int id : {5, 6, 7}) request.add_prompt_ids(id);
    request.set_max_tokens(4);
    c.edit(request);
    grpc::ClientContext context;
    std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader = server.stub().Generate(&context, request);
    v1::GenerateResponse response;
    EXPECT_FALSE(reader->Read(&response)) << c.name;
    const grpc::Status status = reader->Finish();
    EXPECT_EQ(status.error_code(), c.code) << c.name << ": " << status.error_message();
    EXPECT_NE(status.error_message().find(c.message), std::string::npos) << c.name << ": " << status.error_message();
  }
  const Streamed ok = Generate(server.stub(), Prompt(5, 2), 3);
  EXPECT_TRUE(ok.status.ok()) << ok.status.error_message();
  EXPECT_EQ(ok.tokens.size(), 3u);
  EXPECT_EQ(server.Status().kv_blocks_used(), 0);
}

}  // namespace
}  // namespace lattice

namespace lattice {
namespace {

TEST(Serve, IndependentDpInstancesBehindTheRouter) {
  const fs::path model = FixturesDir() / "llama_gqa_f32";
  std::vector<std::vector<int>> prompts;
  for (int i = 0; i < 12; ++i) prompts.push_back(Prompt(10 + i, i));
  std::vector<std::string> args = PromptFlags(prompts);
  for (const char* a : {"--max-tokens", "8", "--ignore-eos", "--json"}) args.push_back(a);
  const std::vector<json> want = RunJson({LATTICE_BINARY, "run", "--model", model.string()}, args);
  Server server(model, {"--dp", "2", "--tp", "2"});
  ExpectSame(want, RunJson({LATTICE_BINARY, "generate", "--server", server.address()}, args), "dp2 x tp2");
  grpc::ClientContext context;
  v1::ClusterStatus status;
  ASSERT_TRUE(server.stub().GetClusterStatus(&context, {}, &status).ok());
  ASSERT_EQ(status.instances_size(), 2);
  // Both instances served, each its own workers.
  for (const v1::InstanceStatus& instance : status.instances()) {
    EXPECT_TRUE(instance.healthy());
    EXPECT_EQ(instance.workers_size(), 2);
    EXPECT_GT(instance.num_steps(), 0) << "instance " << instance.instance() << " got no work";
  }
  // Prefix affinity: requests sharing their first block go to one instance, whose
  // prefix cache then serves them.
  const std::vector<int> shared = Prompt(40, 9);
  for (int i = 0; i < 3; ++i) {
    std::vector<int> p = shared;
    p.push_back(100 + i);
    EXPECT_TRUE(Generate(server.stub(), p, 2).status.ok());
  }
  grpc::ClientContext again;
  ASSERT_TRUE(server.stub().GetClusterStatus(&again, {}, &status).ok());
  int64_t hits = 0;
  for (const v1::InstanceStatus& instance : status.instances()) hits += instance.prefix_cache_hits();
  EXPECT_GE(hits, 2 * 32);
}

}  // namespace
}  // namespace lattice

namespace lattice {
namespace {

TEST(Serve, AFullQueueIsResourceExhaustedAndTheRestComplete) {
  Server server(FixturesDir() / "llama_gqa_f32", {"--max-queued-requests", "1", "--max-num-seqs", "1"});
  std::vector<Streamed> got(12);
  std::vector<std::thread> clients;
  for (int i = 0; i < 12; ++i) clients.emplace_back([&, i] { got[i] = Generate(server.stub(), Prompt(8, i), 40); });
  for (std::thread& t : clients) t.join();
  int exhausted = 0, completed = 0;
  for (const Streamed& s : got) {
    if (s.status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
      ++exhausted;
      EXPECT_NE(s.status.error_message().find("queue"), std::string::npos) << s.status.error_message();
    } else {
      ASSERT_TRUE(s.status.ok()) << s.status.error_message();
      EXPECT_EQ(s.tokens.size(), 40u);
      ++completed;
    }
  }
  EXPECT_GT(exhausted, 0);
  // At least the first; a second only if the first had left the queue for the batch
  // before the burst arrived (on a loaded 2-core machine it may not have).
  EXPECT_GE(completed, 1);
  // Once the burst is over the queue has room again.
  const Streamed after = Generate(server.stub(), Prompt(8, 99), 40);
  ASSERT_TRUE(after.status.ok()) << after.status.error_message();
  EXPECT_EQ(after.tokens.size(), 40u);
  EXPECT_EQ(server.Status().kv_blocks_used(), 0);
}

// grpc.health.v1.Health/Check by hand (the health proto is not in Debian's grpc++):
// request field 1 is the service name, response field 1 the status (1 = SERVING).
int HealthStatus(const std::string& address, const std::string& service) {
  grpc::GenericStub stub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  std::string request = std::string("\x0a", 1) + static_cast<char>(service.size()) + service;
  grpc::Slice slice(request);
  grpc::ByteBuffer request_buffer(&slice, 1), response_buffer;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  std::promise<grpc::Status> done;
  stub.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request_buffer, &response_buffer,
                 [&](grpc::Status status) { done.set_value(status); });
  const grpc::Status status = done.get_future().get();
  if (!status.ok()) return -static_cast<int>(status.error_code());
  std::vector<grpc::Slice> slices;
  response_buffer.Dump(&slices);
  std::string bytes;
  for (const grpc::Slice& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return bytes.size() >= 2 && bytes[0] == 0x08 ? bytes[1] : 0;  // an absent field is UNKNOWN (0)
}

TEST(Serve, HealthIsServingOnceTheWorkersAreUp) {
  Server server(FixturesDir() / "llama_gqa_f32", {"--pp", "2"});
  EXPECT_EQ(HealthStatus(server.address(), ""), 1);
  for (int i = 0; i < 50 && HealthStatus(server.address(), "lattice.v1.Lattice") != 1; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(HealthStatus(server.address(), "lattice.v1.Lattice"), 1);
}

}  // namespace
}  // namespace lattice
