// liblattice_sentencepiece.so: SentencePieceModel over libsentencepiece. The only file
// that includes sentencepiece's header; loaded privately by sentencepiece_loader.cc
// (see sentencepiece_backend.h for why).
#include <sentencepiece_processor.h>

#include "tokenizer/sentencepiece_model.h"

namespace lattice::text {
namespace {

class Model final : public SentencePieceModel {
 public:
  std::string Load(const std::string& path) {
    const auto status = sp_.Load(path);
    return status.ok() ? std::string() : status.ToString();
  }
  std::string Encode(std::string_view text, std::vector<int>* ids) const override {
    const auto status = sp_.Encode(text, ids);
    return status.ok() ? std::string() : status.ToString();
  }
  std::string Decode(const std::vector<int>& ids, std::string* text) const override {
    const auto status = sp_.Decode(ids, text);
    return status.ok() ? std::string() : status.ToString();
  }
  int PieceSize() const override { return sp_.GetPieceSize(); }
  std::string IdToPiece(int id) const override { return sp_.IdToPiece(id); }
  int PieceToId(std::string_view piece) const override { return sp_.PieceToId(piece); }
  bool IsControl(int id) const override { return sp_.IsControl(id); }
  bool IsUnknown(int id) const override { return sp_.IsUnknown(id); }
  int bos_id() const override { return sp_.bos_id(); }
  int eos_id() const override { return sp_.eos_id(); }
  int unk_id() const override { return sp_.unk_id(); }

 private:
  sentencepiece::SentencePieceProcessor sp_;
};

}  // namespace
}  // namespace lattice::text

extern "C" lattice::text::SentencePieceModel* LatticeSentencePieceLoad(const char* path, std::string* error) {
  auto model = std::make_unique<lattice::text::Model>();
  *error = model->Load(path);
  return error->empty() ? model.release() : nullptr;
}
