// Affine quantization of design.md §3: range -> (scale, min), value -> code, code -> value.
//
// Every backend calls these functions; they are the only definition of the arithmetic.
#pragma once

#include <cstdint>

#include "wq/codec/config.h"
#include "wq/codec/half.h"

namespace wq::codec {

/// Largest code of a b-bit quantizer: 2^b - 1.
WQ_HD inline std::uint32_t max_code(int bits) { return (1u << bits) - 1u; }

/// The stored parameters of one group, already rounded to the stored scale dtype (S in §3).
struct AffineParams {
  float scale;
  float min;
};

enum class ParamsStatus : int {
  kOk = 0,
  kRangeOverflow = 1,  ///< hi - lo is not finite in binary32
  kF16Overflow = 2,    ///< scale or min has no finite binary16 value
};

/// The binary32 range, scale and min of affine_params() before S and its checks. T is float,
/// or on the host a SIMD vector of floats (the CPU backend computes several groups at once).
template <typename T>
WQ_HD inline void affine_unrounded_params(T lo, T hi, T max_code, T* range, T* scale, T* min) {
  // -0.0 and +0.0 compare equal, so which one a min/max reduction returns depends on its
  // order; adding +0.0 maps -0.0 to +0.0 (and nothing else changes) so every backend stores
  // the same bits.
  const T zero = max_code - max_code;
  *min = add_rn(lo, zero);
  *range = sub_rn(add_rn(hi, zero), *min);
  *scale = div_rn(*range, max_code);
}

/// Computes a group's (scale, min) from its finite range [lo, hi]:
/// scale = S((hi - lo) / (2^b - 1)), min = S(lo), S = rounding to F16 when `f16_params`.
WQ_HD inline ParamsStatus affine_params(float lo, float hi, int bits, bool f16_params,
                                        AffineParams* out) {
  float range, scale, min;
  affine_unrounded_params(lo, hi, static_cast<float>(max_code(bits)), &range, &scale, &min);
  if (!is_finite(range)) return ParamsStatus::kRangeOverflow;
  if (f16_params) {
    if (f16_overflows(scale) || f16_overflows(min)) return ParamsStatus::kF16Overflow;
    scale = round_through_f16(scale);
    min = round_through_f16(min);
  }
  out->scale = scale;
  out->min = min;
  return ParamsStatus::kOk;
}

/// The min of a symmetric group (docs/container-format.md §4.2): -2^(b-1) * scale, exact in
/// binary32 (a power of two), so it is never stored.
WQ_HD inline float symmetric_min(float scale, int bits) {
  return mul_rn(-static_cast<float>(1u << (bits - 1)), scale);
}

/// A symmetric group's parameters from its finite range [lo, hi] (§4.2): m = the end of larger
/// magnitude (hi on a tie), scale = S(m / -2^(b-1)), min = symmetric_min(scale). Zero gets code
/// 2^(b-1) and decodes to exactly 0; m gets code 0. The range is never wider than binary32 here,
/// but the scale may have no binary16 value.
WQ_HD inline ParamsStatus symmetric_params(float lo, float hi, int bits, bool f16_params, AffineParams* out) {
  const float zero = 0.0f;
  const float l = add_rn(lo, zero), h = add_rn(hi, zero);  // -0.0 -> +0.0, as affine_params()
  const float m = h >= -l ? h : l;
  float scale = div_rn(m, -static_cast<float>(1u << (bits - 1)));
  if (f16_params) {
    if (f16_overflows(scale)) return ParamsStatus::kF16Overflow;
    scale = round_through_f16(scale);
  }
  out->scale = scale;
  out->min = symmetric_min(scale, bits);
  return ParamsStatus::kOk;
}

/// How a group's parameters are chosen (QuantSpec's affine methods): the range stage.
enum class RangeRule : int {
  kMinMax = 0,     ///< affine_params() of the group's min and max: every element lies inside
  kSymmetric = 1,  ///< symmetric_params(): the far end of the range may be clipped
  kMse = 2,        ///< the least-error search of codec/mse.h: any element may be clipped
};

/// Whether every element of a group lies inside its coded range [min, min + M * scale], so that
/// a coder may skip its clamp. Only Recipe::coverage() (for a whole recipe) and
/// reciprocal_coverage() (for one group's ends, wq/codec/reciprocal.h) make one: coders that
/// skip the clamp take this type, so a clipping range cannot reach them by a stray `true`.
enum class Coverage : bool { kMayClip = false, kEveryElementInside = true };

/// Everything the kernels need to know of a QuantSpec, carried whole from the spec to every
/// kernel instead of loose (bits, f16) scalars.
struct Recipe {
  RangeRule rule = RangeRule::kMinMax;
  int bits = 8;
  bool f16_params = false;

  /// Only min-max parameters kept in binary32 contain every element: rounding them to F16 may
  /// move min above the smallest element, and symmetric and mse ranges clip by design.
  WQ_HD Coverage coverage() const {
    return rule == RangeRule::kMinMax && !f16_params ? Coverage::kEveryElementInside : Coverage::kMayClip;
  }
  /// Whether the container stores no min (the symmetric encoding).
  WQ_HD bool stores_min() const { return rule != RangeRule::kSymmetric; }
};

/// The parameters of a group under a min-max or symmetric rule (mse starts from min-max; its
/// search is codec/mse.h).
WQ_HD inline ParamsStatus rule_params(float lo, float hi, const Recipe& recipe, AffineParams* out) {
  if (recipe.rule == RangeRule::kSymmetric) return symmetric_params(lo, hi, recipe.bits, recipe.f16_params, out);
  return affine_params(lo, hi, recipe.bits, recipe.f16_params, out);
}

/// The code of a finite value as an integer-valued binary32, for scale != 0:
/// clamp(rint((x - min) / scale), 0, 2^b - 1), rint rounding half to even. Clamping first and
/// rounding after gives the same integer (the bounds are integers and rint is monotonic), and
/// lets rint be the exact add-and-subtract of 1.5 * 2^23, which needs no rounding-mode
/// instruction on any target. T is float, or on the host a SIMD vector of floats with every
/// argument broadcast: the CPU backend evaluates this same expression lane-wise.
template <typename T>
WQ_HD inline T affine_code_value(T x, T scale, T min, T max_code) {
  const T zero = scale - scale;              // 0 in every lane (scale is finite); NaN x -> 0
  const T round_magic = zero + 12582912.0f;  // 1.5 * 2^23: ulp 1 across [2^23, 2^24)
  T v = div_rn(sub_rn(x, min), scale);
  v = v > zero ? v : zero;
  v = v < max_code ? v : max_code;
  return sub_rn(add_rn(v, round_magic), round_magic);
}

/// Code of a finite value: 0 when scale == 0, else affine_code_value().
WQ_HD inline std::uint32_t affine_code(float x, AffineParams params, float max_code_f) {
  if (params.scale == 0.0f) return 0;
  // An integer in [0, 255]: the int32 conversion is exact and vectorises everywhere.
  const float v = affine_code_value(x, params.scale, params.min, max_code_f);
  return static_cast<std::uint32_t>(static_cast<std::int32_t>(v));
}

/// Decoded binary32 value of a code: fma(scale, q, min), one rounding.
WQ_HD inline float affine_value(std::uint32_t code, AffineParams params) {
  return fma_rn(params.scale, static_cast<float>(code), params.min);
}

}  // namespace wq::codec
