// `lattice tokenize`, `lattice detokenize` and `lattice chat-template`: the model
// directory's tokenizer and chat template on their own (no weights needed).
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace lattice {

struct TokenizeCommandOptions {
  std::string model;
  bool add_special_tokens = false;
  bool json = false;  // objects with ids and token strings instead of bare id arrays
};
void AddTokenizeCommandFlags(CLI::App& app, TokenizeCommandOptions& options);
// Reads one JSON string per line on stdin, prints one JSON array of ids per line.
// Exit 2 naming the line on bad input.
int TokenizeCommand(const TokenizeCommandOptions& options);

struct DetokenizeCommandOptions {
  std::string model;
  bool skip_special_tokens = false;
};
void AddDetokenizeCommandFlags(CLI::App& app, DetokenizeCommandOptions& options);
// Reads one JSON array of ids per line, prints one JSON string per line.
int DetokenizeCommand(const DetokenizeCommandOptions& options);

struct ChatTemplateCommandOptions {
  std::string model;
  std::string messages_file;   // a JSON array of messages
  bool add_generation_prompt = false;
  std::string chat_template;   // overrides the model's
  std::string tools_file;      // a JSON array of tools
  std::string kwargs;          // a JSON object of extra template variables
};
void AddChatTemplateCommandFlags(CLI::App& app, ChatTemplateCommandOptions& options);
// Prints the rendered prompt (no trailing newline added).
int ChatTemplateCommand(const ChatTemplateCommandOptions& options);

}  // namespace lattice
