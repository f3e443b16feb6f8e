// `lattice bench serve`: a load generator for a running Lattice server, after `vllm bench
// serve` (same flag names and result keys where they mean the same). It sends a seeded
// workload (bench_workload.h) as streaming Generate RPCs at a chosen arrival rate and
// concurrency, times every token, and prints the summary of bench_metrics.h (and writes it
// as JSON with --result-json).
//
// Threads: the calling thread is the dispatcher: it sleeps to each arrival time, respects
// --max-concurrency, enforces --time-limit and draws the progress bar. Each request is one
// callback-API reactor (no thread per stream); gRPC runs its reactions on its own threads.
#pragma once

#include <CLI/CLI.hpp>
#include <limits>
#include <optional>
#include <string>

#include "cli/bench_workload.h"

namespace lattice {

struct BenchServeOptions {
  std::string host = "127.0.0.1";
  int port = 50051;
  BenchWorkloadOptions workload;
  double request_rate = std::numeric_limits<double>::infinity();  // requests/s; inf: all at once
  double burstiness = 1.0;             // gamma shape of the inter-arrival times; 1: Poisson
  std::optional<int> max_concurrency;  // unset: no cap
  bool ignore_eos = false;
  float temperature = 0.0f;  // 0: greedy
  std::optional<float> top_p;
  int top_k = 0;
  int logprobs = 0;
  bool disable_tqdm = false;            // no progress bar
  std::string result_json;              // empty: no file
  double time_limit_s = 0.0;            // 0: none; else stop sending and cancel what is in flight
  double ready_check_timeout_s = 60.0;  // how long to wait for the server to answer GetModelInfo
};

void AddBenchServeFlags(CLI::App& app, BenchServeOptions& options);

// Returns the exit code: 0 when the run completed (failed requests included: they are in
// the results), 2 when a flag is wrong, the server cannot be reached or is not ready within
// --ready-check-timeout-sec, or --result-json cannot be written (one line on stderr naming
// what is wrong).
int BenchServeCommand(const BenchServeOptions& options);

}  // namespace lattice
