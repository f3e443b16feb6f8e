// `lattice bench offline`: the workloads of `bench serve`, generated in-process with no
// gRPC (the scheduler and the model runner joined as in `lattice run`, on one rank or
// several), for peak throughput. Reports what `vllm bench throughput` reports: requests,
// total and output tokens per second over the generation time (model loading excluded).
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "cli/bench_workload.h"
#include "cli/run_command.h"

namespace lattice {

struct BenchOfflineOptions {
  RunCommandOptions engine;  // model, layout, device, scheduler, launcher
  BenchWorkloadOptions workload;
  bool ignore_eos = false;
  float temperature = 0.0f;
  std::string result_json;
};

void AddBenchOfflineFlags(CLI::App& app, BenchOfflineOptions& options);
// `argv`: this process's command line (re-executed per extra rank).
int BenchOfflineCommand(const BenchOfflineOptions& options, const std::vector<std::string>& argv);

}  // namespace lattice
