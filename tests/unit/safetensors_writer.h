// A small safetensors writer for tests: tensors laid out back to back after a JSON
// header, exactly as the reference writer does, so tests can build real, broken or
// hostile files.
#pragma once

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kernels/tensor.h"

namespace lattice::testing {

using json = nlohmann::json;

struct RawTensor {
  std::string name;
  std::string dtype;
  Shape shape;
  std::string bytes;
};

template <typename T, typename Encode>
std::string Encode16(const std::vector<float>& values, Encode encode) {
  std::string out;
  for (float v : values) {
    const T bits = encode(v);
    out.append(reinterpret_cast<const char*>(&bits), sizeof(bits));
  }
  return out;
}
inline std::string F32Bytes(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4);
}
inline std::string Bf16Bytes(const std::vector<float>& v) { return Encode16<uint16_t>(v, FloatToBf16); }
inline std::string F16Bytes(const std::vector<float>& v) { return Encode16<uint16_t>(v, FloatToF16); }
inline std::string I32Bytes(const std::vector<int32_t>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4);
}

// u64 little-endian header length, the header padded with spaces to `align` bytes (as
// the reference writer pads to 8), then the data.
inline std::string FileBytes(std::string header, const std::string& data, size_t align = 8) {
  while (header.size() % align != 0) header += ' ';
  std::string out(8, '\0');
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + data;
}

// Tensors laid out back to back in the data section.
inline std::string Serialize(const std::vector<RawTensor>& tensors, const json& metadata = nullptr,
                      size_t align = 8) {
  json header = json::object();
  std::string data;
  for (const RawTensor& t : tensors) {
    header[t.name] = {{"dtype", t.dtype},
                      {"shape", t.shape},
                      {"data_offsets", {data.size(), data.size() + t.bytes.size()}}};
    data += t.bytes;
  }
  if (!metadata.is_null()) header["__metadata__"] = metadata;
  return FileBytes(header.dump(), data, align);
}

inline void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace lattice::testing
