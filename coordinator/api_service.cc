// The public API (see api_service.h).
#include "coordinator/api_service.h"

#include <deque>
#include <memory>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace lattice {
namespace {

uint64_t RandomSeed() {
  static thread_local std::mt19937_64 rng(std::random_device{}());
  return rng();
}

// Field checks the scheduler cannot make (it sees the internal request).
absl::Status CheckRequest(const v1::GenerateRequest& r, const ApiOptions& options) {
  if (r.prompt_ids_size() > options.max_prompt_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("prompt_ids has ", r.prompt_ids_size(),
                                                   " tokens, more than the limit of ", options.max_prompt_tokens));
  }
  if (r.logprobs() < 0) return absl::InvalidArgumentError(absl::StrCat("logprobs must be >= 0, got ", r.logprobs()));
  return absl::OkStatus();
}

// Everything but the prompt, which the caller sets (it may come from text).
SequenceRequest ToSequenceRequest(const v1::GenerateRequest& r) {
  SequenceRequest s;
  s.max_tokens = r.max_tokens();
  s.ignore_eos = r.ignore_eos();
  s.stop_token_ids.assign(r.stop_token_ids().begin(), r.stop_token_ids().end());
  s.num_logprobs = r.logprobs();
  const v1::SamplingParams& in = r.sampling();
  s.sampling.set_temperature(in.temperature());
  s.sampling.set_top_k(in.top_k());
  s.sampling.set_top_p(in.has_top_p() ? in.top_p() : 1.0f);
  s.sampling.set_min_p(in.min_p());
  s.sampling.set_seed(in.has_seed() ? in.seed() : RandomSeed());
  if (in.has_repetition_penalty()) s.sampling.set_repetition_penalty(in.repetition_penalty());
  s.sampling.set_presence_penalty(in.presence_penalty());
  s.sampling.set_frequency_penalty(in.frequency_penalty());
  s.sampling.set_min_tokens(in.min_tokens());
  s.sampling.mutable_logit_bias()->insert(in.logit_bias().begin(), in.logit_bias().end());
  return s;
}

// One Generate call. Three parties touch it, each on its own thread:
//  - gRPC's threads: construction, OnWriteDone, OnCancel, OnDone;
//  - the scheduler thread: State::OnUpdate/OnFailed, which only queue (never block);
//  - the TextPool: preparing a text or chat prompt (template, tokenizer) and submitting
//    it, and draining queued updates into responses (detokenization, stop strings).
// The reactor and the others share `State`, which outlives the reactor: the instance
// may report after the RPC is done, and queued pool tasks hold it.
class GenerateCall : public grpc::ServerWriteReactor<v1::GenerateResponse> {
 public:
  struct State : RequestSink, std::enable_shared_from_this<State> {
    // Guards `call` only; held briefly to hand a response to the reactor.
    absl::Mutex mu;
    GenerateCall* call ABSL_GUARDED_BY(mu) = nullptr;

    // The text pipeline: updates queued by the scheduler, drained in order on the pool.
    absl::Mutex pipeline_mu;
    std::deque<SequenceUpdate> pending ABSL_GUARDED_BY(pipeline_mu);
    bool draining ABSL_GUARDED_BY(pipeline_mu) = false;
    // Owned by the drain task (one at a time); set before the request is submitted.
    std::unique_ptr<OutputText> output;
    const TextService* text = nullptr;
    const Router* router = nullptr;
    int32_t max_prompt_tokens = 0;
    // Set once the request is submitted; read by OnCancel (gRPC thread) and the drain.
    absl::Mutex submit_mu;
    Instance* instance ABSL_GUARDED_BY(submit_mu) = nullptr;
    int64_t seq_id ABSL_GUARDED_BY(submit_mu) = -1;
    bool cancelled ABSL_GUARDED_BY(submit_mu) = false;
    bool ended = false;  // a final response was produced (drain task only)
    int32_t num_output_tokens = 0;
    v1::Usage usage;
    std::string request_id;
    std::vector<int32_t> prompt_ids;  // sent in the first response for text prompts
    bool send_prompt_ids = false;

