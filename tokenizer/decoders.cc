// Decoders of tokenizer.json (`tokenizers/src/decoders`): Sequence, ByteLevel,
// Metaspace, Replace, ByteFallback, Fuse, Strip, WordPiece, BPEDecoder; and the GPT-2
// byte-level table ByteLevel encodes and decodes with.
#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tokenizer/components.h"
#include "tokenizer/json_fields.h"
#include "tokenizer/regex.h"
#include "tokenizer/unicode.h"

namespace lattice::text {

const std::vector<char32_t>& ByteToChar() {
  static const std::vector<char32_t> table = [] {
    std::vector<char32_t> t(256, 0);
    std::vector<bool> printable(256, false);
    for (int b = '!'; b <= '~'; ++b) printable[b] = true;
    for (int b = 0xA1; b <= 0xAC; ++b) printable[b] = true;
    for (int b = 0xAE; b <= 0xFF; ++b) printable[b] = true;
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) t[b] = printable[b] ? static_cast<char32_t>(b) : next++;
    return t;
  }();
  return table;
}

int CharToByte(char32_t c) {
  static const std::vector<int> inverse = [] {
    std::vector<int> inv(324, -1);
    const auto& t = ByteToChar();
    for (int b = 0; b < 256; ++b) inv[t[b]] = b;
    return inv;
  }();
  return c < inverse.size() ? inverse[c] : -1;
}

std::string ByteLevelEncode(std::string_view text) {
  static const std::vector<std::string> encoded = [] {
    std::vector<std::string> e(256);
    for (int b = 0; b < 256; ++b) AppendUtf8(ByteToChar()[b], &e[b]);
    return e;
  }();
  std::string out;
  out.reserve(text.size() * 2);
  for (unsigned char b : text) out += encoded[b];
  return out;
}

namespace {

class SequenceDecoder final : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> parts) : parts_(std::move(parts)) {}
  std::vector<std::string> DecodeChain(std::vector<std::string> tokens) const override {
    for (const auto& p : parts_) tokens = p->DecodeChain(std::move(tokens));
    return tokens;
  }

 private:
  std::vector<std::unique_ptr<Decoder>> parts_;
};

// All tokens to bytes (a token with any character outside the byte table contributes
// its own UTF-8 bytes), then one lossy UTF-8 string.
class ByteLevelDecoder final : public Decoder {
 public:
  std::vector<std::string> DecodeChain(std::vector<std::string> tokens) const override {
    std::string bytes;
    for (const auto& t : tokens) {
      const size_t mark = bytes.size();
      size_t pos = 0;
      bool all_mapped = true;
      while (pos < t.size()) {
        const int b = CharToByte(DecodeUtf8(t, &pos));
        if (b < 0) {
          all_mapped = false;
          break;
        }
        bytes.push_back(static_cast<char>(b));
      }
      if (!all_mapped) {
        bytes.resize(mark);
        bytes += t;
      }
    }
    return {Utf8Lossy(bytes)};
  }
};

class MetaspaceDecoder final : public Decoder {
 public:
  MetaspaceDecoder(std::string replacement, bool strip_first) : replacement_(std::move(replacement)), strip_first_(strip_first) {}
  std::vector<std::string> DecodeChain(std::vector<std::string> tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::string out;
      const std::string& t = tokens[i];
      size_t pos = 0;
      while (pos < t.size()) {
        if (t.compare(pos, replacement_.size(), replacement_) == 0) {
          if (!(i == 0 && strip_first_)) out += ' ';
          pos += replacement_.size();
        } else {
          out += t[pos++];
        }
      }
      tokens[i] = std::move(out);
    }
    return tokens;
  }

 private:
  std::string replacement_;
  bool strip_first_;
};

class ReplaceDecoder final : public Decoder {
 public:
  ReplaceDecoder(Regex regex, std::string content) : regex_(std::move(regex)), content_(std::move(content)) {}
  std::vector<std::string> DecodeChain(std::vector<std::string> tokens) const override {
    std::vector<std::pair<size_t, size_t>> matches;
    for (auto& t : tokens) {
      regex_.FindAll(t, &matches);
      if (matches.empty()) continue;
      std::string out;
      size_t prev = 0;
      for (const auto& [s, e] : matches) {
        out.append(t, prev, s - prev);
        out += content_;
        prev = e;
      }
      out.append(t, prev, std::string::npos);
      t = std::move(out);
    }
    return tokens;
  }

 private:
  Regex regex_;
  std::string content_;
};

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// `<0xNN>` tokens gather into byte runs; a run that is valid UTF-8 becomes its text,
// an invalid run one U+FFFD per byte (the library's rule, not the lossy one).
class ByteFallbackDecoder final : public Decoder {
 public:
  std::vector<std::string> DecodeChain(std::vector<std::string> tokens) const override {
    std::vector<std::string> out;
    out.reserve(tokens.size());
    std::string run;
    auto flush = [&] {
      if (run.empty()) return;
      if (IsValidUtf8(run)) {
        out.push_back(run);
      } else {
        for (size_t i = 0; i < run.size(); ++i) out.emplace_back("\xEF\xBF\xBD");
      }
      run.clear();
    };
    for (auto& t : tokens) {
      if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' && HexDigit(t[3]) >= 0 && HexDigit(t[4]) >= 0) {
        run.push_back(static_cast<char>(HexDigit(t[3]) * 16 + HexDigit(t[4])));
        continue;
      }
      flush();
      out.push_back(std::move(t));
    }
    flush();
    return out;
  }
};

