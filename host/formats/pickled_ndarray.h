// numpy arrays as pickles hold them (formats.md §3): _reconstruct + BUILD state (protocols
// 2-4) or _frombuffer (protocol 5).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "formats/pickle/pickle_value.h"
#include "wq/tensor.h"

namespace wq::detail {

struct PickledArray {
  DType dtype = DType::kF32;
  Shape shape;
  std::string_view raw;     ///< the elements, `fortran` or C order, `swap` when big-endian
  bool fortran = false;
  bool big_endian = false;
};

/// True for values that are pickled ndarrays.
bool is_pickled_ndarray(const pickle::Value* v);

/// Decodes a pickled ndarray; throws Error(kBadFormat) naming `where` when it is malformed or
/// of a dtype wq does not handle. `u16_as_bf16`: Paddle stores bf16 weights as uint16.
PickledArray decode_pickled_ndarray(const pickle::Value* v, const std::string& where, bool u16_as_bf16);

/// The array's elements as dense, row-major, little-endian bytes into `out`.
void to_row_major_le(const PickledArray& array, std::string* out);

}  // namespace wq::detail