    void OnUpdate(const SequenceUpdate& update) override {
      bool post = false;
      {
        absl::MutexLock lock(&pipeline_mu);
        pending.push_back(update);
        post = !draining;
        draining = true;
      }
      if (post) text->pool().Post([self = shared_from_this()] { self->Drain(); }, /*urgent=*/true);
    }
    void OnFailed(const absl::Status& status) override {
      absl::MutexLock lock(&mu);
      if (call != nullptr) call->Fail(ToGrpcStatus(status));
    }
    void Deliver(v1::GenerateResponse response, bool last) {
      absl::MutexLock lock(&mu);
      if (call != nullptr) call->Write(std::move(response), last);
    }
    void Fail(const grpc::Status& status) {
      absl::MutexLock lock(&mu);
      if (call != nullptr) call->Fail(status);
    }
    void Drain();
    // Turns one scheduler update into at most one response.
    void Process(const SequenceUpdate& update);
    // Routes and submits the request. gRPC's thread for id prompts, the pool for text
    // ones; no lock held (Submit takes the instance's).
    void Start(const v1::GenerateRequest& request, std::vector<int32_t> prompt_ids);
    // The client went away: cancel the sequence if it was submitted, or keep it from
    // being submitted.
    void Cancel();
    // Ends the call with `status` from the drain task and frees the sequence.
    void EndWithError(const grpc::Status& status);
  };

  GenerateCall(const Router& router, const TextService& text, const v1::GenerateRequest& request,
               const ApiOptions& options)
      : state_(std::make_shared<State>()) {
    state_->text = &text;
    state_->router = &router;
    state_->max_prompt_tokens = options.max_prompt_tokens;
    state_->request_id = request.request_id();
    {
      absl::MutexLock lock(&state_->mu);
      state_->call = this;
    }
    absl::Status status = CheckRequest(request, options);
    if (status.ok()) status = text.CheckRequest(request);
    if (!status.ok()) {
      Fail(ToGrpcStatus(status));
      return;
    }
    if (request.prompt_ids_size() > 0) {
      state_->Start(request, std::vector<int32_t>(request.prompt_ids().begin(), request.prompt_ids().end()));
      return;
    }
    // Text and chat prompts are prepared on the pool, off gRPC's threads.
    auto request_copy = std::make_shared<v1::GenerateRequest>(request);
    text.pool().Post([state = state_, request_copy] {
      auto ids = state->text->PromptIds(*request_copy);
      if (!ids.ok()) {
        state->Fail(ToGrpcStatus(ids.status()));
        return;
      }
      state->send_prompt_ids = true;
      state->Start(*request_copy, std::move(*ids));
    });
  }

  // Queues a response (under state_->mu): never blocks.
  void Write(v1::GenerateResponse response, bool last) {
    absl::MutexLock lock(&mu_);
    if (finished_) return;
    if (last) done_ = true;
    outgoing_.push_back(std::move(response));
    if (outgoing_.size() == 1) StartWrite(&outgoing_.front());
  }

  // A failure after the final response was queued (the instance failing while a stop
  // string's cancellation was still in flight) changes nothing: the request completed.
  void Fail(const grpc::Status& status) {
    absl::MutexLock lock(&mu_);
    if (done_) return;
    FinishLocked(status);
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    outgoing_.pop_front();
    if (!ok) outgoing_.clear();  // the stream is broken: nothing more can be written
    if (!outgoing_.empty()) {
      StartWrite(&outgoing_.front());
    } else if (finish_pending_) {
      // A finish (a cancel, a failure) arrived while this write was in flight; it is
      // already `finished_`, so FinishLocked would do nothing and the RPC would never end
      // (and the server's shutdown would wait for it forever).
      finish_pending_ = false;
      Finish(pending_status_);
    } else if (!ok) {
      FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "the client went away"));
    } else if (done_) {
      FinishLocked(grpc::Status::OK);
    }
  }

  void OnCancel() override {
    // No lock of ours held: the instance takes its own and reports through State.
    state_->Cancel();
    absl::MutexLock lock(&mu_);
    FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "the request was cancelled"));
  }

  void OnDone() override {
    {
      absl::MutexLock lock(&state_->mu);
      state_->call = nullptr;
    }
    delete this;
  }

 private:
  void FinishLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    finished_ = true;
    if (outgoing_.empty()) {
      Finish(status);
    } else if (!status.ok()) {
      // Let the write in progress end; Finish from OnWriteDone.
      outgoing_.erase(outgoing_.begin() + 1, outgoing_.end());
      finish_pending_ = true;
      pending_status_ = status;
    } else {
      finish_pending_ = true;
      pending_status_ = status;
    }
  }

  std::shared_ptr<State> state_;
  absl::Mutex mu_;
  std::deque<v1::GenerateResponse> outgoing_ ABSL_GUARDED_BY(mu_);
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_pending_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status pending_status_ ABSL_GUARDED_BY(mu_);
};

