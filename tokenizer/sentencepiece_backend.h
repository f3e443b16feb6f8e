// A std-only facade over libsentencepiece. Debian's sentencepiece header declares
// `absl::string_view` as std::string_view, which clashes with the real Abseil in one
// translation unit, so only sentencepiece_backend.cc includes it (and no Abseil).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace lattice::text {

class SentencePieceBackend {
 public:
  SentencePieceBackend();
  ~SentencePieceBackend();
  // Empty on success, else the library's message.
  std::string Load(const std::string& path);
  std::string Encode(std::string_view text, std::vector<int>* ids) const;
  std::string Decode(const std::vector<int>& ids, std::string* text) const;
  int PieceSize() const;
  std::string IdToPiece(int id) const;
  int PieceToId(std::string_view piece) const;
  bool IsControl(int id) const;
  bool IsUnknown(int id) const;
  int bos_id() const;
  int eos_id() const;
  int unk_id() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lattice::text
