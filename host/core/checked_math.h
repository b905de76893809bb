// Overflow-checked arithmetic for integers read from files.
//
// Every size, offset, count and stride a reader takes from a file goes through these before
// it is used to index memory or to size an allocation: wrapping arithmetic is how a crafted
// file turns a bounds check into an out-of-bounds access.
#pragma once

#include <cstdint>
#include <optional>

#include "wq/dtype.h"
#include "wq/tensor.h"

namespace wq::detail {

/// a + b, or nullopt when it does not fit 64 bits.
inline std::optional<std::uint64_t> checked_add(std::uint64_t a, std::uint64_t b) {
  std::uint64_t r = 0;
  if (__builtin_add_overflow(a, b, &r)) return std::nullopt;
  return r;
}

/// a * b, or nullopt when it does not fit 64 bits.
inline std::optional<std::uint64_t> checked_mul(std::uint64_t a, std::uint64_t b) {
  std::uint64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r)) return std::nullopt;
  return r;
}

/// Whether [offset, offset + length) lies inside [0, size), without computing offset + length.
inline bool range_within(std::uint64_t offset, std::uint64_t length, std::uint64_t size) {
  return offset <= size && length <= size - offset;
}

/// Bytes of a dense tensor of `shape` and `dtype`, or nullopt when the element count or the
/// byte count does not fit 64 bits.
inline std::optional<std::uint64_t> checked_tensor_bytes(const Shape& shape, DType dtype) {
  std::uint64_t bytes = dtype_size(dtype);
  for (std::uint64_t d : shape) {
    if (__builtin_mul_overflow(bytes, d, &bytes)) return std::nullopt;
  }
  return bytes;
}

}  // namespace wq::detail
