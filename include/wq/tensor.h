// Non-owning views of tensor data.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "wq/export.h"
#include "wq/dtype.h"

namespace wq {

using Shape = std::vector<std::uint64_t>;

/// Number of elements of a shape (1 for a 0-d shape). Throws Error(kBadFormat) on overflow.
WQ_API std::uint64_t element_count(const Shape& shape);

/// A read-only view of a dense, row-major, little-endian tensor. Does not own `data`; the
/// caller keeps it alive while the view is used. `data` need not be aligned. `name` is used
/// only in error messages.
struct TensorView {
  std::string_view name;
  DType dtype = DType::kF32;
  Shape shape;
  const std::byte* data = nullptr;

  std::uint64_t numel() const { return element_count(shape); }
  std::uint64_t nbytes() const { return numel() * dtype_size(dtype); }
};

/// A writable view with the same conventions as TensorView.
struct MutableTensorView {
  std::string_view name;
  DType dtype = DType::kF32;
  Shape shape;
  std::byte* data = nullptr;

  std::uint64_t numel() const { return element_count(shape); }
  std::uint64_t nbytes() const { return numel() * dtype_size(dtype); }
};

}  // namespace wq
