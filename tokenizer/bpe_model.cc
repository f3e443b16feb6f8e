// BPE as the `tokenizers` library runs it (models/bpe/model.rs and word.rs): a word
// starts as one symbol per character (prefix/suffix applied, unknown characters as
// <0xNN> byte tokens or the unk token), then the pair of lowest merge rank is merged,
// leftmost first, until no pair has a merge.
#include "tokenizer/bpe_model.h"
#include "tokenizer/unicode.h"

#include <queue>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "tokenizer/unicode.h"

namespace lattice::text {
namespace {

uint64_t PairKey(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

struct Symbol {
  int32_t id;
  int32_t prev;
  int32_t next;
  bool removed;
};

struct Candidate {
  int32_t rank;
  int32_t pos;
  int32_t new_id;
  // std::priority_queue is a max-heap: the "largest" must be the lowest rank, then the
  // lowest position.
  bool operator<(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
};

}  // namespace

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::FromJson(const nlohmann::json& j, const std::string& where) {
  std::unique_ptr<BpeModel> m(new BpeModel());
  if (j.contains("dropout") && !j["dropout"].is_null() && j["dropout"].get<double>() != 0.0) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": BPE dropout is not supported"));
  }
  const auto vocab = j.find("vocab");
  if (vocab == j.end() || !vocab->is_object()) return absl::InvalidArgumentError(absl::StrCat(where, ": missing vocab"));
  int32_t max_id = -1;
  m->vocab_.reserve(vocab->size());
  for (const auto& [token, id_json] : vocab->items()) {
    const int32_t id = id_json.get<int32_t>();
    if (id < 0) return absl::InvalidArgumentError(absl::StrCat(where, ": negative id for '", token, "'"));
    m->vocab_[token] = id;
    max_id = std::max(max_id, id);
  }
  m->id_to_token_.resize(max_id + 1);
  m->has_id_.assign(max_id + 1, false);
  for (const auto& [token, id] : m->vocab_) {
    m->id_to_token_[id] = token;
    m->has_id_[id] = true;
  }
  auto string_or_empty = [&](const char* key) {
    auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  m->continuing_subword_prefix_ = string_or_empty("continuing_subword_prefix");
  m->end_of_word_suffix_ = string_or_empty("end_of_word_suffix");
  m->fuse_unk_ = j.value("fuse_unk", false);
  m->byte_fallback_ = j.value("byte_fallback", false);
  m->ignore_merges_ = j.value("ignore_merges", false);
  const std::string unk = string_or_empty("unk_token");
  if (!unk.empty()) {
    auto it = m->vocab_.find(unk);
    if (it == m->vocab_.end()) return absl::InvalidArgumentError(absl::StrCat(where, ": unk_token '", unk, "' not in vocab"));
    m->unk_id_ = it->second;
  }
  for (int b = 0; b < 256; ++b) {
    auto it = m->vocab_.find(absl::StrFormat("<0x%02X>", b));
    m->byte_ids_[b] = it == m->vocab_.end() ? -1 : it->second;
  }
  const auto merges = j.find("merges");
  if (merges == j.end() || !merges->is_array()) return absl::InvalidArgumentError(absl::StrCat(where, ": missing merges"));
  m->merges_.reserve(merges->size());
  const size_t prefix_len = m->continuing_subword_prefix_.size();
  for (size_t rank = 0; rank < merges->size(); ++rank) {
    const auto& entry = (*merges)[rank];
    std::string a, b;
    if (entry.is_string()) {
      const std::string s = entry.get<std::string>();
      const size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
        return absl::InvalidArgumentError(absl::StrCat(where, ": merges[", rank, "] is not two tokens: '", s, "'"));
      }
      a = s.substr(0, space);
      b = s.substr(space + 1);
    } else if (entry.is_array() && entry.size() == 2 && entry[0].is_string() && entry[1].is_string()) {
      a = entry[0].get<std::string>();
      b = entry[1].get<std::string>();
    } else {
      return absl::InvalidArgumentError(absl::StrCat(where, ": merges[", rank, "] is malformed"));
    }
    auto ia = m->vocab_.find(a), ib = m->vocab_.find(b);
    // The merged token drops b's continuing-subword prefix (as the library builds it).
    std::string merged = a + (prefix_len > 0 && b.compare(0, prefix_len, m->continuing_subword_prefix_) == 0
                                  ? b.substr(prefix_len)
                                  : b);
    auto im = m->vocab_.find(merged);
    if (ia == m->vocab_.end() || ib == m->vocab_.end() || im == m->vocab_.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": merges[", rank, "] ('", a, "', '", b, "') uses a token not in vocab"));
    }
    m->merges_[PairKey(ia->second, ib->second)] = {static_cast<int32_t>(rank), im->second};
  }
  return m;
}

