// `lattice generate` (see generate_command.h). Each prompt's RPC is one callback-API
// reactor, not a thread: gRPC runs the reactors' On* methods on its own threads, while the
// main thread builds and starts the calls and then only collects finished ones.
#include "cli/generate_command.h"

#include <grpc/support/time.h>
#include <grpcpp/grpcpp.h>

#include <cstdio>
#include <deque>
#include <iostream>
#include <memory>
#include <set>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "cli/int_list.h"
#include "cli/result_json.h"
#include "lattice/v1/lattice.grpc.pb.h"

namespace lattice {
namespace {

namespace v1 = ::lattice::v1;

// gRPC's default cap is 4 MiB; a long stream's chunk with top-k logprobs can exceed it.
constexpr int kMaxReceiveMessageBytes = 64 << 20;

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "lattice generate: %s: %s\n",
               absl::StatusCodeToString(status.code()).c_str(),
               std::string(status.message()).c_str());
  return 2;
}

FinishReason FinishReasonFromProto(v1::FinishReason reason) {
  switch (reason) {
    case v1::FINISH_REASON_LENGTH:
      return FinishReason::kLength;
    case v1::FINISH_REASON_STOP:
      return FinishReason::kStop;
    default:
      return FinishReason::kNone;
  }
}

// Indices of the calls whose OnDone has run, in the order they finished. Pushed from gRPC's
// threads, popped by the main thread.
class DoneQueue {
 public:
  void Push(size_t index) {
    absl::MutexLock lock(&mu_);
    done_.push_back(index);
  }

  // Blocks until a call has finished.
  size_t Pop() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(this, &DoneQueue::HasDone));
    const size_t index = done_.front();
    done_.pop_front();
    return index;
  }

 private:
  bool HasDone() const ABSL_SHARED_LOCKS_REQUIRED(mu_) { return !done_.empty(); }

  absl::Mutex mu_;
  std::deque<size_t> done_ ABSL_GUARDED_BY(mu_);
};

// One prompt's Generate stream. gRPC never runs two reactions of one call at once, so the
// results need no lock: reactions write them, and the main thread reads them only after
// OnDone handed the call to the DoneQueue (whose mutex orders the two).
class GenerateCall final : public grpc::ClientReadReactor<v1::GenerateResponse> {
 public:
  GenerateCall(size_t index, v1::GenerateRequest request, bool stream, bool stream_text, DoneQueue* done)
      : index_(index), request_(std::move(request)), stream_(stream), stream_text_(stream_text), done_(done) {}

