// Codes of design.md §3 through a multiplication by the reciprocal of the scale, with a check
// that proves, lane by lane, that the result equals the codec's exact division; lanes that
// cannot be proved are recomputed with the division itself. The bytes never change, only the
// speed: a division costs ~5x a multiplication on the CPUs we run on.
//
// The proof that this is exact, and its premise and margin, are in wq/codec/reciprocal.h; this
// file evaluates the same steps on SIMD lanes.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "cpu/lanes.h"
#include "wq/codec/affine.h"
#include "wq/codec/reciprocal.h"

namespace wq::detail {

using codec::reciprocal_is_exact_enough;

/// True when some lane of a comparison mask is set, with the ISA's movemask. The 8-lane one is
/// an AVX2 function that is not always_inline: a generic always_inline caller could not inline
/// it, so the AVX2 entry points that use it are `flatten` (everything they call is inlined into
/// them, and they are AVX2).
inline bool any_lane(Lanes<4>::Int m) {
  __m128 v;
  std::memcpy(&v, &m, sizeof v);
  return _mm_movemask_ps(v) != 0;
}
__attribute__((target("avx2,fma"))) inline bool any_lane(const Lanes<8>::Int& m) {
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
  const FloatLanes<L> round_magic = zero + codec::kRoundMagic;
  const FloatLanes<L> margin = zero + codec::kReciprocalMargin;
  FloatLanes<L> t = d * r;
  t = t > zero ? t : zero;
  t = t < top ? t : top;
  const FloatLanes<L> q = (t + round_magic) - round_magic;
  const FloatLanes<L> dist = (FloatLanes<L>)((IntLanes<L>)(t - q) & 0x7fffffff);  // |t - q|, exact
  *unproved = dist > margin;
  return q;
}

}  // namespace wq::detail
