// The `lattice` binary: one command with subcommands: run (offline), serve (a local
// cluster), coordinator and worker (separately launched parts), generate (client), bench
// (benchmarks: `bench serve` loads a running server), and the text tools tokenize,
// detokenize and chat-template.
#include <CLI/CLI.hpp>
#include <string_view>

#include "cli/bench_offline.h"
#include "cli/bench_serve.h"
#include "cli/generate_command.h"
#include "cli/run_command.h"
#include "cli/serve_command.h"
#include "cli/text_commands.h"
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
  lattice::TokenizeCommandOptions tokenize_options;
  CLI::App* tokenize = app.add_subcommand("tokenize", "Encode text with a model's tokenizer (JSON lines in and out)");
  lattice::AddTokenizeCommandFlags(*tokenize, tokenize_options);
  lattice::DetokenizeCommandOptions detokenize_options;
  CLI::App* detokenize = app.add_subcommand("detokenize", "Decode token ids with a model's tokenizer");
  lattice::AddDetokenizeCommandFlags(*detokenize, detokenize_options);
  lattice::ChatTemplateCommandOptions chat_template_options;
  CLI::App* chat_template =
      app.add_subcommand("chat-template", "Render messages with a model's chat template and print the prompt");
  lattice::AddChatTemplateCommandFlags(*chat_template, chat_template_options);
  CLI::App* bench = app.add_subcommand("bench", "Benchmarks");
  bench->require_subcommand(1);
  lattice::BenchServeOptions bench_serve_options;
  CLI::App* bench_serve =
      bench->add_subcommand("serve", "Load a running Lattice server with a seeded workload and report latencies");
  lattice::AddBenchServeFlags(*bench_serve, bench_serve_options);
  lattice::BenchOfflineOptions bench_offline_options;
  CLI::App* bench_offline =
      bench->add_subcommand("offline", "Generate a seeded workload in-process (no gRPC) for peak throughput");
  lattice::AddBenchOfflineFlags(*bench_offline, bench_offline_options);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    // `bench` promises exit code 2 for any bad command line (CLI11's own codes are 100+).
    return code != 0 && argc > 1 && std::string_view(argv[1]) == "bench" ? 2 : code;
  }
  if (serve->parsed()) return lattice::ServeCommand(serve_options, /*spawn_workers=*/true);
  if (coordinator->parsed()) return lattice::ServeCommand(coordinator_options, /*spawn_workers=*/false);
  if (run->parsed()) return lattice::RunCommand(run_options, std::vector<std::string>(argv, argv + argc));
  if (generate->parsed()) return lattice::GenerateCommand(generate_options);
  if (worker->parsed()) return lattice::WorkerCommand(worker_options);
  if (tokenize->parsed()) return lattice::TokenizeCommand(tokenize_options);
  if (detokenize->parsed()) return lattice::DetokenizeCommand(detokenize_options);
  if (chat_template->parsed()) return lattice::ChatTemplateCommand(chat_template_options);
  if (bench_serve->parsed()) return lattice::BenchServeCommand(bench_serve_options);
  if (bench_offline->parsed()) {
    return lattice::BenchOfflineCommand(bench_offline_options, std::vector<std::string>(argv, argv + argc));
  }
  return 0;
}
