// A std-only interface to libsentencepiece, implemented by a plugin
// (liblattice_sentencepiece.so, sentencepiece_plugin.cc) that is loaded on first use with
// RTLD_LOCAL | RTLD_DEEPBIND. Debian's libsentencepiece carries its own copy of
// protobuf-lite; linked into a binary beside libprotobuf (gRPC's), the two interpose
// and the process crashes while registering descriptors. Loaded privately, it keeps
// its copy to itself. Its header also declares `absl::string_view` as std::string_view,
// which clashes with Abseil: only the plugin includes it.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "tokenizer/sentencepiece_model.h"

namespace lattice::text {

// Loads `model_path` through the plugin. INVALID_ARGUMENT for a bad model file,
// FAILED_PRECONDITION when the plugin cannot be loaded (naming where it looked).
absl::StatusOr<std::unique_ptr<SentencePieceModel>> LoadSentencePieceModel(const std::string& model_path);

}  // namespace lattice::text
