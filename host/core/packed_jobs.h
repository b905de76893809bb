// Checks and geometry shared by both backends' compressed-tensors (pack-quantized) jobs, so
// that they refuse the same inputs with the same messages.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "wq/backend.h"
#include "wq/codec/pack_quantized.h"

namespace wq::detail {

/// Where each part of a pack-quantized tensor lies (docs/compressed-tensors.md §1).
struct PackedGeometry {
  std::uint64_t rows = 0;
  std::uint64_t cols = 0;
  std::uint64_t group_size = 0;        ///< as the arithmetic uses it: cols for one group per row
  std::uint64_t groups_per_row = 0;
  std::uint64_t words_per_row = 0;     ///< int32 words of a packed row: ceil(cols * bits / 32)
  std::uint64_t zero_point_rows = 0;   ///< rows of weight_zero_point: ceil(rows * bits / 32)
};

/// Throws Error(kUsage) unless `job` can be quantized: a 2-D F32/F16/BF16 input, bits in
/// 1..8, a group size that divides the columns, output buffers present. Returns its geometry.
PackedGeometry check_pack_quantize_job(const PackQuantizeJob& job);

/// The geometry of a [rows, cols] weight under a scheme (group_size 0: one group per row), for
/// planning; no checks.
PackedGeometry packed_geometry(std::uint64_t rows, std::uint64_t cols, int bits, std::uint64_t group_size);

/// The codec's scalar for a floating dtype the job check accepted.
codec::ct::Scalar packed_scalar(DType dtype);

/// The module a weight belongs to, as PackQuantizedScheme::ignore globs name it: "model.q_proj"
/// of "model.q_proj.weight" (a name without that suffix as it is).
std::string weight_module(std::string_view name);

/// Error(kBadData) for a non-finite element `index` of `tensor`.
[[noreturn]] void refuse_packed_nonfinite(std::string_view tensor, std::uint64_t index, float x);

/// Error(kBadData) for group `group` of `tensor`, whose range overflows the dtype.
[[noreturn]] void refuse_packed_range(std::string_view tensor, std::uint64_t group, DType dtype);

/// Error(kBadData) for element `index` (value x) of `tensor`, whose decoded value is beyond the
/// dtype (compressed-tensors would store it, and vLLM would compute with an infinity).
[[noreturn]] void refuse_packed_decode(std::string_view tensor, std::uint64_t index, float x, DType dtype);

}  // namespace wq::detail