  // Main thread, once.
  void Start(v1::Lattice::Stub& stub, gpr_timespec deadline) {
    context_.set_deadline(deadline);
    // The channel has connected already; ride out a reconnect within the deadline rather
    // than failing the prompt at once.
    context_.set_wait_for_ready(true);
    stub.async()->Generate(&context_, &request_, this);
    StartRead(&response_);
    StartCall();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // the stream has ended; OnDone brings its status
    if (response_.prompt_ids_size() > 0) prompt_ids_.assign(response_.prompt_ids().begin(), response_.prompt_ids().end());
    text_ += response_.text();
    if (!response_.stop_string().empty()) stop_string_ = response_.stop_string();
    if (stream_text_) {
      std::fwrite(response_.text().data(), 1, response_.text().size(), stdout);
      std::fflush(stdout);
    }
    output_ids_.insert(output_ids_.end(), response_.token_ids().begin(),
                       response_.token_ids().end());
    for (const v1::TopLogprobs& top : response_.logprobs()) {
      TokenLogprobs& token = logprobs_.emplace_back();
      for (const v1::TokenLogprob& candidate : top.candidates()) {
        token.emplace_back(candidate.token_id(), candidate.logprob());
      }
    }
    if (response_.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
      finish_reason_ = FinishReasonFromProto(response_.finish_reason());
    }
    if (stream_ && !stream_text_ && response_.token_ids_size() > 0) {
      std::fprintf(stderr, "lattice generate: [%zu] +%s\n", index_,
                   absl::StrJoin(response_.token_ids(), ",").c_str());
    }
    StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override {
    // The one place a gRPC status becomes an absl::Status; the codes are the same numbers.
    status_ =
        absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
    if (status_.ok() && finish_reason_ == FinishReason::kNone) {
      status_ = absl::InternalError(
          absl::StrCat("the stream of prompt ", index_, " ended without a finish reason"));
    }
    done_->Push(index_);  // the last touch of this object on gRPC's side
  }

  // The rest: main thread, after the call came out of the DoneQueue.
  const absl::Status& status() const { return status_; }

  // What `lattice run --json` prints for the same prompt (with "text" when the server
  // has a tokenizer).
  nlohmann::json ToJson(bool with_text) const {
    nlohmann::json j = ResultToJson(PromptIds(), output_ids_, logprobs_, finish_reason_);
    if (with_text) AddTextToJson(text_, stop_string_, j);
    return j;
  }

  // The same as `lattice run` without --json.
  std::string ToText(bool with_text) const {
    return ResultToText(request_, PromptIds(), output_ids_, finish_reason_, with_text ? &text_ : nullptr);
  }
  const std::string& text() const { return text_; }

 private:
  std::vector<int32_t> PromptIds() const {
    if (!prompt_ids_.empty()) return prompt_ids_;
    return std::vector<int32_t>(request_.prompt_ids().begin(), request_.prompt_ids().end());
  }

  const size_t index_;
  const v1::GenerateRequest request_;
  const bool stream_;
  const bool stream_text_;
  DoneQueue* const done_;
  std::vector<int32_t> prompt_ids_;  // from the server, for text prompts
  std::string text_;
  std::string stop_string_;
  grpc::ClientContext context_;
  v1::GenerateResponse response_;
  std::vector<int32_t> output_ids_;
  std::vector<TokenLogprobs> logprobs_;
  FinishReason finish_reason_ = FinishReason::kNone;
  absl::Status status_;
};

absl::StatusOr<std::vector<v1::GenerateRequest>> BuildRequests(const GenerateCommandOptions& o) {
  std::vector<int32_t> stop_token_ids;
  if (!o.stop_token_ids.empty()) {
    absl::StatusOr<std::vector<int32_t>> ids = ParseIntList(o.stop_token_ids, "--stop-token-ids");
    if (!ids.ok()) return ids.status();
    stop_token_ids = *std::move(ids);
  }
  // Empty prompts are sent as they are: rejecting them is the server's job, and tests of
  // that rejection go through this client.
  absl::StatusOr<std::vector<v1::GenerateRequest>> requests = BuildPromptRequests(o.text);
  if (!requests.ok()) return requests.status();
  for (v1::GenerateRequest& request : *requests) {
    request.set_max_tokens(o.max_tokens);
    v1::SamplingParams& sampling = *request.mutable_sampling();
    sampling.set_temperature(o.temperature);
    sampling.set_top_k(o.top_k);
    sampling.set_min_p(o.min_p);
    // Optional fields stay unset unless given, so the server's defaults apply.
    if (o.top_p.has_value()) sampling.set_top_p(*o.top_p);
    if (o.seed.has_value()) sampling.set_seed(*o.seed);
    if (absl::Status status = SetSamplingControls(o.sampling_controls, sampling); !status.ok()) return status;
    request.set_logprobs(o.logprobs);
    request.set_ignore_eos(o.ignore_eos);
    request.mutable_stop_token_ids()->Add(stop_token_ids.begin(), stop_token_ids.end());
  }
  return requests;
}

}  // namespace

