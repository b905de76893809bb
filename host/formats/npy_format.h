// The .npy format (numpy/lib/format.py, formats.md §5): parsing a header, formatting one, and
// turning the data numpy stored into the dense row-major little-endian layout wq uses.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "wq/tensor.h"

namespace wq::detail {

/// numpy refuses longer headers (_MAX_HEADER_SIZE); so do we.
inline constexpr std::uint64_t kNpyMaxHeaderChars = 10000;
/// Magic, version and the longest length field (version 2.0/3.0): what precedes the header.
inline constexpr std::uint64_t kNpyMaxPrefixBytes = 12;

/// What an .npy header says about its array.
struct NpyHeader {
  DType dtype = DType::kF32;
  Shape shape;
  bool fortran_order = false;  ///< data is column-major
  bool big_endian = false;     ///< multi-byte elements are stored big-endian
  std::uint64_t data_offset = 0;  ///< bytes from the start of the .npy to its data
  std::uint64_t data_bytes = 0;   ///< element count x element size (overflow-checked)

  /// True when the stored bytes already are dense, row-major and little-endian.
  bool is_native() const noexcept;
};

/// Parses the header at the start of `data` (`size` bytes available: the whole file, or at
/// least the first kNpyMaxPrefixBytes + kNpyMaxHeaderChars bytes of a longer member). Accepts
/// versions 1.0, 2.0 and 3.0, a dict literal with exactly the keys descr, fortran_order and
/// shape. Does not check that the data itself is present: callers compare data_offset +
/// data_bytes with what they hold. `where` names the file (and member) in errors.
/// Throws Error(kBadFormat) for malformed headers and Error(kUnsupported) for valid numpy
/// dtypes wq has no type for (uint16 and wider unsigned, complex, strings, objects,
/// structured arrays).
NpyHeader parse_npy_header(const std::byte* data, std::uint64_t size, const std::string& where);

/// The bytes np.save writes before the data of a C-order little-endian array: magic, version
/// 1.0, header with numpy's spare growth spaces, padded so the data starts at a multiple of 64.
/// BF16 has no numpy type: Error(kUnsupported).
std::string format_npy_header(DType dtype, const Shape& shape);

/// The numpy type string of a wq dtype ("<f4", "|b1", ...); BF16 is written as "<u2", the
/// convention of Paddle (callers that must not lose the type refuse BF16 themselves).
std::string npy_descr(DType dtype);

/// Copies header.data_bytes bytes of stored data from `src` to `dst` in dense row-major
/// little-endian order: byte-swaps big-endian elements and transposes Fortran-order data.
/// `src` and `dst` must not overlap.
void npy_to_row_major(const NpyHeader& header, const std::byte* src, std::byte* dst);

}  // namespace wq::detail
