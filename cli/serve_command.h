// `lattice serve` (the coordinator plus its workers as child processes on this
// machine) and `lattice coordinator` (the coordinator alone; workers start on their
// own with `lattice worker --coordinator HOST:PORT`, e.g. on Kubernetes).
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "cli/layout_flags.h"

namespace lattice {

struct ServeOptions {
  std::string model_dir;
  std::string host = "0.0.0.0";
  int port = 50051;  // 0: any free port (printed)
  LayoutFlags layout;
  int block_size = 16;
  std::string kv_cache_memory = "256M";  // per worker
  int max_num_batched_tokens = 2048;
  int max_num_seqs = 256;
  bool no_prefix_caching = false;
  int max_queued_requests = 4096;
  int store_port = 0;    // the rendezvous store; 0: any free port
  std::string store_host;  // what workers dial for the store; default: this host's address
  std::string device = "cpu";
  std::string dtype = "auto";
  std::string load_format = "auto";
  double gpu_memory_utilization = 0.9;
  bool no_cuda_graphs = false;
  std::string sim_hardware = "h200";
  std::string tokenizer;           // default: the model directory
  std::string chat_template;       // a file that overrides the model's chat template
  std::string served_model_name;   // default: the model directory's base name
};

void AddServeFlags(CLI::App& app, ServeOptions& options);
// `spawn_workers`: serve (true) or coordinator (false).
int ServeCommand(const ServeOptions& options, bool spawn_workers);

}  // namespace lattice
