// Safetensors checkpoints: each file is memory-mapped read-only and its header is
// validated in full when it opens (lengths, dtypes, shapes, offsets, overlaps,
// duplicate names), so a broken or hostile file is an error naming the file and the
// tensor, never a crash, an out-of-bounds read or an allocation of an untrusted size.
//
// Format: u64 little-endian N, N bytes of UTF-8 JSON {name: {dtype, shape,
// data_offsets: [begin, end]}, "__metadata__": {str: str}}, then the data section,
// to whose start (8 + N) the offsets are relative.
//
// A Checkpoint is not thread-safe: one loading thread owns it. A file changed or
// truncated by another process while mapped is outside what validation can catch.
#include "worker/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "worker/json_util.h"

namespace lattice {
namespace {

using json = nlohmann::json;

constexpr size_t kMaxIndexFileBytes = 64 << 20;

// Every dtype the safetensors format defines; only those with a DType load.
struct DTypeEntry {
  std::string_view name;
  std::optional<DType> dtype;
};
constexpr DTypeEntry kDTypes[] = {
    {"F32", DType::kF32}, {"BF16", DType::kBF16},
    {"F16", DType::kF16}, {"I32", DType::kI32},
    {"F64", {}},          {"I64", {}},
    {"U64", {}},          {"U32", {}},
    {"I16", {}},          {"U16", {}},
    {"I8", {}},           {"U8", {}},
    {"BOOL", {}},         {"F8_E4M3", {}},
    {"F8_E5M2", {}},      {"F8_E8M0", {}},
    {"F6_E2M3", {}},      {"F6_E3M2", {}},
    {"F4", {}},           {"C64", {}},
};

std::string_view SafetensorsName(DType dtype) {
  for (const DTypeEntry& e : kDTypes) {
    if (e.dtype == dtype) return e.name;
  }
  return "?";
}

absl::Status TensorError(const std::string& path, const std::string& name,
                         std::string_view problem) {
  return absl::InvalidArgumentError(absl::StrFormat("%s: tensor '%s': %s", path, name, problem));
}

// Maps the whole file read-only; the Buffer's deleter unmaps it.
absl::StatusOr<std::shared_ptr<Buffer>> MapFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) return absl::NotFoundError(absl::StrCat(path, ": no such file"));
    return absl::InvalidArgumentError(absl::StrCat(path, ": cannot open: ", std::strerror(err)));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: file is %d bytes, shorter than the 8-byte header length (truncated?)", path, size));
  }
  void* data = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int err = errno;
  ::close(fd);  // the mapping keeps the file alive
  if (data == MAP_FAILED) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": mmap failed: ", std::strerror(err)));
  }
  return std::make_shared<Buffer>(data, size, Device::kCpu, [size](void* p) { ::munmap(p, size); });
}

// Parses the header, recording the first top-level key that appears twice (nlohmann
// would silently keep the last one).
absl::StatusOr<json> ParseHeader(const std::string& path, const char* begin, const char* end) {
  std::map<std::string, int> seen;
  std::string duplicate;
  json::parser_callback_t on_event = [&](int depth, json::parse_event_t event, json& parsed) {
    if (depth == 1 && event == json::parse_event_t::key && parsed.is_string()) {
      if (++seen[parsed.get<std::string>()] == 2 && duplicate.empty()) {
        duplicate = parsed.get<std::string>();
      }
    }
    return true;
  };
  absl::StatusOr<json> header = ParseJson(path + ": header", begin, end, on_event);
  if (!header.ok()) return header.status();
  if (!header->is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": header is not a JSON object but ", header->type_name()));
  }
  if (!duplicate.empty()) return TensorError(path, duplicate, "appears twice in the header");
  return header;
}

struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin = 0;
  uint64_t end = 0;
};