void GenerateCall::State::Start(const v1::GenerateRequest& request, std::vector<int32_t> prompt_ids) {
  if (static_cast<int64_t>(prompt_ids.size()) > max_prompt_tokens) {
    Fail(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                      absl::StrCat("the prompt has ", prompt_ids.size(), " tokens, more than the limit of ",
                                   max_prompt_tokens)));
    return;
  }
  Instance* target = router->Route(prompt_ids);
  if (target == nullptr) {
    Fail(grpc::Status(grpc::StatusCode::UNAVAILABLE, "no model instance is serving"));
    return;
  }
  // Ids are checked against the model's vocabulary by the instance's scheduler.
  if (text->has_tokenizer()) output = std::make_unique<OutputText>(*text->tokenizer(), prompt_ids, request);
  usage.set_prompt_tokens(static_cast<int32_t>(prompt_ids.size()));
  SequenceRequest sequence = ToSequenceRequest(request);
  sequence.prompt_ids = prompt_ids;
  this->prompt_ids = std::move(prompt_ids);
  {
    absl::MutexLock lock(&submit_mu);
    if (cancelled) return;
  }
  absl::StatusOr<int64_t> seq = target->Submit(std::move(sequence), shared_from_this());
  if (!seq.ok()) {
    Fail(ToGrpcStatus(seq.status()));
    return;
  }
  bool cancel_now = false;
  {
    absl::MutexLock lock(&submit_mu);
    instance = target;
    seq_id = *seq;
    cancel_now = cancelled;
  }
  if (cancel_now) target->Cancel(*seq);
}

void GenerateCall::State::Cancel() {
  Instance* target = nullptr;
  int64_t seq = -1;
  {
    absl::MutexLock lock(&submit_mu);
    cancelled = true;
    target = instance;
    seq = seq_id;
  }
  if (target != nullptr && seq >= 0) target->Cancel(seq);
}

void GenerateCall::State::EndWithError(const grpc::Status& status) {
  ended = true;
  Fail(status);
  Cancel();  // the server ended the call: gRPC calls no OnCancel, so free the sequence here
}

void GenerateCall::State::Drain() {
  while (true) {
    std::deque<SequenceUpdate> batch;
    {
      absl::MutexLock lock(&pipeline_mu);
      if (pending.empty()) {
        draining = false;
        return;
      }
      batch.swap(pending);
    }
    for (const SequenceUpdate& update : batch) Process(update);
  }
}

