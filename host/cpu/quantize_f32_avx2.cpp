#include "cpu/quantize_f32_avx2.h"

#include <immintrin.h>

#include "cpu/avx2_codes.h"

namespace wq::detail {
namespace {

// Everything here is AVX2 + FMA code, called only after use_avx2().

// reciprocal_code_value() of reciprocal_code.h for 8 lanes: q = rint(clamp(d * r, 0, M)).
// *bad gets the lanes with |clamp(t) - q| > 1/2 - 2^-12, where the proof does not hold.
WQ_AVX2_INLINE __m256 code_values(__m256 d, __m256 r, const avx2::CodeConstants& c, __m256* bad) {
  const __m256 t = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(d, r), _mm256_setzero_ps()), c.top);
  const __m256 q = _mm256_round_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  *bad = _mm256_cmp_ps(_mm256_and_ps(_mm256_sub_ps(t, q), c.abs_mask), c.margin, _CMP_GT_OQ);
  return q;
}

}  // namespace

__attribute__((target("avx2,fma"))) void quantize_runs_f32_avx2(const std::byte* src, const F32Run* runs, int count,
                                                                 float max_code, std::uint8_t* codes,
                                                                 std::uint64_t base, std::uint64_t prefetch_bytes,
                                                                 float* signal, float* error, float* max_error,
                                                                 std::uint64_t* done) {
  const avx2::CodeConstants c = avx2::code_constants(max_code);
  const __m256 abs_mask = c.abs_mask;
  __m256 sig = _mm256_loadu_ps(signal), err = _mm256_loadu_ps(error), mx = _mm256_loadu_ps(max_error);
  for (int k = 0; k < count; ++k) {
    const F32Run& run = runs[k];
    const float s = run.params.scale;
    if (!codec::reciprocal_is_exact_enough(s)) {  // 0 too
      done[k] = 0;
      continue;
    }
    const std::uint64_t n = (run.end - run.begin) / 16 * 16;
    done[k] = n;
    const __m256 scale = _mm256_set1_ps(s), min = _mm256_set1_ps(run.params.min);
    const __m256 r = _mm256_set1_ps(run.reciprocal);
    const std::byte* x = src + 4 * run.begin;
    std::uint8_t* out = codes + (run.begin - base);
    for (std::uint64_t i = 0; i < n; i += 16) {
      _mm_prefetch(reinterpret_cast<const char*>(x + 4 * i + prefetch_bytes), _MM_HINT_T0);
      const __m256 x0 = _mm256_loadu_ps(reinterpret_cast<const float*>(x + 4 * i));
      const __m256 x1 = _mm256_loadu_ps(reinterpret_cast<const float*>(x + 4 * i + 32));
      const __m256 d0 = _mm256_sub_ps(x0, min), d1 = _mm256_sub_ps(x1, min);
      __m256 bad0, bad1;
      __m256 q0 = code_values(d0, r, c, &bad0);
      __m256 q1 = code_values(d1, r, c, &bad1);
      if (__builtin_expect(_mm256_movemask_ps(_mm256_or_ps(bad0, bad1)) != 0, 0)) {
        q0 = avx2::codes_by_vector_division(x0, min, scale, c);
        q1 = avx2::codes_by_vector_division(x1, min, scale, c);
      }
      avx2::store_codes16<8>(avx2::code_bytes(q0, q1, c), out + i);  // one byte per code
      // Error statistics (binary32 partial sums; FMA is fine here: statistics, not codes).
      const __m256 e0 = _mm256_fnmadd_ps(scale, q0, d0), e1 = _mm256_fnmadd_ps(scale, q1, d1);
      sig = _mm256_add_ps(sig, _mm256_fmadd_ps(x1, x1, _mm256_mul_ps(x0, x0)));
      err = _mm256_add_ps(err, _mm256_fmadd_ps(e1, e1, _mm256_mul_ps(e0, e0)));
      mx = _mm256_max_ps(mx, _mm256_max_ps(_mm256_and_ps(e0, abs_mask), _mm256_and_ps(e1, abs_mask)));
    }
  }
  _mm256_storeu_ps(signal, sig);
  _mm256_storeu_ps(error, err);
  _mm256_storeu_ps(max_error, mx);
}

}  // namespace wq::detail