// Validates one header entry against the data section of `data_bytes` bytes.
absl::StatusOr<Entry> ParseEntry(const std::string& path, const std::string& name,
                                 const json& value, uint64_t data_bytes) {
  if (!value.is_object()) {
    return TensorError(path, name,
                       absl::StrCat("entry must be an object, got ", DescribeJson(value)));
  }
  Entry entry;
  entry.name = name;
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    if (!value.contains(key)) {
      return TensorError(path, name, absl::StrCat("missing field '", key, "'"));
    }
  }

  const json& dtype = value["dtype"];
  if (!dtype.is_string()) {
    return TensorError(path, name,
                       absl::StrCat("dtype must be a string, got ", DescribeJson(dtype)));
  }
  const DTypeEntry* known = nullptr;
  for (const DTypeEntry& e : kDTypes) {
    if (e.name == dtype.get<std::string>()) known = &e;
  }
  if (known == nullptr) {
    return TensorError(path, name, absl::StrCat("unknown dtype ", DescribeJson(dtype)));
  }
  if (!known->dtype) {
    return TensorError(path, name,
                       absl::StrCat("unsupported dtype ", std::string(known->name),
                                    " (supported: F32, BF16, F16, I32)"));
  }
  entry.dtype = *known->dtype;
  const uint64_t element_bytes = DTypeSize(entry.dtype);

  const json& shape = value["shape"];
  if (!shape.is_array()) {
    return TensorError(path, name, absl::StrCat("shape must be a list, got ", DescribeJson(shape)));
  }
  uint64_t numel = 1;
  for (const json& dim : shape) {
    if (dim.is_number_integer() && !dim.is_number_unsigned()) {
      return TensorError(path, name,
                         absl::StrCat("negative dimension in shape ", DescribeJson(shape)));
    }
    if (!dim.is_number_unsigned()) {
      return TensorError(path, name,
                         absl::StrCat("shape must hold integers, got ", DescribeJson(shape)));
    }
    const uint64_t d = dim.get<uint64_t>();
    // numel * element size must fit in int64 (ShapeNumel and nbytes use signed sizes).
    const uint64_t limit =
        static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / element_bytes;
    if (d > limit || (d != 0 && numel > limit / d)) {
      return TensorError(
          path, name, absl::StrCat("shape ", DescribeJson(shape), " overflows the element count"));
    }
    numel *= d;
    entry.shape.push_back(static_cast<int64_t>(d));
  }

  const json& offsets = value["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
      !offsets[1].is_number_unsigned()) {
    return TensorError(
        path, name,
        absl::StrCat("data_offsets must be [begin, end] of non-negative integers, got ",
                     DescribeJson(offsets)));
  }
  entry.begin = offsets[0].get<uint64_t>();
  entry.end = offsets[1].get<uint64_t>();
  if (entry.begin > entry.end) {
    return TensorError(
        path, name,
        absl::StrFormat("data_offsets [%d, %d] end before they begin", entry.begin, entry.end));
  }
  if (entry.end > data_bytes) {
    return TensorError(
        path, name,
        absl::StrFormat("data_offsets [%d, %d] end beyond the data section of %d bytes",
                        entry.begin, entry.end, data_bytes));
  }
  if (entry.end - entry.begin != numel * element_bytes) {
    return TensorError(
        path, name,
        absl::StrFormat("data_offsets [%d, %d] span %d bytes but shape %s of %s needs %d",
                        entry.begin, entry.end, entry.end - entry.begin, ShapeToString(entry.shape),
                        std::string(known->name), numel * element_bytes));
  }
  return entry;
}

absl::Status ValidateMetadata(const std::string& path, const json& metadata) {
  if (!metadata.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": __metadata__ must be an object, got ", DescribeJson(metadata)));
  }
  for (const auto& [key, value] : metadata.items()) {
    if (!value.is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": __metadata__ value of '", key, "' must be a string, got ", DescribeJson(value)));
    }
  }
  return absl::OkStatus();
}

// A shard must be a plain file name inside the checkpoint directory.
bool IsPlainFileName(const std::string& name) {
  return !name.empty() && name != "." && name != ".." &&
         name.find_first_of(std::string("/\\\0", 3)) == std::string::npos;
}

}  // namespace