void GenerateCall::State::Process(const SequenceUpdate& update) {
  if (ended) return;
  if (update.finish_reason == FinishReason::kCancelled) {
    ended = true;
    Fail(grpc::Status(grpc::StatusCode::CANCELLED, "the request was cancelled"));
    return;
  }
  v1::GenerateResponse response;
  response.set_request_id(request_id);
  if (send_prompt_ids) {
    response.mutable_prompt_ids()->Add(prompt_ids.begin(), prompt_ids.end());
    send_prompt_ids = false;
  }
  usage.set_cached_tokens(update.num_cached_tokens);
  std::optional<std::string> stop_string;
  std::string text;
  for (size_t i = 0; i < update.token_ids.size(); ++i) {
    const int32_t id = update.token_ids[i];
    response.add_token_ids(id);
    if (i < update.logprobs.size()) {
      v1::TopLogprobs* top = response.add_logprobs();
      for (const auto& [candidate, logprob] : update.logprobs[i]) {
        v1::TokenLogprob* lp = top->add_candidates();
        lp->set_token_id(candidate);
        lp->set_logprob(logprob);
      }
    }
    ++num_output_tokens;
    if (output == nullptr) continue;
    const bool stops_sequence = update.finish_reason == FinishReason::kStop && i + 1 == update.token_ids.size();
    auto piece = output->Push(id, num_output_tokens, stops_sequence);
    if (!piece.ok()) {
      EndWithError(ToGrpcStatus(piece.status()));
      return;
    }
    text += piece->text;
    if (piece->stop_string) {
      stop_string = std::move(piece->stop_string);
      break;  // the tokens after the one that completed the stop string are dropped
    }
  }
  usage.set_completion_tokens(num_output_tokens);
  FinishReason finish = update.finish_reason;
  if (stop_string) {
    finish = FinishReason::kStop;
    response.set_stop_string(*stop_string);
  } else if (finish != FinishReason::kNone && output != nullptr) {
    auto rest = output->Finish();
    if (!rest.ok()) {
      EndWithError(ToGrpcStatus(rest.status()));
      return;
    }
    text += rest->text;
    if (rest->stop_string) {
      finish = FinishReason::kStop;
      stop_string = std::move(rest->stop_string);
      response.set_stop_string(*stop_string);
    }
  }
  if (finish == FinishReason::kStop && !stop_string && !update.token_ids.empty()) {
    response.set_stop_token_id(update.token_ids.back());
  }
  response.set_text(std::move(text));
  const bool last = finish != FinishReason::kNone;
  if (last) {
    response.set_finish_reason(finish == FinishReason::kStop ? v1::FINISH_REASON_STOP : v1::FINISH_REASON_LENGTH);
    *response.mutable_usage() = usage;
    ended = true;
  }
  Deliver(std::move(response), last);
  // A stop string ends the sequence before the scheduler knows: cancel it there (its
  // cancellation update is ignored above; if it is not submitted yet, Start cancels it).
  if (stop_string && update.finish_reason == FinishReason::kNone) Cancel();
}

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

grpc::ServerWriteReactor<v1::GenerateResponse>* ApiService::Generate(grpc::CallbackServerContext*,
                                                                     const v1::GenerateRequest* request) {
  ++num_requests_;
  return new GenerateCall(router_, text_, *request, options_);
}

grpc::ServerUnaryReactor* ApiService::GetModelInfo(grpc::CallbackServerContext* context,
                                                   const v1::GetModelInfoRequest*, v1::ModelInfo* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  std::optional<pb::ModelSummary> model;
  for (Instance* instance : router_.instances()) {
    if (instance->ready()) {
      model = instance->model();
      break;
    }
  }
  if (!model) {
    reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the model is still loading"));
    return reactor;
  }
  response->set_architecture(model->architecture());
  response->set_vocab_size(model->vocab_size());
  response->set_max_model_len(model->max_model_len());
  response->set_num_hidden_layers(model->num_hidden_layers());
  response->set_hidden_size(model->hidden_size());
  response->mutable_eos_token_ids()->CopyFrom(model->eos_token_ids());
  response->set_tp(options_.parallel.tp());
  response->set_pp(options_.parallel.pp());
  response->set_dp(options_.parallel.dp());
  response->set_ep(options_.parallel.ep());
  response->set_model_name(options_.model_name);
  response->set_has_tokenizer(text_.has_tokenizer());
  response->set_has_chat_template(text_.has_chat_template());
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* ApiService::GetClusterStatus(grpc::CallbackServerContext* context,
                                                       const v1::GetClusterStatusRequest*,
                                                       v1::ClusterStatus* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  int32_t queued = 0;
  for (Instance* instance : router_.instances()) {
    *response->add_instances() = instance->Status();
    queued += response->instances(response->instances_size() - 1).num_waiting();
  }
  response->set_num_requests_total(num_requests_.load());
  response->set_num_queued(queued);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace lattice
