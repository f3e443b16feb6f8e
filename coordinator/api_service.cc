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

SequenceRequest ToSequenceRequest(const v1::GenerateRequest& r) {
  SequenceRequest s;
  s.prompt_ids.assign(r.prompt_ids().begin(), r.prompt_ids().end());
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

// One Generate call. The reactor and the instance share `State`: the instance may
// report after the RPC is done, and State outlives the reactor.
class GenerateCall : public grpc::ServerWriteReactor<v1::GenerateResponse> {
 public:
  struct State : RequestSink {
    absl::Mutex mu;
    GenerateCall* call ABSL_GUARDED_BY(mu) = nullptr;
    void OnUpdate(const SequenceUpdate& update) override {
      absl::MutexLock lock(&mu);
      if (call != nullptr) call->Push(update);
    }
    void OnFailed(const absl::Status& status) override {
      absl::MutexLock lock(&mu);
      if (call != nullptr) call->Fail(status);
    }
  };

  GenerateCall(Instance& instance, const v1::GenerateRequest& request, const ApiOptions& options)
      : instance_(instance), state_(std::make_shared<State>()), request_id_(request.request_id()) {
    {
      absl::MutexLock lock(&state_->mu);
      state_->call = this;
    }
    usage_.set_prompt_tokens(request.prompt_ids_size());
    absl::Status status = CheckRequest(request, options);
    absl::StatusOr<int64_t> seq = status.ok() ? instance.Submit(ToSequenceRequest(request), state_) : status;
    absl::MutexLock lock(&mu_);
    if (!seq.ok()) {
      FinishLocked(ToGrpcStatus(seq.status()));
      return;
    }
    seq_id_ = *seq;
  }

  // Scheduler thread (under the instance's lock): queue, never block.
  void Push(const SequenceUpdate& update) {
    absl::MutexLock lock(&mu_);
    if (finished_) return;
    v1::GenerateResponse response;
    response.set_request_id(request_id_);
    response.mutable_token_ids()->Add(update.token_ids.begin(), update.token_ids.end());
    for (const TokenLogprobs& token : update.logprobs) {
      v1::TopLogprobs* top = response.add_logprobs();
      for (const auto& [id, logprob] : token) {
        v1::TokenLogprob* lp = top->add_candidates();
        lp->set_token_id(id);
        lp->set_logprob(logprob);
      }
    }
    usage_.set_completion_tokens(usage_.completion_tokens() + static_cast<int32_t>(update.token_ids.size()));
    usage_.set_cached_tokens(update.num_cached_tokens);
    if (update.finish_reason == FinishReason::kCancelled) {
      FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "the request was cancelled"));
      return;
    }
    if (update.finish_reason != FinishReason::kNone) {
      response.set_finish_reason(update.finish_reason == FinishReason::kStop ? v1::FINISH_REASON_STOP
                                                                               : v1::FINISH_REASON_LENGTH);
      *response.mutable_usage() = usage_;
      done_ = true;
    }
    outgoing_.push_back(std::move(response));
    if (outgoing_.size() == 1) StartWrite(&outgoing_.front());
  }

  void Fail(const absl::Status& status) {
    absl::MutexLock lock(&mu_);
    FinishLocked(ToGrpcStatus(status));
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
    int64_t seq;
    {
      absl::MutexLock lock(&mu_);
      seq = seq_id_;
    }
    // Outside our lock: the instance takes its own and may call Push.
    if (seq >= 0) instance_.Cancel(seq);
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

  Instance& instance_;
  std::shared_ptr<State> state_;
  const std::string request_id_;
  absl::Mutex mu_;
  int64_t seq_id_ ABSL_GUARDED_BY(mu_) = -1;
  std::deque<v1::GenerateResponse> outgoing_ ABSL_GUARDED_BY(mu_);
  v1::Usage usage_ ABSL_GUARDED_BY(mu_);
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_pending_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status pending_status_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

// A Generate call that ends before it starts (no instance can take it).
class RejectedCall : public grpc::ServerWriteReactor<v1::GenerateResponse> {
 public:
  explicit RejectedCall(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

grpc::ServerWriteReactor<v1::GenerateResponse>* ApiService::Generate(grpc::CallbackServerContext*,
                                                                     const v1::GenerateRequest* request) {
  ++num_requests_;
  Instance* instance = router_.Route(std::span<const int32_t>(request->prompt_ids().data(),
                                                              static_cast<size_t>(request->prompt_ids_size())));
  if (instance == nullptr) {
    return new RejectedCall(grpc::Status(grpc::StatusCode::UNAVAILABLE, "no model instance is serving"));
  }
  return new GenerateCall(*instance, *request, options_);
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