class FuseDecoder final : public Decoder {
 public:
  std::vector<std::string> DecodeChain(std::vector<std::string> tokens) const override {
    return {absl::StrJoin(tokens, "")};
  }
};

// Removes up to `start` leading and `stop` trailing occurrences of one character from
// every token.
class StripDecoder final : public Decoder {
 public:
  StripDecoder(std::string content, int start, int stop) : content_(std::move(content)), start_(start), stop_(stop) {}
  std::vector<std::string> DecodeChain(std::vector<std::string> tokens) const override {
    for (auto& t : tokens) {
      size_t begin = 0, end = t.size();
      for (int i = 0; i < start_ && t.compare(begin, content_.size(), content_) == 0 && begin < end; ++i) {
        begin += content_.size();
      }
      for (int i = 0; i < stop_ && end >= begin + content_.size() &&
                      t.compare(end - content_.size(), content_.size(), content_) == 0;
           ++i) {
        end -= content_.size();
      }
      t = t.substr(begin, end - begin);
    }
    return tokens;
  }

 private:
  std::string content_;
  int start_, stop_;
};

class WordPieceDecoder final : public Decoder {
 public:
  WordPieceDecoder(std::string prefix, bool cleanup) : prefix_(std::move(prefix)), cleanup_(cleanup) {}
  std::vector<std::string> DecodeChain(std::vector<std::string> tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      auto& t = tokens[i];
      if (i != 0) {
        if (t.compare(0, prefix_.size(), prefix_) == 0) {
          t = t.substr(prefix_.size());
        } else {
          t = " " + t;
        }
      }
      if (cleanup_) t = Cleanup(t);
    }
    return tokens;
  }

 private:
  static std::string Cleanup(std::string s) {
    static const std::pair<const char*, const char*> kRules[] = {
        {" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"}, {" n't", "n't"},
        {" 'm", "'m"}, {" do not", " don't"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
    for (const auto& [from, to] : kRules) {
      size_t pos = 0;
      const std::string f = from;
      while ((pos = s.find(f, pos)) != std::string::npos) {
        s.replace(pos, f.size(), to);
        pos += std::string(to).size();
      }
    }
    return s;
  }
  std::string prefix_;
  bool cleanup_;
};

class BpeSuffixDecoder final : public Decoder {
 public:
  explicit BpeSuffixDecoder(std::string suffix) : suffix_(std::move(suffix)) {}
  std::vector<std::string> DecodeChain(std::vector<std::string> tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      auto& t = tokens[i];
      const std::string replacement = i + 1 == tokens.size() ? "" : " ";
      size_t pos = 0;
      while (!suffix_.empty() && (pos = t.find(suffix_, pos)) != std::string::npos) {
        t.replace(pos, suffix_.size(), replacement);
        pos += replacement.size();
      }
    }
    return tokens;
  }

 private:
  std::string suffix_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Decoder>> MakeDecoder(const nlohmann::json& j, const std::string& where) {
  if (j.is_null()) return std::unique_ptr<Decoder>();
  auto type = GetType(j, where);
  if (!type.ok()) return type.status();
  if (*type == "Sequence") {
    auto parts = MakeParts<Decoder>(j, "decoders", where, MakeDecoder);
    if (!parts.ok()) return parts.status();
    return std::unique_ptr<Decoder>(new SequenceDecoder(std::move(*parts)));
  }
  if (*type == "ByteLevel") return std::unique_ptr<Decoder>(new ByteLevelDecoder());
  if (*type == "Metaspace") {
    std::string replacement = "\xE2\x96\x81";
    if (auto it = j.find("replacement"); it != j.end() && it->is_string()) replacement = it->get<std::string>();
    bool strip_first = GetBool(j, "add_prefix_space", true);
    if (auto it = j.find("prepend_scheme"); it != j.end() && it->is_string()) strip_first = it->get<std::string>() != "never";
    return std::unique_ptr<Decoder>(new MetaspaceDecoder(replacement, strip_first));
  }
  if (*type == "Replace") {
    auto regex = GetPattern(j, where);
    if (!regex.ok()) return regex.status();
    auto content = GetString(j, "content", where);
    if (!content.ok()) return content.status();
    return std::unique_ptr<Decoder>(new ReplaceDecoder(std::move(*regex), *content));
  }
  if (*type == "ByteFallback") return std::unique_ptr<Decoder>(new ByteFallbackDecoder());
  if (*type == "Fuse") return std::unique_ptr<Decoder>(new FuseDecoder());
  if (*type == "Strip") {
    auto content = GetString(j, "content", where);
    if (!content.ok()) return content.status();
    const int start = j.value("start", 0), stop = j.value("stop", 0);
    return std::unique_ptr<Decoder>(new StripDecoder(*content, start, stop));
  }
  if (*type == "WordPiece") {
    return std::unique_ptr<Decoder>(new WordPieceDecoder(j.value("prefix", std::string("##")), GetBool(j, "cleanup", true)));
  }
  if (*type == "BPEDecoder") {
    return std::unique_ptr<Decoder>(new BpeSuffixDecoder(j.value("suffix", std::string("</w>"))));
  }
  return absl::InvalidArgumentError(absl::StrCat(where, ": unsupported decoder type '", *type, "'"));
}

}  // namespace lattice::text
