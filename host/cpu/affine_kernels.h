// CPU kernels of affine quantization over ranges of a tensor's elements. They only loop: the
// arithmetic is the codec's (wq/codec). The CPU backend decides which ranges run where.
#pragma once

#include <cstdint>
#include <string_view>

#include "wq/backend.h"
#include "wq/codec/affine.h"
#include "wq/quant_spec.h"

namespace wq::detail {

/// Smallest and largest value of elements [begin, end) of a floating tensor. NaN
/// elements are skipped here (the quantize pass finds them); infinities are returned.
void minmax_elements(DType dtype, const std::byte* src, std::uint64_t begin, std::uint64_t end,
                     float* lo, float* hi);

/// Quantizes elements [begin, end) (begin a multiple of 8) into the packed stream at `codes`
/// using `params[group]` of each element's group (rounded to F16 when `f16_params`), and adds
/// their error to `stats`. Throws Error(kBadData) naming `tensor` and the element when one is
/// NaN or infinite. Any params: the codes are clamped unless `coverage` says that every element
/// lies inside its group's range.
void quantize_elements(DType dtype, const std::byte* src, const GroupGeometry& geometry,
                       const codec::AffineParams* params, int bits, codec::Coverage coverage, std::uint64_t begin,
                       std::uint64_t end, std::uint8_t* codes, ErrorStats* stats, std::string_view tensor);

/// Why quantize_groups() stopped early, for the caller to turn into an error message.
struct GroupFailure {
  bool failed = false;
  bool nonfinite = false;  ///< lo or hi is NaN/Inf (else: affine_params() refused the range)
  codec::ParamsStatus status = codec::ParamsStatus::kOk;
  std::uint64_t group = 0, begin = 0, end = 0;
  float lo = 0, hi = 0;
};

/// Quantizes whole groups [first_group, last_group), whose elements are [begin, end) (begin a
/// multiple of 8): each group's range, its parameters by the recipe's min-max or symmetric rule
/// (into params[group]) and its codes in one pass while the group is in cache, then the chunk's
/// codes are packed.
GroupFailure quantize_groups(DType dtype, const std::byte* src, const GroupGeometry& geometry,
                             const codec::Recipe& recipe, std::uint64_t first_group,
                             std::uint64_t last_group, std::uint64_t begin, std::uint64_t end,
                             codec::AffineParams* params, std::uint8_t* codes, ErrorStats* stats,
                             std::string_view tensor);

/// Throws Error(kBadData) naming `tensor` and the first NaN/Inf element of [begin, end).
[[noreturn]] void throw_first_nonfinite(DType dtype, const std::byte* src, std::uint64_t begin,
                                        std::uint64_t end, std::string_view tensor);

/// Decodes elements [begin, end) (begin a multiple of 8) of a packed stream into `dst`.
/// `stream`: the whole output is much larger than the caches; where the CPU allows, write it
/// with non-temporal stores (same bytes, less memory traffic).
void dequantize_elements(DType dtype, std::byte* dst, const GroupGeometry& geometry,
                         const codec::AffineParams* params, int bits, std::uint64_t begin,
                         std::uint64_t end, const std::uint8_t* codes, bool stream);

/// Calls fn(begin, end, group) for each run of elements of [begin, end) in one group.
template <typename Fn>
void for_each_group_run(const GroupGeometry& g, std::uint64_t begin, std::uint64_t end, Fn&& fn) {
  std::uint64_t e = begin;
  while (e < end) {
    const std::uint64_t row = e / g.cols;
    const std::uint64_t j = (e - row * g.cols) / g.group_size;
    const std::uint64_t group_end_in_row = (j + 1) * g.group_size < g.cols ? (j + 1) * g.group_size : g.cols;
    std::uint64_t run_end = row * g.cols + group_end_in_row;
    if (run_end > end) run_end = end;
    fn(e, run_end, row * g.groups_per_row + j);
    e = run_end;
  }
}

}  // namespace wq::detail
