// `lattice bench serve` (see bench_serve.h).
#include "cli/bench_serve.h"

#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <thread>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "cli/bench_metrics.h"
#include "lattice/v1/lattice.grpc.pb.h"

namespace lattice {
namespace {

namespace v1 = ::lattice::v1;
using Clock = std::chrono::steady_clock;

// gRPC's default cap is 4 MiB; a long stream's chunk with top-k logprobs can exceed it.
constexpr int kMaxReceiveMessageBytes = 64 << 20;

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "lattice bench serve: %s\n", std::string(status.message()).c_str());
  return 2;
}

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

Clock::time_point After(Clock::time_point t, double seconds) {
  return t + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

std::string CodeName(grpc::StatusCode code) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

// How many calls have finished (and failed), and when the last one did. Written by
// gRPC's threads (each call's OnDone), read and waited on by the dispatcher.
class DoneCounter {
 public:
  void Add(Clock::time_point when, bool ok) {
    absl::MutexLock lock(&mu_);
    ++num_done_;
    if (!ok) ++num_failed_;
    last_done_ = std::max(last_done_, when);
  }

  // Dispatcher: returns once more than `seen` calls have finished or at `deadline`.
  void WaitForMore(int64_t seen, Clock::time_point deadline) {
    absl::MutexLock lock(&mu_);
    seen_ = seen;
    const absl::Time until = deadline == Clock::time_point::max()
                                 ? absl::InfiniteFuture()
                                 : absl::Now() + absl::FromChrono(deadline - Clock::now());
    mu_.AwaitWithDeadline(absl::Condition(this, &DoneCounter::HasMore), until);
  }

  int64_t num_done() {
    absl::MutexLock lock(&mu_);
    return num_done_;
  }
  int64_t num_failed() {
    absl::MutexLock lock(&mu_);
    return num_failed_;
  }
  Clock::time_point last_done() {
    absl::MutexLock lock(&mu_);
    return last_done_;
  }

 private:
  bool HasMore() const ABSL_SHARED_LOCKS_REQUIRED(mu_) { return num_done_ > seen_; }

  absl::Mutex mu_;
  int64_t num_done_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t num_failed_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t seen_ ABSL_GUARDED_BY(mu_) = 0;
  Clock::time_point last_done_ ABSL_GUARDED_BY(mu_){};
};

// One request's Generate stream. gRPC never runs two reactions of one call at once and
// Start happens before them, so the record needs no lock; the dispatcher reads it only
// after every call is done (ordered by the DoneCounter's mutex).
class BenchCall final : public grpc::ClientReadReactor<v1::GenerateResponse> {
 public:
  BenchCall(v1::GenerateRequest request, Clock::time_point start, DoneCounter* done)
      : request_(std::move(request)), start_(start), done_(done) {}

  // Dispatcher thread, once.
  void Start(v1::Lattice::Stub& stub) {
    record_.prompt_tokens = request_.prompt_ids_size();
    stub.async()->Generate(&context_, &request_, this);
    StartRead(&response_);
    record_.send_time_s = Seconds(Clock::now() - start_);
    StartCall();
  }

  // Dispatcher thread, any time after Start (a finished call ignores it).
  void CancelAtTimeLimit() {
    cancelled_at_limit_.store(true);
    context_.TryCancel();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // the stream has ended; OnDone brings its status
    const double now = Seconds(Clock::now() - start_);
    if (response_.token_ids_size() > 0) record_.chunks.push_back({now, response_.token_ids_size()});
    record_.output_tokens += response_.token_ids_size();
    record_.end_time_s = now;
    num_logprobs_ += response_.logprobs_size();
    if (response_.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
      finish_reason_ = response_.finish_reason();
      usage_ = response_.usage();
    }
    StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override {
    const Clock::time_point now = Clock::now();
    record_.error = Check(status);
    record_.cached_tokens = usage_.cached_tokens();
    done_->Add(now, record_.ok());  // the last touch of this object on gRPC's side
  }

  // Dispatcher thread, after the call is done.
  const BenchRequestRecord& record() const { return record_; }

 private:
  // The request's error, or "" when it completed and what arrived matches its usage.
  std::string Check(const grpc::Status& status) const {
    if (!status.ok()) {
      if (status.error_code() == grpc::StatusCode::CANCELLED && cancelled_at_limit_.load()) {
        return "CANCELLED: cancelled at the time limit";
      }
      return absl::StrCat(CodeName(status.error_code()), ": ", status.error_message());
    }
    if (finish_reason_ == v1::FINISH_REASON_UNSPECIFIED)
      return "INTERNAL: the stream ended without a finish reason";
    if (usage_.completion_tokens() != record_.output_tokens) {
      return absl::StrCat("INTERNAL: usage.completion_tokens is ", usage_.completion_tokens(),
                          " but ", record_.output_tokens, " tokens arrived");
    }
    if (usage_.prompt_tokens() != record_.prompt_tokens) {
      return absl::StrCat("INTERNAL: usage.prompt_tokens is ", usage_.prompt_tokens(),
                          " but the prompt has ", record_.prompt_tokens, " tokens");
    }
    if (finish_reason_ == v1::FINISH_REASON_LENGTH &&
        record_.output_tokens != request_.max_tokens()) {
      return absl::StrCat("INTERNAL: finish_reason length after ", record_.output_tokens,
                          " of max_tokens ", request_.max_tokens(), " tokens");
    }
    if (finish_reason_ == v1::FINISH_REASON_STOP &&
        (request_.ignore_eos() || record_.output_tokens > request_.max_tokens())) {
      return absl::StrCat("INTERNAL: finish_reason stop after ", record_.output_tokens, " tokens",
                          request_.ignore_eos() ? " with ignore_eos" : "");
    }
    if (request_.logprobs() > 0 && num_logprobs_ != record_.output_tokens) {
      return absl::StrCat("INTERNAL: ", num_logprobs_, " logprobs entries for ",
                          record_.output_tokens, " tokens");
    }
    return "";
  }

  const v1::GenerateRequest request_;
  const Clock::time_point start_;
  DoneCounter* const done_;
  grpc::ClientContext context_;
  v1::GenerateResponse response_;
  std::atomic<bool> cancelled_at_limit_{false};
  BenchRequestRecord record_;
  int64_t num_logprobs_ = 0;
  v1::FinishReason finish_reason_ = v1::FINISH_REASON_UNSPECIFIED;
  v1::Usage usage_;
};

// Progress on stderr, drawn by the dispatcher: on a terminal a bar redrawn at most four
// times a second; elsewhere (a log, a pipe) one plain line per tenth of the requests.
class ProgressBar {
 public:
  ProgressBar(bool enabled, int64_t total)
      : enabled_(enabled), tty_(isatty(STDERR_FILENO) == 1), total_(total) {}

  // When the next redraw is due (max: never, only completions trigger it).
  Clock::time_point NextDraw() const {
    return enabled_ && tty_ ? After(last_draw_, 0.25) : Clock::time_point::max();
  }

  void Update(Clock::time_point now, double elapsed_s, int64_t sent, int64_t done, int64_t failed) {
    if (!enabled_) return;
    if (tty_) {
      if (now < NextDraw() && done < total_) return;
      last_draw_ = now;
      constexpr int kWidth = 30;
      const int filled = static_cast<int>(kWidth * done / std::max<int64_t>(total_, 1));
      std::fprintf(stderr, "\r\033[K[%s%s] %lld/%lld done (%lld failed), %lld in flight, %.1f s",
                   std::string(filled, '#').c_str(), std::string(kWidth - filled, '.').c_str(),
                   static_cast<long long>(done), static_cast<long long>(total_),
                   static_cast<long long>(failed), static_cast<long long>(sent - done), elapsed_s);
      std::fflush(stderr);
      return;
    }
    const int64_t tenth = 10 * done / std::max<int64_t>(total_, 1);
    if (tenth == last_tenth_) return;
    last_tenth_ = tenth;
    std::fprintf(stderr,
                 "lattice bench serve: %lld/%lld done (%lld failed), %lld in flight, %.1f s\n",
                 static_cast<long long>(done), static_cast<long long>(total_),
                 static_cast<long long>(failed), static_cast<long long>(sent - done), elapsed_s);
  }

  void Finish() {
    if (enabled_ && tty_) std::fprintf(stderr, "\n");
  }

 private:
  const bool enabled_;
  const bool tty_;
  const int64_t total_;
  Clock::time_point last_draw_{};
  int64_t last_tenth_ = 0;
};

struct RunOutcome {
  std::vector<BenchRequestRecord> records;  // one per request sent, in send order
  double duration_s = 0.0;
  bool stopped_at_time_limit = false;
};

v1::GenerateRequest MakeRequest(const BenchServeOptions& o, const BenchRequest& r, size_t index) {
  v1::GenerateRequest request;
  request.set_request_id(absl::StrCat("bench-", index));
  request.mutable_prompt_ids()->Add(r.prompt_ids.begin(), r.prompt_ids.end());
  request.set_max_tokens(r.output_len);
  request.set_ignore_eos(o.ignore_eos);
  request.set_logprobs(o.logprobs);
  v1::SamplingParams& sampling = *request.mutable_sampling();
  sampling.set_temperature(o.temperature);
  sampling.set_top_k(o.top_k);
  if (o.top_p.has_value()) sampling.set_top_p(*o.top_p);
  return request;
}

// The dispatcher loop: sends request i at start + arrivals[i] (later if --max-concurrency
// requests are in flight), and at the time limit stops sending and cancels the rest.
RunOutcome Dispatch(v1::Lattice::Stub& stub, const BenchServeOptions& o,
                    const std::vector<BenchRequest>& workload,
                    const std::vector<double>& arrivals) {
  DoneCounter done;
  ProgressBar progress(!o.disable_tqdm, static_cast<int64_t>(workload.size()));
  std::vector<std::unique_ptr<BenchCall>> calls;
  calls.reserve(workload.size());
  const size_t max_in_flight =
      o.max_concurrency.has_value() ? static_cast<size_t>(*o.max_concurrency) : SIZE_MAX;
  const Clock::time_point start = Clock::now();
  const Clock::time_point limit =
      o.time_limit_s > 0 ? After(start, o.time_limit_s) : Clock::time_point::max();
  bool stopped = false;
  while (true) {
    const Clock::time_point now = Clock::now();
    const size_t num_done = static_cast<size_t>(done.num_done());
    if (!stopped && now >= limit) {
      stopped = true;
      for (const std::unique_ptr<BenchCall>& call : calls) call->CancelAtTimeLimit();
    }
    const bool sending = !stopped && calls.size() < workload.size();
    const bool slot_free = calls.size() - num_done < max_in_flight;
    const Clock::time_point next_arrival =
        sending ? After(start, arrivals[calls.size()]) : Clock::time_point::max();
    if (sending && slot_free && now >= next_arrival) {
      const size_t index = calls.size();
      calls.push_back(
          std::make_unique<BenchCall>(MakeRequest(o, workload[index], index), start, &done));
      calls.back()->Start(stub);
      continue;
    }
    progress.Update(now, Seconds(now - start), static_cast<int64_t>(calls.size()),
                    static_cast<int64_t>(num_done), done.num_failed());
    if (!sending && num_done == calls.size()) break;
    Clock::time_point wake =
        std::min(stopped ? Clock::time_point::max() : limit, progress.NextDraw());
    if (sending && slot_free) wake = std::min(wake, next_arrival);
    done.WaitForMore(static_cast<int64_t>(num_done), wake);  // any completion wakes it too
  }
  progress.Finish();
  RunOutcome outcome;
  outcome.stopped_at_time_limit = stopped;
  for (const std::unique_ptr<BenchCall>& call : calls) outcome.records.push_back(call->record());
  if (!calls.empty()) outcome.duration_s = Seconds(done.last_done() - start);
  return outcome;
}

absl::Status CheckOptions(const BenchServeOptions& o) {
  if (o.host.empty()) return absl::InvalidArgumentError("--host is empty");
  if (o.port < 1 || o.port > 65535)
    return absl::InvalidArgumentError(absl::StrCat("--port must be in [1, 65535], got ", o.port));
  if (!(o.request_rate > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--request-rate must be > 0 (inf: all at once), got ", o.request_rate));
  }
  if (!(o.burstiness > 0) || std::isinf(o.burstiness)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--burstiness must be a finite number > 0, got ", o.burstiness));
  }
  if (o.max_concurrency.has_value() && *o.max_concurrency < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max-concurrency must be >= 1, got ", *o.max_concurrency));
  }
  if (!(o.time_limit_s >= 0) || std::isinf(o.time_limit_s)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--time-limit must be >= 0 seconds (0: none), got ", o.time_limit_s));
  }
  if (!(o.ready_check_timeout_s >= 0) || std::isinf(o.ready_check_timeout_s)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--ready-check-timeout-sec must be >= 0, got ", o.ready_check_timeout_s));
  }
  if (!(o.temperature >= 0) || std::isinf(o.temperature)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--temperature must be >= 0, got ", o.temperature));
  }
  if (o.top_p.has_value() && !(*o.top_p > 0 && *o.top_p <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat("--top-p must be in (0, 1], got ", *o.top_p));
  }
  if (o.top_k < -1)
    return absl::InvalidArgumentError(absl::StrCat("--top-k must be >= -1, got ", o.top_k));
  if (o.logprobs < 0)
    return absl::InvalidArgumentError(absl::StrCat("--logprobs must be >= 0, got ", o.logprobs));
  return CheckBenchWorkloadOptions(o.workload);
}

// Asks for the model until the server answers or the timeout passes (it may be loading).
absl::StatusOr<v1::ModelInfo> WaitForModelInfo(v1::Lattice::Stub& stub, const std::string& address,
                                               double timeout_s) {
  const Clock::time_point deadline = After(Clock::now(), timeout_s);
  grpc::Status last;
  do {
    grpc::ClientContext context;
    // At least a second per attempt, so that a timeout of 0 still makes one real attempt.
    const Clock::duration wait =
        std::max<Clock::duration>(deadline - Clock::now(), std::chrono::seconds(1));
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::duration_cast<std::chrono::system_clock::duration>(wait));
    v1::ModelInfo info;
    last = stub.GetModelInfo(&context, v1::GetModelInfoRequest(), &info);
    if (last.ok()) return info;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  } while (Clock::now() < deadline);
  return absl::UnavailableError(absl::StrCat(
      "no answer from the server at ", address, " within ", timeout_s,
      " s (--ready-check-timeout-sec): ", CodeName(last.error_code()), ": ", last.error_message()));
}

nlohmann::json ModelInfoJson(const v1::ModelInfo& info) {
  return {{"architecture", info.architecture()},
          {"vocab_size", info.vocab_size()},
          {"max_model_len", info.max_model_len()},
          {"num_hidden_layers", info.num_hidden_layers()},
          {"hidden_size", info.hidden_size()},
          {"eos_token_ids",
           std::vector<int32_t>(info.eos_token_ids().begin(), info.eos_token_ids().end())},
          {"tp", info.tp()},
          {"pp", info.pp()},
          {"dp", info.dp()},
          {"ep", info.ep()}};
}

// GetClusterStatus as JSON (proto field names); null when the call fails.
nlohmann::json ClusterStatusJson(v1::Lattice::Stub& stub) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::ClusterStatus status;
  if (!stub.GetClusterStatus(&context, v1::GetClusterStatusRequest(), &status).ok()) return nullptr;
  std::string text;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  if (!google::protobuf::util::MessageToJsonString(status, &text, options).ok()) return nullptr;
  return nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
}

// vLLM's "date": local time as %Y%m%d-%H%M%S.
std::string Date() {
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  char text[32];
  std::strftime(text, sizeof(text), "%Y%m%d-%H%M%S", &local);
  return text;
}

nlohmann::json SettingsJson(const BenchServeOptions& o, const std::string& address,
                            const v1::ModelInfo& info, const RunOutcome& outcome) {
  nlohmann::json j = BenchWorkloadJson(o.workload);
  j["date"] = Date();
  j["backend"] = "lattice";
  j["server"] = address;
  j["model_id"] = info.architecture();
  j["model"] = ModelInfoJson(info);
  // JSON has no infinity; vLLM writes the string "inf".
  j["request_rate"] =
      std::isinf(o.request_rate) ? nlohmann::json("inf") : nlohmann::json(o.request_rate);
  j["burstiness"] = o.burstiness;
  j["max_concurrency"] =
      o.max_concurrency.has_value() ? nlohmann::json(*o.max_concurrency) : nlohmann::json();
  j["ignore_eos"] = o.ignore_eos;
  j["temperature"] = o.temperature;
  j["top_p"] = o.top_p.has_value() ? nlohmann::json(*o.top_p) : nlohmann::json();
  j["top_k"] = o.top_k;
  j["logprobs"] = o.logprobs;
  j["time_limit"] = o.time_limit_s > 0 ? nlohmann::json(o.time_limit_s) : nlohmann::json();
  j["num_requests_sent"] = outcome.records.size();
  j["stopped_at_time_limit"] = outcome.stopped_at_time_limit;
  return j;
}

// Failures grouped by message, most frequent first, on stderr.
void ReportErrors(const std::vector<BenchRequestRecord>& records) {
  std::map<std::string, int64_t> counts;
  for (const BenchRequestRecord& r : records) {
    if (!r.ok()) ++counts[r.error];
  }
  std::vector<std::pair<int64_t, std::string>> sorted;
  for (const auto& [error, count] : counts) sorted.emplace_back(-count, error);
  std::sort(sorted.begin(), sorted.end());
  for (const auto& [negative_count, error] : sorted) {
    std::fprintf(stderr, "lattice bench serve: %lld failed: %s\n",
                 static_cast<long long>(-negative_count), error.c_str());
  }
}

}  // namespace