void AddGenerateCommandFlags(CLI::App& app, GenerateCommandOptions& o) {
  app.add_option("--server", o.server, "Lattice server address, HOST:PORT")->required();
  AddTextFlags(app, o.text);
  // No range checks on the request fields: the server validates them and names the field.
  app.add_option("--max-tokens", o.max_tokens, "Tokens to generate per prompt");
  app.add_option("--temperature", o.temperature, "Sampling temperature (0: greedy)");
  app.add_option("--top-p", o.top_p, "Nucleus sampling mass (unset: off)");
  app.add_option("--top-k", o.top_k, "Keep the k most likely tokens (0 or -1: off)");
  app.add_option("--min-p", o.min_p, "Drop tokens below min_p times the top probability (0: off)");
  app.add_option("--seed", o.seed,
                 "Per-request sampling seed, each prompt the same (unset: the server picks)");
  AddSamplingControlFlags(app, o.sampling_controls);
  app.add_option("--logprobs", o.logprobs, "Top-k logprobs to return per output token");
  app.add_flag("--ignore-eos", o.ignore_eos, "Do not stop at the end-of-sequence token");
  app.add_option("--stop-token-ids", o.stop_token_ids,
                 "Comma-separated extra token ids that end generation");
  app.add_flag("--json", o.json, "One JSON object per prompt, one per line, in input order");
  app.add_flag("--stream", o.stream,
               "One text prompt: print its text as it streams; otherwise echo each chunk of ids to stderr");
  app.add_option("--timeout", o.timeout_s,
                 "Seconds each request may take, reaching the server included (0: no limit)")
      ->check(CLI::NonNegativeNumber);
}

int GenerateCommand(const GenerateCommandOptions& o) {
  absl::StatusOr<std::vector<v1::GenerateRequest>> requests = BuildRequests(o);
  if (!requests.ok()) return Fail(requests.status());

  const gpr_timespec deadline =
      o.timeout_s > 0 ? gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
                                     gpr_time_from_millis(static_cast<int64_t>(o.timeout_s * 1000),
                                                          GPR_TIMESPAN))
                      : gpr_inf_future(GPR_CLOCK_REALTIME);
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxReceiveMessageBytes);
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(o.server, grpc::InsecureChannelCredentials(), args);
  // Waiting here (rather than in each call) turns an unreachable server into one clear
  // line instead of one DEADLINE_EXCEEDED per prompt, and lets a client started alongside
  // its server wait for it.
  if (!channel->WaitForConnected(deadline)) {
    return Fail(absl::UnavailableError(
        absl::StrCat("cannot reach ", o.server, " within ", o.timeout_s, " s")));
  }

  v1::Lattice::Stub stub(channel);
  // Text is printed when the server has a tokenizer (ids-only servers print ids).
  v1::ModelInfo info;
  {
    grpc::ClientContext context;
    context.set_deadline(deadline);
    if (grpc::Status status = stub.GetModelInfo(&context, v1::GetModelInfoRequest(), &info); !status.ok()) {
      return Fail(absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message()));
    }
  }
  const bool with_text = info.has_tokenizer();
  const bool stream_text = o.stream && with_text && !o.json && requests->size() == 1;
  if (stream_text && !(*requests)[0].prompt().empty()) {
    std::fwrite((*requests)[0].prompt().data(), 1, (*requests)[0].prompt().size(), stdout);
  }
  DoneQueue done;
  std::vector<std::unique_ptr<GenerateCall>> calls;
  for (size_t i = 0; i < requests->size(); ++i) {
    calls.push_back(std::make_unique<GenerateCall>(i, std::move((*requests)[i]), o.stream, stream_text, &done));
  }
  for (const std::unique_ptr<GenerateCall>& call : calls) call->Start(stub, deadline);

  int code = 0;
  // Many prompts failing alike (the server went away) is one line, not one per prompt.
  std::set<std::pair<absl::StatusCode, std::string>> reported;
  for (size_t n = 0; n < calls.size(); ++n) {
    const GenerateCall& call = *calls[done.Pop()];
    if (!call.status().ok()) {
      code = 2;
      if (reported.emplace(call.status().code(), std::string(call.status().message())).second) {
        Fail(call.status());
      }
    } else if (stream_text) {
      std::cout << std::endl;
    } else if (!o.json && !with_text) {
      std::cout << call.ToText(false) << std::endl;
    }
  }
  // Text and JSON lines come in input order: a reader pairs result i with prompt i.
  if (code == 0 && !stream_text && (o.json || with_text)) {
    for (const std::unique_ptr<GenerateCall>& call : calls) {
      if (o.json) {
        std::cout << call->ToJson(with_text).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
      } else {
        std::cout << call->ToText(true) << "\n";
      }
    }
    std::cout.flush();
  }
  return code;
}

}  // namespace lattice
