// The affine code of design.md §3 through a multiplication by the reciprocal of the scale,
// with a check that proves, element by element, that the result equals the codec's exact
// division (affine_code_value); elements it cannot prove must take the division. The codes
// never change, only the speed: a division costs several multiplications on every target.
//
// Why it is exact. The codec computes f(v) with v = RN(d / s), d = RN(x - min), where
// f(v) = rint_even(clamp(v, 0, M)) and M = 2^b - 1 is odd. f is a step function whose only
// steps are at the half-integers k + 1/2, 0 <= k < M (f(v) = 0 for every v < 1/2, including
// negatives and NaN, and f(v) = M for every v > M - 1/2). So if t is any number with
// |t - v| <= B, and no half-integer lies within B of t, then f(t) = f(v).
//
// Here r = RN(1 / s) with |s| in [2^-126, 2^126] (so 1/s is a normal binary32), and
// t = RN(d * r). Let z = d / s exactly, u = 2^-24, eta = 2^-150 (the absolute error bound of
// rounding near zero). Then r = (1/s)(1 + e1) with |e1| <= u, p = d * r = z (1 + e1),
// |t - p| <= u|p| + eta, |v - z| <= u|z| + eta, hence
//     |t - v| <= |z| (3u + u^2) + 2 eta,   and   |z| <= (|t| + eta) / (1 - u)^2,
//     |t - v| <= 4u |t| + 3 eta             (whenever d * r does not overflow).
// Three cases, with tc = clamp(t, 0, M) (NaN -> 0, as in the codec):
//  - t <= 0 or NaN: v <= t + 4u|t| + 3 eta < 1/2, so f(v) = 0 = f(tc) (and NaN gives 0 on both).
//  - t >= M, or t = +inf (d * r overflowed, so z and v are far above M): v >= t(1 - 4u) - 3 eta
//    > M - 1/2, so f(v) = M = f(tc).
//  - 0 < t < M <= 255: B = 4u * 255 + 3 eta < 2^-14. q = rint_even(tc) and tc - q is exact
//    (Sterbenz for q >= 1; tc itself for q = 0), so |tc - q| <= 1/2 - 2^-12 means the nearest
//    half-integer is more than 2^-12 > B away, and f(v) = q.
// Elements with |tc - q| > 1/2 - 2^-12 (about 1 in 2000 on random data) take the division.
// Scales outside [2^-126, 2^126] (subnormal or huge) take the division for every element.
//
// The CPU backend evaluates the same steps on SIMD lanes (host/cpu/reciprocal_code.h), the
// CUDA backend with this function; the tests compare both with the scalar codec, including
// values placed on and next to the half-integer boundaries.
#pragma once

#include <cstdint>

#include "wq/codec/affine.h"
#include "wq/codec/config.h"

namespace wq::codec {

/// 1.5 * 2^23. For v in [0, 2^22], RN(v + kRoundMagic) - kRoundMagic is rint_even(v), and the
/// bits of RN(v + kRoundMagic) are kRoundMagicBits + rint_even(v): the code as an integer.
inline constexpr float kRoundMagic = 12582912.0f;
inline constexpr std::uint32_t kRoundMagicBits = 0x4b400000u;

/// Farther than this from an integer, the proof above does not hold for t.
inline constexpr float kReciprocalMargin = 0.5f - 0x1p-12f;

/// Whether RN(1 / scale) is a normal binary32, the premise of the proof above. Every bound of
/// the proof is on magnitudes, so it holds for a negative scale (symmetric groups) too: then d
/// and r have opposite signs whenever t > 0, and an overflow of d * r to -inf lands in the
/// t <= 0 case, where z is far below zero as well.
WQ_HD inline bool reciprocal_is_exact_enough(float scale) {
  const float magnitude = scale < 0.0f ? -scale : scale;
  return magnitude >= 0x1p-126f && magnitude <= 0x1p126f;
}

/// The code of d = RN(x - min) under a scale with reciprocal r (reciprocal_is_exact_enough),
/// max_code = M, returned as RN(code + kRoundMagic) (float_bits() of it minus kRoundMagicBits
/// is the integer code). *t gets RN(d * r), the unrounded code (error statistics may use
/// t - code); *unproved is set when the proof fails and the caller must use
/// affine_code_value() instead.
WQ_HD inline float reciprocal_code_biased(float d, float r, float max_code, float* t, bool* unproved) {
  *t = mul_rn(d, r);
  float tc = *t > 0.0f ? *t : 0.0f;  // NaN -> 0
  tc = tc < max_code ? tc : max_code;
  const float biased = add_rn(tc, kRoundMagic);
  const float q = sub_rn(biased, kRoundMagic);
  const float distance = tc > q ? sub_rn(tc, q) : sub_rn(q, tc);  // exact
  *unproved = distance > kReciprocalMargin;
  return biased;
}

/// t = RN(RN(x - min) * r), the reciprocal coder's unrounded code, at a group's two ends, the
/// smaller into *low: t is monotone in x, so every element's t lies between them.
template <typename T>
WQ_HD inline void reciprocal_t_of_ends(T lo, T hi, T min, T r, T* low, T* high) {
  const T t_lo = mul_rn(sub_rn(lo, min), r), t_hi = mul_rn(sub_rn(hi, min), r);
  *low = t_lo < t_hi ? t_lo : t_hi;
  *high = t_lo < t_hi ? t_hi : t_lo;
}

/// reciprocal_coverage()'s test on one group (T = float: a bool) or, on the host, on SIMD
/// vectors of groups (a lane mask): whether t at both ends lies in [-1/2, M + 1/2], and r is a
/// reciprocal at all (r = 0 means the group takes the division). NaN fails every comparison.
template <typename T>
WQ_HD inline auto reciprocal_ends_inside(T lo, T hi, T min, T r, T max_code) {
  T low, high;
  reciprocal_t_of_ends(lo, hi, min, r, &low, &high);
  const T zero = max_code - max_code;
  return (low >= zero - 0.5f) & (high <= add_rn(max_code, zero + 0.5f)) & (r != zero);
}

/// Whether the reciprocal coder may skip its clamp for a group whose elements lie in [lo, hi],
/// coded with `p` through r = RN(1 / p.scale) (reciprocal_is_exact_enough): a per-group test for
/// ranges that may clip in general (symmetric, F16 parameters) but often do not.
///
/// Why it holds. t = RN(RN(x - min) * r) is monotone in x (each rounding is monotone), so every
/// element's t lies between t(lo) and t(hi). If both lie in [-1/2, M + 1/2], an element's
/// rint(t) differs from rint(clamp(t, 0, M)) only where t is a half-integer at an end (-1/2 or
/// M + 1/2), and there |t - rint(t)| = 1/2 exceeds kReciprocalMargin, so the coder's check sends
/// the element to the division, which clamps. (rint(t) may be -0.0 for t in (-1/2, 0): code 0.)
/// A NaN end gives kMayClip.
WQ_HD inline Coverage reciprocal_coverage(float lo, float hi, AffineParams p, float r, float max_code) {
  return reciprocal_ends_inside(lo, hi, p.min, r, max_code) ? Coverage::kEveryElementInside : Coverage::kMayClip;
}

}  // namespace wq::codec