absl::Status Checkpoint::AddFile(const std::string& path) {
  absl::StatusOr<std::shared_ptr<Buffer>> mapped = MapFile(path);
  if (!mapped.ok()) return mapped.status();
  const std::shared_ptr<Buffer>& file = *mapped;
  const char* bytes = static_cast<const char*>(file->data());
  const uint64_t file_bytes = file->bytes();

  uint64_t header_bytes = 0;
  for (int i = 7; i >= 0; --i) header_bytes = header_bytes << 8 | static_cast<uint8_t>(bytes[i]);
  if (header_bytes > kMaxSafetensorsHeaderBytes) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: header length %d exceeds the limit of %d bytes", path, header_bytes,
                        kMaxSafetensorsHeaderBytes));
  }
  if (header_bytes > file_bytes - 8) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: header length %d exceeds the %d bytes after the length "
                        "field (truncated?)",
                        path, header_bytes, file_bytes - 8));
  }
  absl::StatusOr<json> header = ParseHeader(path, bytes + 8, bytes + 8 + header_bytes);
  if (!header.ok()) return header.status();

  const uint64_t data_start = 8 + header_bytes;
  const uint64_t data_bytes = file_bytes - data_start;
  std::vector<Entry> entries;
  for (const auto& [name, value] : header->items()) {
    if (name == "__metadata__") {
      if (absl::Status s = ValidateMetadata(path, value); !s.ok()) return s;
      continue;
    }
    absl::StatusOr<Entry> entry = ParseEntry(path, name, value, data_bytes);
    if (!entry.ok()) return entry.status();
    entries.push_back(std::move(*entry));
  }

  // No two tensors may share bytes (empty tensors occupy none).
  std::vector<const Entry*> by_offset;
  for (const Entry& e : entries) {
    if (e.end > e.begin) by_offset.push_back(&e);
  }
  std::sort(by_offset.begin(), by_offset.end(),
            [](const Entry* a, const Entry* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const Entry& prev = *by_offset[i - 1];
    const Entry& cur = *by_offset[i];
    if (cur.begin < prev.end) {
      return TensorError(path, cur.name,
                         absl::StrFormat("data_offsets [%d, %d] overlap tensor '%s' at [%d, %d]",
                                         cur.begin, cur.end, prev.name, prev.begin, prev.end));
    }
  }

  const int file_index = static_cast<int>(files_.size());
  for (const Entry& e : entries) {
    if (const TensorInfo* other = Find(e.name)) {
      return absl::InvalidArgumentError(absl::StrFormat("tensor '%s' is in two files: %s and %s",
                                                        e.name, paths_[other->file_index], path));
    }
  }
  for (Entry& e : entries) {
    TensorInfo info;
    info.name = e.name;
    info.dtype = e.dtype;
    info.shape = std::move(e.shape);
    info.file_index = file_index;
    info.data_offset = static_cast<size_t>(data_start + e.begin);
    tensors_.emplace(e.name, std::move(info));
  }
  files_.push_back(file);
  paths_.push_back(path);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::OpenFile(const std::string& path) {
  std::unique_ptr<Checkpoint> checkpoint(new Checkpoint());
  checkpoint->source_ = path;
  if (absl::Status s = checkpoint->AddFile(path); !s.ok()) return s;
  return checkpoint;
}

absl::StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::Open(const std::string& dir) {
  namespace fs = std::filesystem;
  const std::string index_path = (fs::path(dir) / "model.safetensors.index.json").string();
  const std::string single_path = (fs::path(dir) / "model.safetensors").string();
  std::error_code ec;
  if (!fs::exists(index_path, ec)) {
    if (fs::exists(single_path, ec)) {
      absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint = OpenFile(single_path);
      if (checkpoint.ok()) (*checkpoint)->source_ = dir;
      return checkpoint;
    }
    return absl::NotFoundError(absl::StrCat(
        dir, ": no model.safetensors or model.safetensors.index.json in this directory"));
  }

  absl::StatusOr<json> index = ReadJsonFile(index_path, kMaxIndexFileBytes);
  if (!index.ok()) return index.status();
  if (!index->is_object() || !index->contains("weight_map")) {
    return absl::InvalidArgumentError(absl::StrCat(index_path, ": missing field 'weight_map'"));
  }
  const json& weight_map = (*index)["weight_map"];
  if (!weight_map.is_object() || weight_map.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        index_path, ": weight_map must be a non-empty object, got ", DescribeJson(weight_map)));
  }
  std::map<std::string, std::vector<std::string>>
      shards;  // file -> tensors; sorted for a stable file order
  for (const auto& [tensor, file] : weight_map.items()) {
    if (!file.is_string()) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: weight_map entry for tensor '%s' must be a file name, got %s",
                          index_path, tensor, DescribeJson(file)));
    }
    const std::string name = file.get<std::string>();
    if (!IsPlainFileName(name)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: shard file name %s (for tensor '%s') must be a plain file name "
                          "without a path separator or '..'",
                          index_path, DescribeJson(file), tensor));
    }
    shards[name].push_back(tensor);
  }

  std::unique_ptr<Checkpoint> checkpoint(new Checkpoint());
  checkpoint->source_ = dir;
  for (const auto& [file, tensors] : shards) {
    const std::string path = (fs::path(dir) / file).string();
    if (absl::Status s = checkpoint->AddFile(path); !s.ok()) {
      if (absl::IsNotFound(s)) {
        return absl::NotFoundError(
            absl::StrFormat("%s: shard %s named by %s does not exist", path, file, index_path));
      }
      return s;
    }
    for (const std::string& tensor : tensors) {
      const TensorInfo* info = checkpoint->Find(tensor);
      if (info == nullptr || checkpoint->paths_[info->file_index] != path) {
        return absl::InvalidArgumentError(
            absl::StrFormat("%s: tensor '%s' is missing from shard %s, where %s places it", path,
                            tensor, file, index_path));
      }
    }
  }
  return checkpoint;
}

