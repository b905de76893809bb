#include "formats/strided_copy.h"

#include <cstring>

namespace wq::detail {

bool is_contiguous(const std::vector<std::int64_t>& shape, const std::vector<std::int64_t>& stride) {
  std::uint64_t expected = 1;  // unsigned and checked: the sizes come from a file
  for (std::size_t d = shape.size(); d-- > 0;) {
    const auto size = static_cast<std::uint64_t>(shape[d]);
    if (size == 0) return true;  // no elements: nothing to copy, any strides
    if (size != 1 && static_cast<std::uint64_t>(stride[d]) != expected) return false;
    if (__builtin_mul_overflow(expected, size, &expected)) return false;
  }
  return true;
}

std::optional<std::uint64_t> view_extent(const std::vector<std::int64_t>& shape,
                                         const std::vector<std::int64_t>& stride) {
  for (std::int64_t s : shape) {
    if (s == 0) return 0;
  }
  std::uint64_t last = 0;
  for (std::size_t d = 0; d < shape.size(); ++d) {
    std::uint64_t step = 0;
    if (__builtin_mul_overflow(static_cast<std::uint64_t>(shape[d] - 1), static_cast<std::uint64_t>(stride[d]), &step) ||
        __builtin_add_overflow(last, step, &last)) {
      return std::nullopt;
    }
  }
  if (last == UINT64_MAX) return std::nullopt;
  return last + 1;
}

void copy_strided(const std::byte* base, std::size_t element, const std::vector<std::int64_t>& shape,
                  const std::vector<std::int64_t>& stride, std::byte* out) {
  const std::size_t dims = shape.size();
  for (std::int64_t s : shape) {
    if (s == 0) return;
  }
  if (dims == 0) {
    std::memcpy(out, base, element);
    return;
  }
  std::vector<std::int64_t> index(dims, 0);
  const std::int64_t inner = shape[dims - 1];
  const std::int64_t inner_stride = stride[dims - 1];
  for (;;) {
    std::int64_t offset = 0;
    for (std::size_t d = 0; d + 1 < dims; ++d) offset += index[d] * stride[d];
    for (std::int64_t i = 0; i < inner; ++i) {
      std::memcpy(out, base + static_cast<std::size_t>(offset + i * inner_stride) * element, element);
      out += element;
    }
    std::size_t d = dims - 1;
    for (;;) {  // next index of the outer dimensions, odometer style
      if (d == 0) return;
      --d;
      if (++index[d] < shape[d]) break;
      index[d] = 0;
    }
  }
}

}  // namespace wq::detail
