// Tensor and Buffer: host allocation, views and dtype conversion.
#include "kernels/tensor.h"

#include <cstdlib>
#include <cstring>
#include <new>

namespace lattice {

std::string ShapeToString(const Shape& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(shape[i]);
  }
  return out + "]";
}

int64_t ShapeNumel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

Buffer::Buffer(void* data, size_t bytes, Device device, Deleter deleter)
    : data_(data), bytes_(bytes), device_(device), deleter_(std::move(deleter)) {}

Buffer::~Buffer() {
  if (deleter_) deleter_(data_);
}

std::shared_ptr<Buffer> Buffer::AllocateHost(size_t bytes) {
  constexpr size_t kAlign = 64;
  const size_t rounded = (bytes + kAlign - 1) / kAlign * kAlign;
  void* data = std::aligned_alloc(kAlign, rounded == 0 ? kAlign : rounded);
  if (data == nullptr) throw std::bad_alloc();
  return std::make_shared<Buffer>(data, bytes, Device::kCpu, [](void* p) { std::free(p); });
}

Tensor Tensor::Empty(DType dtype, Shape shape) {
  for (int64_t d : shape) LATTICE_CHECK_MSG(d >= 0, "negative dimension in %s", ShapeToString(shape).c_str());
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.buffer_ = Buffer::AllocateHost(t.nbytes());
  return t;
}

Tensor Tensor::Zeros(DType dtype, Shape shape) {
  Tensor t = Empty(dtype, std::move(shape));
  std::memset(t.raw_data(), 0, t.nbytes());
  return t;
}

Tensor Tensor::FromBuffer(std::shared_ptr<Buffer> buffer, size_t offset, DType dtype,
                          Shape shape) {
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  LATTICE_CHECK(offset + t.nbytes() <= buffer->bytes());
  t.buffer_ = std::move(buffer);
  t.offset_ = offset;
  return t;
}

Tensor Tensor::FromVector(const std::vector<float>& values, Shape shape) {
  Tensor t = Empty(DType::kF32, std::move(shape));
  LATTICE_CHECK(static_cast<size_t>(t.numel()) == values.size());
  std::memcpy(t.raw_data(), values.data(), t.nbytes());
  return t;
}

int64_t Tensor::dim(int i) const {
  if (i < 0) i += ndim();
  LATTICE_CHECK(i >= 0 && i < ndim());
  return shape_[i];
}

Tensor Tensor::View(Shape shape) const {
  int infer = -1;
  int64_t known = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      LATTICE_CHECK(infer == -1);
      infer = static_cast<int>(i);
    } else {
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    LATTICE_CHECK(known > 0 && numel() % known == 0);
    shape[infer] = numel() / known;
  }
  LATTICE_CHECK_MSG(ShapeNumel(shape) == numel(), "cannot view %s as %s",
                    ShapeToString(shape_).c_str(), ShapeToString(shape).c_str());
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::Slice(int64_t begin, int64_t end) const {
  LATTICE_CHECK(ndim() >= 1 && 0 <= begin && begin <= end && end <= shape_[0]);
  const int64_t row = shape_[0] == 0 ? 0 : numel() / shape_[0];
  Tensor t = *this;
  t.offset_ = offset_ + static_cast<size_t>(begin * row) * DTypeSize(dtype_);
  t.shape_[0] = end - begin;
  return t;
}

namespace {

float LoadAsFloat(DType dtype, const void* data, int64_t i) {
  switch (dtype) {
    case DType::kF32:
      return static_cast<const float*>(data)[i];
    case DType::kBF16:
      return Bf16ToFloat(static_cast<const uint16_t*>(data)[i]);
    case DType::kF16:
      return F16ToFloat(static_cast<const uint16_t*>(data)[i]);
    case DType::kI32:
      break;
  }
  LATTICE_CHECK_MSG(false, "not a float dtype");
  return 0;
}

void StoreFloat(DType dtype, void* data, int64_t i, float v) {
  switch (dtype) {
    case DType::kF32:
      static_cast<float*>(data)[i] = v;
      return;
    case DType::kBF16:
      static_cast<uint16_t*>(data)[i] = FloatToBf16(v);
      return;
    case DType::kF16:
      static_cast<uint16_t*>(data)[i] = FloatToF16(v);
      return;
    case DType::kI32:
      break;
  }
  LATTICE_CHECK_MSG(false, "not a float dtype");
}

}  // namespace

Tensor Tensor::To(DType dtype) const {
  LATTICE_CHECK(defined() && device() == Device::kCpu);
  Tensor out = Empty(dtype, shape_);
  if (dtype == dtype_) {
    std::memcpy(out.raw_data(), raw_data(), nbytes());
    return out;
  }
  const int64_t n = numel();
  for (int64_t i = 0; i < n; ++i) StoreFloat(dtype, out.raw_data(), i, LoadAsFloat(dtype_, raw_data(), i));
  return out;
}

std::string Tensor::DebugString() const {
  return std::string(DTypeName(dtype_)) + ShapeToString(shape_);
}

}  // namespace lattice