const TensorInfo* Checkpoint::Find(std::string_view name) const {
  auto it = tensors_.find(absl::string_view(name.data(), name.size()));
  return it == tensors_.end() ? nullptr : &it->second;
}

std::vector<std::string> Checkpoint::Names() const {
  std::vector<std::string> names;
  names.reserve(tensors_.size());
  for (const auto& [name, info] : tensors_) names.push_back(name);
  std::sort(names.begin(), names.end());
  return names;
}

absl::StatusOr<Tensor> Checkpoint::LoadRaw(std::string_view name) {
  const TensorInfo* info = Find(name);
  if (info == nullptr) {
    return absl::NotFoundError(absl::StrCat("missing tensor ", std::string(name), " in ", source_));
  }
  used_[info->name] = true;
  return Tensor::FromBuffer(files_[info->file_index], info->data_offset, info->dtype, info->shape);
}

absl::StatusOr<Tensor> Checkpoint::Load(std::string_view name, const Shape& expected_shape) {
  const TensorInfo* info = Find(name);
  if (info == nullptr) {
    return absl::NotFoundError(absl::StrCat("missing tensor ", std::string(name), " in ", source_));
  }
  const std::string& path = paths_[info->file_index];
  if (info->shape != expected_shape) {
    return absl::InvalidArgumentError(absl::StrFormat("tensor %s has shape %s, expected %s (in %s)",
                                                      std::string(name), ShapeToString(info->shape),
                                                      ShapeToString(expected_shape), path));
  }
  if (info->dtype != DType::kF32 && info->dtype != DType::kBF16 && info->dtype != DType::kF16) {
    return absl::InvalidArgumentError(
        absl::StrFormat("tensor %s has dtype %s, not a float type (F32, BF16, F16) (in %s)",
                        std::string(name), std::string(SafetensorsName(info->dtype)), path));
  }
  Tensor raw =
      Tensor::FromBuffer(files_[info->file_index], info->data_offset, info->dtype, info->shape);
  used_[info->name] = true;
  // A header length that is not a multiple of the element size leaves the data
  // misaligned; copy it to aligned memory before reading typed elements.
  if (reinterpret_cast<uintptr_t>(raw.raw_data()) % DTypeSize(info->dtype) != 0) {
    Tensor aligned = Tensor::Empty(info->dtype, info->shape);
    std::memcpy(aligned.raw_data(), raw.raw_data(), raw.nbytes());
    return info->dtype == DType::kF32 ? aligned : aligned.To(DType::kF32);
  }
  return raw.To(DType::kF32);
}

void Checkpoint::MarkUsed(std::string_view name) {
  if (const TensorInfo* info = Find(name)) used_[info->name] = true;
}

std::vector<std::string> Checkpoint::Unused() const {
  std::vector<std::string> names;
  for (const auto& [name, info] : tensors_) {
    if (!used_.contains(name)) names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace lattice