void AddBenchServeFlags(CLI::App& app, BenchServeOptions& o) {
  app.add_option("--host", o.host, "Server host")->capture_default_str();
  app.add_option("--port", o.port, "Server port")->capture_default_str();
  AddBenchWorkloadFlags(app, o.workload);
  app.add_option("--request-rate", o.request_rate, "Requests per second (inf: all at once)")
      ->capture_default_str();
  app.add_option("--burstiness", o.burstiness,
                 "Gamma shape of the inter-arrival times (1: Poisson; smaller: burstier)")
      ->capture_default_str();
  app.add_option("--max-concurrency", o.max_concurrency,
                 "Most requests in flight at once (unset: no cap)");
  app.add_flag("--ignore-eos", o.ignore_eos, "Generate every output token even past an eos");
  app.add_option("--temperature", o.temperature, "Sampling temperature (0: greedy)")
      ->capture_default_str();
  app.add_option("--top-p", o.top_p, "Nucleus sampling mass (unset: off)");
  app.add_option("--top-k", o.top_k, "Keep the k most likely tokens (0 or -1: off)")
      ->capture_default_str();
  app.add_option("--logprobs", o.logprobs, "Top-k logprobs to return per output token")
      ->capture_default_str();
  app.add_flag("--disable-tqdm", o.disable_tqdm, "No progress on stderr");
  app.add_option("--result-json", o.result_json, "Write the results as JSON to this file");
  app.add_option("--time-limit", o.time_limit_s,
                 "Seconds after which to stop sending and cancel what is in flight (0: none)")
      ->capture_default_str();
  app.add_option("--ready-check-timeout-sec", o.ready_check_timeout_s,
                 "Seconds to wait for the server to answer (it may still be loading)")
      ->capture_default_str();
}