std::optional<int32_t> BpeModel::TokenToId(std::string_view token) const {
  auto it = vocab_.find(Av(token));
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::IdToToken(int32_t id) const {
  if (id < 0 || id >= vocab_size() || !has_id_[id]) return nullptr;
  return &id_to_token_[id];
}

void BpeModel::MergeWord(std::string_view word, std::vector<int32_t>* out) const {
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  auto add = [&](int32_t id) {
    const auto n = static_cast<int32_t>(symbols.size());
    symbols.push_back(Symbol{id, n - 1, n + 1, false});
  };
  int32_t pending_unk = -1;  // an unknown run waiting to be added (fused or not)
  std::string piece;
  size_t pos = 0;
  while (pos < word.size()) {
    const size_t start = pos;
    pos += Utf8SequenceLength(static_cast<unsigned char>(word[pos]));
    if (pos > word.size()) pos = word.size();
    const std::string_view ch = word.substr(start, pos - start);
    const bool is_first = start == 0, is_last = pos == word.size();
    std::string_view lookup = ch;
    if ((!is_first && !continuing_subword_prefix_.empty()) || (is_last && !end_of_word_suffix_.empty())) {
      piece.clear();
      if (!is_first) piece += continuing_subword_prefix_;
      piece += ch;
      if (is_last) piece += end_of_word_suffix_;
      lookup = piece;
    }
    if (auto it = vocab_.find(Av(lookup)); it != vocab_.end()) {
      if (pending_unk >= 0) {
        add(pending_unk);
        pending_unk = -1;
      }
      add(it->second);
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (unsigned char b : lookup) all &= byte_ids_[b] >= 0;
      if (all) {
        // The library adds the byte tokens without flushing a pending unk first.
        for (unsigned char b : lookup) add(byte_ids_[b]);
        continue;
      }
    }
    if (unk_id_) {
      if (pending_unk >= 0 && !fuse_unk_) add(pending_unk);
      pending_unk = *unk_id_;
    }
  }
  if (pending_unk >= 0) add(pending_unk);
  if (symbols.empty()) return;
  symbols.back().next = -1;

  std::priority_queue<Candidate> queue;
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i) {
    if (auto it = merges_.find(PairKey(symbols[i].id, symbols[i + 1].id)); it != merges_.end()) {
      queue.push(Candidate{it->second.first, i, it->second.second});
    }
  }
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& cur = symbols[top.pos];
    if (cur.removed || cur.next < 0) continue;
    const int32_t next_pos = cur.next;
    auto it = merges_.find(PairKey(cur.id, symbols[next_pos].id));
    if (it == merges_.end() || it->second.second != top.new_id) continue;  // stale entry
    cur.id = top.new_id;
    symbols[next_pos].removed = true;
    cur.next = symbols[next_pos].next;
    if (cur.next >= 0) symbols[cur.next].prev = top.pos;
    if (cur.prev >= 0) {
      if (auto m = merges_.find(PairKey(symbols[cur.prev].id, cur.id)); m != merges_.end()) {
        queue.push(Candidate{m->second.first, cur.prev, m->second.second});
      }
    }
    if (cur.next >= 0) {
      if (auto m = merges_.find(PairKey(cur.id, symbols[cur.next].id)); m != merges_.end()) {
        queue.push(Candidate{m->second.first, top.pos, m->second.second});
      }
    }
  }
  for (const auto& s : symbols) {
    if (!s.removed) out->push_back(s.id);
  }
}

void BpeModel::Tokenize(std::string_view word, std::vector<int32_t>* out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    if (auto it = vocab_.find(Av(word)); it != vocab_.end()) {
      out->push_back(it->second);
      return;
    }
  }
  if (word.size() >= kMaxCachedWordBytes) {
    MergeWord(word, out);
    return;
  }
  const size_t hash = absl::HashOf(Av(word));
  CacheShard& shard = cache_[hash % kCacheShards];
  {
    absl::MutexLock lock(&shard.mu);
    if (auto it = shard.words.find(Av(word)); it != shard.words.end()) {
      out->insert(out->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t before = out->size();
  MergeWord(word, out);
  absl::MutexLock lock(&shard.mu);
  if (shard.words.size() < kCacheCapacityPerShard) {
    shard.words.emplace(std::string(word), std::vector<int32_t>(out->begin() + before, out->end()));
  }
}

}  // namespace lattice::text
