// Tokenizer throughput: encode and decode MB/s of one tokenizer on one thread, over a
// text cut into chunks at line boundaries (prompt-sized pieces). Prints one JSON line;
// bench/peers/tokenizers_bench.py prints the same for the `tokenizers` library.
//
//   lattice_tokenizer_bench --model DIR --text FILE [--chunk-bytes 4096] [--repeats 5]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "tokenizer/tokenizer.h"

namespace {

std::vector<std::string> Chunks(const std::string& text, size_t chunk_bytes) {
  std::vector<std::string> chunks;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = std::min(text.size(), start + chunk_bytes);
    if (end < text.size()) {
      const size_t nl = text.find('\n', end);
      end = nl == std::string::npos ? text.size() : nl + 1;
    }
    chunks.push_back(text.substr(start, end - start));
    start = end;
  }
  return chunks;
}

double Seconds(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

}  // namespace

int main(int argc, char** argv) {
  std::string model, text_path;
  size_t chunk_bytes = 4096;
  int repeats = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--model") model = argv[i + 1];
    else if (flag == "--text") text_path = argv[i + 1];
    else if (flag == "--chunk-bytes") chunk_bytes = std::strtoul(argv[i + 1], nullptr, 10);
    else if (flag == "--repeats") repeats = std::atoi(argv[i + 1]);
    else {
      std::cerr << "unknown flag " << flag << "\n";
      return 2;
    }
  }
  std::ifstream in(text_path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  if (model.empty() || text.empty()) {
    std::cerr << "usage: lattice_tokenizer_bench --model DIR --text FILE\n";
    return 2;
  }
  auto tokenizer = lattice::text::Tokenizer::Load(model);
  if (!tokenizer.ok()) {
    std::cerr << tokenizer.status() << "\n";
    return 2;
  }
  const auto chunks = Chunks(text, chunk_bytes);
  std::vector<std::vector<int32_t>> ids(chunks.size());
  double best_encode = 1e30, best_decode = 1e30;
  size_t num_tokens = 0, decoded_bytes = 0;
  for (int r = 0; r < repeats; ++r) {
    // Each repeat uses a fresh tokenizer so its piece cache starts cold, as the
    // Python peer's does (one Tokenizer.from_file per repeat).
    auto fresh = lattice::text::Tokenizer::Load(model);
    const auto t0 = std::chrono::steady_clock::now();
    for (size_t c = 0; c < chunks.size(); ++c) ids[c] = *(*fresh)->Encode(chunks[c], false);
    const auto t1 = std::chrono::steady_clock::now();
    decoded_bytes = 0;
    for (size_t c = 0; c < chunks.size(); ++c) decoded_bytes += (*fresh)->Decode(ids[c], false)->size();
    const auto t2 = std::chrono::steady_clock::now();
    best_encode = std::min(best_encode, Seconds(t0, t1));
    best_decode = std::min(best_decode, Seconds(t1, t2));
  }
  for (const auto& v : ids) num_tokens += v.size();
  nlohmann::json out = {{"impl", "lattice"},
                        {"model", model},
                        {"text", text_path},
                        {"bytes", text.size()},
                        {"chunks", chunks.size()},
                        {"tokens", num_tokens},
                        {"encode_mb_s", text.size() / best_encode / 1e6},
                        {"decode_mb_s", decoded_bytes / best_decode / 1e6},
                        {"encode_s", best_encode},
                        {"decode_s", best_decode}};
  std::cout << out.dump() << std::endl;
  return 0;
}
