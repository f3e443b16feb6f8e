// The `lattice` binary: one command with subcommands (run; serve and the rest come later).
#include <CLI/CLI.hpp>

#include "cli/run_command.h"

int main(int argc, char** argv) {
  CLI::App app{"Lattice: distributed LLM inference"};
  app.require_subcommand(1);
  lattice::RunCommandOptions run_options;
  CLI::App* run = app.add_subcommand("run", "Load a model in-process and generate (offline)");
  lattice::AddRunCommandFlags(*run, run_options);
  CLI11_PARSE(app, argc, argv);
  if (run->parsed()) return lattice::RunCommand(run_options, std::vector<std::string>(argv, argv + argc));
  return 0;
}
