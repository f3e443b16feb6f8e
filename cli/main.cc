// The `lattice` binary: one command with subcommands: run (offline), serve (a local
// cluster), coordinator and worker (separately launched parts), generate (client).
#include <CLI/CLI.hpp>

#include "cli/generate_command.h"
#include "cli/run_command.h"
#include "cli/serve_command.h"
#include "cli/worker_command.h"

int main(int argc, char** argv) {
  CLI::App app{"Lattice: distributed LLM inference"};
  app.require_subcommand(1);
  lattice::RunCommandOptions run_options;
  CLI::App* run = app.add_subcommand("run", "Load a model in-process and generate (offline)");
  lattice::AddRunCommandFlags(*run, run_options);
  lattice::GenerateCommandOptions generate_options;
  CLI::App* generate = app.add_subcommand("generate", "Generate on a running Lattice server (gRPC client)");
  lattice::AddGenerateCommandFlags(*generate, generate_options);
  lattice::WorkerCommandOptions worker_options;
  CLI::App* worker = app.add_subcommand("worker", "Serve as one worker of a coordinator (dials it; it assigns the rest)");
  lattice::AddWorkerCommandFlags(*worker, worker_options);
  lattice::ServeOptions serve_options;
  CLI::App* serve = app.add_subcommand("serve", "Serve a model: the coordinator plus its workers on this machine");
  lattice::AddServeFlags(*serve, serve_options);
  lattice::ServeOptions coordinator_options;
  CLI::App* coordinator =
      app.add_subcommand("coordinator", "Serve a model's coordinator; workers join with `lattice worker`");
  lattice::AddServeFlags(*coordinator, coordinator_options);
  CLI11_PARSE(app, argc, argv);
  if (serve->parsed()) return lattice::ServeCommand(serve_options, /*spawn_workers=*/true);
  if (coordinator->parsed()) return lattice::ServeCommand(coordinator_options, /*spawn_workers=*/false);
  if (run->parsed()) return lattice::RunCommand(run_options, std::vector<std::string>(argv, argv + argc));
  if (generate->parsed()) return lattice::GenerateCommand(generate_options);
  if (worker->parsed()) return lattice::WorkerCommand(worker_options);
  return 0;
}
