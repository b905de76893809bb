// Codes of design.md §3 through a multiplication by the reciprocal of the scale, with a check
// that proves, lane by lane, that the result equals the codec's exact division; lanes that
// cannot be proved are recomputed with the division itself. The bytes never change, only the
// speed: a division costs ~5x a multiplication on the CPUs we run on.
//
// Why it is exact. The codec computes f(v) with v = RN(d / s), d = RN(x - min), where
// f(v) = rint_even(clamp(v, 0, M)) and M = 2^b - 1 is odd. f is a step function whose only
// steps are at the half-integers k + 1/2, 0 <= k < M (f(v) = 0 for every v < 1/2, including
// negatives and NaN, and f(v) = M for every v > M - 1/2). So if t is any number with
// |t - v| <= B, and no half-integer lies within B of t, then f(t) = f(v).
//
// Here r = RN(1 / s) with s in [2^-126, 2^126] (so 1/s is a normal binary32), and
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
// Lanes with |tc - q| > 1/2 - 2^-12 (about 1 in 2000 on random data) take the division. Scales
// outside [2^-126, 2^126] (subnormal or huge) take the division for the whole group. The tests
// compare every path with the scalar codec, including values placed on and next to the
// half-integer boundaries.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "cpu/lanes.h"
#include "wq/codec/affine.h"

namespace wq::detail {

/// Whether RN(1 / scale) is a normal binary32, the premise of the proof above.
WQ_INLINE bool reciprocal_is_exact_enough(float scale) { return scale >= 0x1p-126f && scale <= 0x1p126f; }

/// True when some lane of a comparison mask is set, with the ISA's movemask. The 8-lane one is
/// an AVX2 function that is not always_inline: a generic always_inline caller could not inline
/// it, so the AVX2 entry points that use it are `flatten` (everything they call is inlined into
/// them, and they are AVX2).
inline bool any_lane(Lanes<4>::Int m) {
  __m128 v;
  std::memcpy(&v, &m, sizeof v);
  return _mm_movemask_ps(v) != 0;
}
__attribute__((target("avx2,fma"))) inline bool any_lane(Lanes<8>::Int m) {
  __m256 v;
  std::memcpy(&v, &m, sizeof v);
  return _mm256_movemask_ps(v) != 0;
}

/// The codes of L values as integer-valued floats, and the lanes whose proof failed (those
/// must be recomputed by the caller with codec::affine_code_value). `d` is x - min, `r` the
/// reciprocal of the scale, `top` = M.
template <int L>
WQ_INLINE FloatLanes<L> reciprocal_code_value(FloatLanes<L> d, FloatLanes<L> r, FloatLanes<L> top,
                                              IntLanes<L>* unproved) {
  const FloatLanes<L> zero = r - r;
  const FloatLanes<L> round_magic = zero + 12582912.0f;  // as in codec::affine_code_value
  const FloatLanes<L> margin = zero + (0.5f - 0x1p-12f);
  FloatLanes<L> t = d * r;
  t = t > zero ? t : zero;
  t = t < top ? t : top;
  const FloatLanes<L> q = (t + round_magic) - round_magic;
  const FloatLanes<L> dist = (FloatLanes<L>)((IntLanes<L>)(t - q) & 0x7fffffff);  // |t - q|, exact
  *unproved = dist > margin;
  return q;
}

}  // namespace wq::detail
