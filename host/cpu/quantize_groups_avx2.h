// The common case of per-group quantization in one AVX2 pass per batch of groups: float32,
// bfloat16 or float16 input (converted exactly to binary32 as it is loaded), F32 or F16
// scales, every group the same size G (a multiple of 16; the rows hold whole groups). While a batch of groups is in L1 it computes their ranges and signal energy, their
// parameters (by the codec, in baseline code), then their codes, packed in registers straight
// into the output stream. Only call when use_avx2() (cpu_features.h) is true, and for F16 input use_f16c() too.
#pragma once

#include <cstddef>
#include <cstdint>

#include "wq/codec/affine.h"
#include "wq/tensor.h"

namespace wq::detail {

/// Where quantize_uniform_groups_avx2() stopped: `done` groups were quantized; when
/// done < groups, group `done` has range [lo, hi] that is not finite (`nonfinite`) or that
/// codec::affine_params() refused with `status`.
struct UniformGroupsResult {
  std::uint64_t done = 0;
  bool nonfinite = false;
  codec::ParamsStatus status = codec::ParamsStatus::kOk;
  float lo = 0, hi = 0;
};

/// Quantizes `groups` groups of `group_size` elements of `dtype` (F32, BF16 or F16) laid end
/// to end at `x`, writing params[k] (by `recipe`'s min-max or symmetric rule) and the codes, packed
/// (design.md §4) from `out` on. Adds to the 8-lane binary32 sums `signal` (x^2), `error`
/// (e^2) and `max_error` (max |e|); the error is measured in code units and scaled once per
/// group.
UniformGroupsResult quantize_uniform_groups_avx2(DType dtype, const std::byte* x, std::uint64_t groups,
                                                 std::uint64_t group_size, const codec::Recipe& recipe,
                                                 codec::AffineParams* params, std::uint8_t* out, float* signal,
                                                 float* error, float* max_error);

/// The codes of `n` elements (a multiple of 16) of `dtype` at `x` under one group's `params`
/// (the per-tensor codes pass), packed from `out` on. The clamp is skipped only when `coverage`
/// says that every element lies inside the params' range.
/// `reciprocal` is RN(1 / scale), or 0 where reciprocal_is_exact_enough() fails or the scale is
/// 0 (then every element takes the division). Adds to the same sums as above.
void quantize_span_avx2(DType dtype, const std::byte* x, std::uint64_t n, codec::AffineParams params,
                        float reciprocal, codec::Coverage coverage, int bits, std::uint8_t* out, float* signal, float* error,
                        float* max_error);

/// codec::rule_params() of `count` ranges under `recipe`, and RN(1 / scale)
/// of each: 0 where the scale is 0 or outside reciprocal_is_exact_enough() (those groups take
/// the division). With `coverage`, also each group's codec::reciprocal_coverage() (kMayClip
/// where the reciprocal is 0). Returns the index of the first range that is not finite or is
/// refused (count when none), with the reason in *result. Compiled for the baseline: it runs
/// the codec's own inline functions, which are never instantiated inside AVX2 code.
int params_of_ranges(const float* lo, const float* hi, int count, const codec::Recipe& recipe,
                     codec::AffineParams* params, float* reciprocal, UniformGroupsResult* result,
                     codec::Coverage* coverage = nullptr);

}  // namespace wq::detail
