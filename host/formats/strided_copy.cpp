#include "formats/strided_copy.h"

#include <cstring>

namespace wq::detail {

bool is_contiguous(const std::vector<std::int64_t>& shape, const std::vector<std::int64_t>& stride) {
  std::int64_t expected = 1;
  for (std::size_t d = shape.size(); d-- > 0;) {
    if (shape[d] != 1 && stride[d] != expected) return false;
    expected *= shape[d];
  }
  return true;
}

std::uint64_t view_extent(const std::vector<std::int64_t>& shape, const std::vector<std::int64_t>& stride) {
  std::uint64_t last = 0;
  for (std::size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 0) return 0;
    last += static_cast<std::uint64_t>(shape[d] - 1) * static_cast<std::uint64_t>(stride[d]);
  }
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
