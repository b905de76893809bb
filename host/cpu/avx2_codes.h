// AVX2 building blocks shared by the float32 quantize loops: codes through the reciprocal of
// the scale (the proof is in wq/codec/reciprocal.h) and 16 codes to their packed bytes. Include only
// from files whose callers are target("avx2,fma") and run only after use_avx2(); everything
// here is always_inline, so no AVX2 copy of it is ever emitted for a baseline caller.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "wq/codec/reciprocal.h"

#define WQ_AVX2_INLINE __attribute__((target("avx2,fma"), always_inline)) inline

namespace wq::detail::avx2 {

/// The broadcast constants of the code loops.
struct CodeConstants {
  __m256 top;       ///< M = 2^b - 1
  __m256 margin;    ///< 1/2 - 2^-12: farther than this from an integer, the proof does not hold
  __m256 abs_mask;  ///< clears the sign bit
  __m256i order;    ///< after two saturating packs the codes sit in dwords 0, 4, 1, 5, ...
};

WQ_AVX2_INLINE CodeConstants code_constants(float max_code) {
  return CodeConstants{_mm256_set1_ps(max_code), _mm256_set1_ps(codec::kReciprocalMargin),
                       _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)};
}

/// codec::affine_code_value() of 8 lanes, for a nonzero scale: clamp(rint((x - min) / scale),
/// 0, M) with the division itself (vdivps is IEEE division, correctly rounded like the
/// codec's). max(v, 0) gives 0 for NaN like the codec's `v > 0 ? v : 0`, and rint on [0, M]
/// is one vroundps. The exact path for the lanes where the reciprocal's proof fails; the
/// tests compare it with the scalar codec on values placed at the half-integers.
WQ_AVX2_INLINE __m256 codes_by_vector_division(__m256 x, __m256 min, __m256 scale, const CodeConstants& c) {
  const __m256 v = _mm256_div_ps(_mm256_sub_ps(x, min), scale);
  const __m256 clamped = _mm256_min_ps(_mm256_max_ps(v, _mm256_setzero_ps()), c.top);
  return _mm256_round_ps(clamped, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

/// 16 codes (integer-valued floats in [0, 255]) as 16 bytes in element order.
WQ_AVX2_INLINE __m128i code_bytes(__m256 q0, __m256 q1, const CodeConstants& c) {
  const __m256i w = _mm256_packus_epi32(_mm256_cvttps_epi32(q0), _mm256_cvttps_epi32(q1));
  return _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(_mm256_packus_epi16(w, w), c.order));
}

/// Stores 16 codes of `Bits` bits (1..8) as the 2 * Bits bytes of design.md §4 (code i at
/// bits [i*b, i*b + b), least significant first), merging neighbours by multiply-adds and
/// shifts, with no per-bit loop: pairs of codes into 16-bit lanes, pairs of pairs into 32-bit
/// lanes, then the two octets into 64-bit words of 8b bits each.
template <int Bits>
WQ_AVX2_INLINE void store_codes16(__m128i bytes, std::uint8_t* out) {
  static_assert(Bits >= 1 && Bits <= 8);
  if constexpr (Bits == 8) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out), bytes);
  } else if constexpr (Bits == 4) {
    const __m128i pairs = _mm_maddubs_epi16(bytes, _mm_set1_epi16(0x1001));  // c0 + 16 c1 per 16-bit lane
    _mm_storel_epi64(reinterpret_cast<__m128i*>(out), _mm_packus_epi16(pairs, pairs));
  } else if constexpr (Bits == 2) {
    const __m128i pairs = _mm_maddubs_epi16(bytes, _mm_set1_epi16(0x0401));  // c0 + 4 c1
    const __m128i quads = _mm_madd_epi16(pairs, _mm_set1_epi32(0x00100001));   // + 16 (c2 + 4 c3)
    const __m128i packed = _mm_packus_epi16(_mm_packus_epi32(quads, quads), _mm_setzero_si128());
    const std::uint32_t word = static_cast<std::uint32_t>(_mm_cvtsi128_si32(packed));
    std::memcpy(out, &word, 4);
  } else {
    __m128i pairs;  // c0 + c1 << b in each 16-bit lane
    if constexpr (Bits <= 6) {
      pairs = _mm_maddubs_epi16(bytes, _mm_set1_epi16(static_cast<short>(1 | (1 << Bits) << 8)));
    } else {  // 2^7 is no signed byte: move the odd code down by one bit instead
      pairs = _mm_or_si128(_mm_and_si128(bytes, _mm_set1_epi16(0x00ff)),
                           _mm_and_si128(_mm_srli_epi16(bytes, 8 - Bits), _mm_set1_epi16(0x3f80)));
    }
    const __m128i quads = _mm_madd_epi16(pairs, _mm_set1_epi32(1 | (1 << 2 * Bits) << 16));  // 4b bits each
    const __m128i octets = _mm_or_si128(_mm_and_si128(quads, _mm_set1_epi64x(0xffffffff)),
                                        _mm_slli_epi64(_mm_srli_epi64(quads, 32), 4 * Bits));
    const std::uint64_t first = static_cast<std::uint64_t>(_mm_cvtsi128_si64(octets));
    const std::uint64_t second = static_cast<std::uint64_t>(_mm_extract_epi64(octets, 1));
    std::memcpy(out, &first, Bits);  // little-endian: the octet's b bytes are the word's low bytes
    std::memcpy(out + Bits, &second, Bits);
  }
}

}  // namespace wq::detail::avx2
