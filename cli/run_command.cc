// `lattice run` (see run_command.h).
#include "cli/run_command.h"

#include <cstdio>

namespace lattice {

void AddRunCommandFlags(CLI::App& app, RunCommandOptions& options) {
  app.add_option("--model", options.model_dir, "Model directory (config.json + safetensors)")->required();
}

int RunCommand(const RunCommandOptions&) {
  std::fprintf(stderr, "lattice run: engine not built yet\n");
  return 1;
}

}  // namespace lattice