int BenchServeCommand(const BenchServeOptions& o) {
  if (absl::Status status = CheckOptions(o); !status.ok()) return Fail(status);
  const std::string address = o.host.find(':') != std::string::npos
                                  ? absl::StrCat("[", o.host, "]:", o.port)
                                  : absl::StrCat(o.host, ":", o.port);
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxReceiveMessageBytes);
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
  v1::Lattice::Stub stub(channel);
  absl::StatusOr<v1::ModelInfo> info = WaitForModelInfo(stub, address, o.ready_check_timeout_s);
  if (!info.ok()) return Fail(info.status());
  const BenchModelLimits limits{.vocab_size = info->vocab_size(),
                                .max_model_len = info->max_model_len(),
                                .eos_token_ids = std::vector<int32_t>(info->eos_token_ids().begin(),
                                                                      info->eos_token_ids().end())};
  absl::StatusOr<std::vector<BenchRequest>> workload = BuildBenchWorkload(o.workload, limits);
  if (!workload.ok()) return Fail(workload.status());
  const std::vector<double> arrivals = BenchArrivalTimes(
      static_cast<int>(workload->size()), o.request_rate, o.burstiness, o.workload.seed);
  // Before the run: results that cannot be saved should not cost a run.
  std::ofstream result_file;
  if (!o.result_json.empty()) {
    result_file.open(o.result_json);
    if (!result_file) {
      return Fail(absl::InvalidArgumentError(
          absl::StrCat("--result-json ", o.result_json, ": cannot open it for writing")));
    }
  }

  const nlohmann::json status_before = ClusterStatusJson(stub);
  const RunOutcome outcome = Dispatch(stub, o, *workload, arrivals);
  const nlohmann::json status_after = ClusterStatusJson(stub);
  const BenchSummary summary = SummarizeBench(outcome.records, outcome.duration_s);
  ReportErrors(outcome.records);
  if (outcome.stopped_at_time_limit) {
    std::fprintf(
        stderr,
        "lattice bench serve: stopped at the time limit of %g s after sending %zu of %d requests\n",
        o.time_limit_s, outcome.records.size(), o.workload.num_prompts);
  }
  std::cout << FormatBenchTable(summary, "Serving Benchmark Result", o.max_concurrency)
            << std::flush;
  if (result_file.is_open()) {
    nlohmann::json result = SettingsJson(o, address, *info, outcome);
    result.update(BenchResultJson(summary, outcome.records));
    // What the coordinator counted (steps, pipeline overlap, its scheduler's busy time):
    // the difference between these is this run's share.
    result["server_status"] = {{"before", status_before}, {"after", status_after}};
    result_file << result.dump() << "\n";
    result_file.close();
    if (!result_file) {
      return Fail(
          absl::DataLossError(absl::StrCat("--result-json ", o.result_json, ": writing failed")));
    }
  }
  return 0;
}

}  // namespace lattice
