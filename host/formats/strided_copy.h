// Materialising a strided view (torch views keep their base storage) into dense row-major
// bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

namespace wq::detail {

/// True when `stride` is the row-major contiguous stride of `shape` (size-1 dimensions may
/// have any stride). Sizes and strides must be non-negative.
bool is_contiguous(const std::vector<std::int64_t>& shape, const std::vector<std::int64_t>& stride);

/// Number of elements of the base a view touches: 1 + its largest offset (0 for an empty
/// view); nullopt when that does not fit 64 bits. Sizes and strides must be non-negative.
std::optional<std::uint64_t> view_extent(const std::vector<std::int64_t>& shape,
                                         const std::vector<std::int64_t>& stride);

/// Copies the view into `out` (dense, row-major); element size `element`. The caller has
/// checked that every offset of the view lies inside `base` (view_extent()) and that `out`
/// holds the view's element count times `element` bytes.
void copy_strided(const std::byte* base, std::size_t element, const std::vector<std::int64_t>& shape,
                  const std::vector<std::int64_t>& stride, std::byte* out);

}  // namespace wq::detail
