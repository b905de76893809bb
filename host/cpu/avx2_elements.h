// AVX2 loads of eight tensor elements as binary32, and the minimum and maximum of eight lanes,
// shared by the AVX2 loops of the affine and compressed-tensors quantizers. Include only from
// files whose callers are target("avx2,fma,f16c") and run only after avx2_takes(dtype)
// (cpu_features.h); everything here is always_inline, so no AVX2 copy of it is ever emitted
// for a baseline caller.
#pragma once

#include <immintrin.h>

#include <cstddef>

#include "cpu/avx2_codes.h"
#include "wq/dtype.h"

#define WQ_AVX2_F16C_INLINE __attribute__((target("avx2,fma,f16c"), always_inline)) inline

namespace wq::detail::avx2 {

/// Eight elements of the input as binary32: exact conversions (design.md §3), so every dtype
/// then runs the same arithmetic. BF16 is the top half of a binary32; F16 by vcvtph2ps.
template <DType D>
WQ_AVX2_F16C_INLINE __m256 load8(const std::byte* p) {
  if constexpr (D == DType::kF32) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(p));
  } else if constexpr (D == DType::kBF16) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  } else {
    static_assert(D == DType::kF16);
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
}

WQ_AVX2_INLINE float min_of(__m256 v) {
  __m128 m = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_min_ps(m, _mm_movehl_ps(m, m));
  return _mm_cvtss_f32(_mm_min_ss(m, _mm_shuffle_ps(m, m, 1)));
}

WQ_AVX2_INLINE float max_of(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  return _mm_cvtss_f32(_mm_max_ss(m, _mm_shuffle_ps(m, m, 1)));
}

}  // namespace wq::detail::avx2
