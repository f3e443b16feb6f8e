// The std-only interface the sentencepiece plugin implements (see
// sentencepiece_backend.h). No Abseil here: the plugin includes sentencepiece's header,
// whose `absl::string_view` clashes with Abseil's.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace lattice::text {

class SentencePieceModel {
 public:
  virtual ~SentencePieceModel() = default;
  // Empty on success, else the library's message.
  virtual std::string Encode(std::string_view text, std::vector<int>* ids) const = 0;
  virtual std::string Decode(const std::vector<int>& ids, std::string* text) const = 0;
  virtual int PieceSize() const = 0;
  virtual std::string IdToPiece(int id) const = 0;
  virtual int PieceToId(std::string_view piece) const = 0;
  virtual bool IsControl(int id) const = 0;
  virtual bool IsUnknown(int id) const = 0;
  virtual int bos_id() const = 0;
  virtual int eos_id() const = 0;
  virtual int unk_id() const = 0;
};

}  // namespace lattice::text

// The plugin's one entry point: a new model, or null with *error set.
extern "C" lattice::text::SentencePieceModel* LatticeSentencePieceLoad(const char* path, std::string* error);
