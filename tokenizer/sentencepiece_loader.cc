// Finds and loads liblattice_sentencepiece.so (see sentencepiece_backend.h). Looked
// for, in order: $LATTICE_SENTENCEPIECE_PLUGIN; beside the running binary's ../lib (the
// relocatable bundle); the build tree.
#include <dlfcn.h>
#include <unistd.h>

#include <filesystem>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tokenizer/sentencepiece_backend.h"

namespace lattice::text {
namespace {

using LoadFn = SentencePieceModel* (*)(const char*, std::string*);

struct Plugin {
  LoadFn load = nullptr;
  std::string error;
};

const Plugin& GetPlugin() {
  static const Plugin plugin = [] {
    Plugin p;
    std::vector<std::string> candidates;
    if (const char* env = std::getenv("LATTICE_SENTENCEPIECE_PLUGIN"); env != nullptr && env[0] != '\0') {
      candidates.push_back(env);
    }
    std::error_code ec;
    const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
    if (!ec) candidates.push_back((exe.parent_path() / "../lib/liblattice_sentencepiece.so").string());
#ifdef LATTICE_SENTENCEPIECE_PLUGIN_PATH
    candidates.push_back(LATTICE_SENTENCEPIECE_PLUGIN_PATH);
#endif
    std::vector<std::string> tried;
    for (const std::string& path : candidates) {
      if (!std::filesystem::exists(path)) {
        tried.push_back(path + " (missing)");
        continue;
      }
      void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
      if (handle == nullptr) {
        tried.push_back(absl::StrCat(path, " (", dlerror(), ")"));
        continue;
      }
      p.load = reinterpret_cast<LoadFn>(dlsym(handle, "LatticeSentencePieceLoad"));
      if (p.load != nullptr) return p;
      tried.push_back(path + " (no LatticeSentencePieceLoad)");
    }
    p.error = absl::StrCat("cannot load the sentencepiece plugin; tried ", absl::StrJoin(tried, ", "));
    return p;
  }();
  return plugin;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SentencePieceModel>> LoadSentencePieceModel(const std::string& model_path) {
  const Plugin& plugin = GetPlugin();
  if (plugin.load == nullptr) return absl::FailedPreconditionError(plugin.error);
  std::string error;
  std::unique_ptr<SentencePieceModel> model(plugin.load(model_path.c_str(), &error));
  if (model == nullptr) return absl::InvalidArgumentError(absl::StrCat(model_path, ": ", error));
  return model;
}

}  // namespace lattice::text
