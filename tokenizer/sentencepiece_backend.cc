// See sentencepiece_backend.h: the one file that includes sentencepiece's header.
#include "tokenizer/sentencepiece_backend.h"

#include <sentencepiece_processor.h>

namespace lattice::text {

struct SentencePieceBackend::Impl {
  sentencepiece::SentencePieceProcessor sp;
};

SentencePieceBackend::SentencePieceBackend() : impl_(std::make_unique<Impl>()) {}
SentencePieceBackend::~SentencePieceBackend() = default;

std::string SentencePieceBackend::Load(const std::string& path) {
  const auto status = impl_->sp.Load(path);
  return status.ok() ? std::string() : status.ToString();
}

std::string SentencePieceBackend::Encode(std::string_view text, std::vector<int>* ids) const {
  const auto status = impl_->sp.Encode(text, ids);
  return status.ok() ? std::string() : status.ToString();
}

std::string SentencePieceBackend::Decode(const std::vector<int>& ids, std::string* text) const {
  const auto status = impl_->sp.Decode(ids, text);
  return status.ok() ? std::string() : status.ToString();
}

int SentencePieceBackend::PieceSize() const { return impl_->sp.GetPieceSize(); }
std::string SentencePieceBackend::IdToPiece(int id) const { return impl_->sp.IdToPiece(id); }
int SentencePieceBackend::PieceToId(std::string_view piece) const { return impl_->sp.PieceToId(piece); }
bool SentencePieceBackend::IsControl(int id) const { return impl_->sp.IsControl(id); }
bool SentencePieceBackend::IsUnknown(int id) const { return impl_->sp.IsUnknown(id); }
int SentencePieceBackend::bos_id() const { return impl_->sp.bos_id(); }
int SentencePieceBackend::eos_id() const { return impl_->sp.eos_id(); }
int SentencePieceBackend::unk_id() const { return impl_->sp.unk_id(); }

}  // namespace lattice::text
