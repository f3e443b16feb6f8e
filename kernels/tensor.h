// Tensor: a dtype, a shape, a device and a shared owning buffer. Tensors are
// contiguous, row-major views; slicing along the first dimension and reshaping
// share the buffer, everything else copies.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/check.h"
#include "kernels/dtype.h"

namespace lattice {

enum class Device : uint8_t { kCpu, kCuda };

using Shape = std::vector<int64_t>;

std::string ShapeToString(const Shape& shape);
int64_t ShapeNumel(const Shape& shape);

// Owns one allocation (host memory, a memory-mapped file region, device memory).
class Buffer {
 public:
  using Deleter = std::function<void(void*)>;
  Buffer(void* data, size_t bytes, Device device, Deleter deleter);
  ~Buffer();
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  // 64-byte aligned host memory, uninitialised.
  static std::shared_ptr<Buffer> AllocateHost(size_t bytes);

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }

 private:
  void* data_;
  size_t bytes_;
  Device device_;
  Deleter deleter_;
};

template <typename T>
constexpr DType DTypeOf();
template <>
constexpr DType DTypeOf<float>() { return DType::kF32; }
template <>
constexpr DType DTypeOf<int32_t>() { return DType::kI32; }

class Tensor {
 public:
  Tensor() = default;

  // Uninitialised host tensor.
  static Tensor Empty(DType dtype, Shape shape);
  static Tensor Zeros(DType dtype, Shape shape);
  // A view of `buffer` starting at byte `offset`; the buffer must hold the whole tensor.
  static Tensor FromBuffer(std::shared_ptr<Buffer> buffer, size_t offset, DType dtype,
                           Shape shape);
  // A host f32 tensor holding a copy of `values`.
  static Tensor FromVector(const std::vector<float>& values, Shape shape);

  bool defined() const { return buffer_ != nullptr; }
  DType dtype() const { return dtype_; }
  Device device() const { return buffer_ ? buffer_->device() : Device::kCpu; }
  const Shape& shape() const { return shape_; }
  int ndim() const { return static_cast<int>(shape_.size()); }
  int64_t dim(int i) const;
  int64_t numel() const { return ShapeNumel(shape_); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * DTypeSize(dtype_); }

  void* raw_data() const { return static_cast<char*>(buffer_->data()) + offset_; }
  template <typename T>
  T* data() const {
    LATTICE_CHECK(dtype_ == DTypeOf<T>());
    return static_cast<T*>(raw_data());
  }
  template <typename T>
  std::span<T> span() const {
    return {data<T>(), static_cast<size_t>(numel())};
  }

  // Same data, new shape with the same number of elements; one dimension may be -1.
  Tensor View(Shape shape) const;
  // Rows [begin, end) of the first dimension, sharing the buffer.
  Tensor Slice(int64_t begin, int64_t end) const;
  // Host copy converted to `dtype` (float types only); copies even when the dtype matches.
  Tensor To(DType dtype) const;
  Tensor Clone() const { return To(dtype_); }

  std::string DebugString() const;

 private:
  std::shared_ptr<Buffer> buffer_;
  size_t offset_ = 0;
  DType dtype_ = DType::kF32;
  Shape shape_;
};

}  // namespace lattice
