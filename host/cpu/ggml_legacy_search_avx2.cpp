// The candidates of wq's search in the legacy ggml layouts, eight elements at a time.
//
// Why a second spelling of codec::ggml::symmetric_candidate() and affine_candidate(): their
// per-element loops run one division and one binary64 square at a time, 21 to 23 times per
// block. These do the same operations on the block's four registers of eight:
// - the division is vdivps (IEEE, correctly rounded like the codec's);
// - the clamps are vmaxps/vminps, which return their second operand for a NaN, as the codec's
//   `t > lo ? t : lo` does;
// - the rounding is vroundps to nearest even, which on [-127, 255] is the codec's
//   add-and-subtract of 1.5 * 2^23 (both give the nearest integer, halves to even);
// - the decode is the same product (and sum), and e = x - decoded the same subtraction;
// - element i's e^2 goes to lane i % 8 of the binary64 sums in index order: register v holds
//   elements 8v .. 8v + 7, so adding the four registers' squares in order is that order, and
//   the lanes are combined pairwise by the codec's own combine_lanes().
// The affine search's parameters come from the CPU's AVX2 spelling of the §4.1 search
// (cpu/mse_kernels.h), which the backend suites already hold to codec::mse_params().
// tests/unit/ggml_legacy_search_test.cpp compares every candidate with the codec's, on inputs
// that land on halves, and whole blocks with the scalar kernels.
#include "cpu/ggml_legacy_search_avx2.h"

#include <immintrin.h>

#include "cpu/avx2_codes.h"
#include "cpu/mse_kernels.h"
#include "wq/codec/mse.h"

namespace wq::detail {
namespace {

namespace ggml = codec::ggml;

#define WQ_SEARCH_AVX2 __attribute__((target("avx2,fma")))

// Adds e^2 of one register of elements to the lanes (lo: lanes 0-3, hi: lanes 4-7).
WQ_AVX2_INLINE void add_squares(__m256 e, __m256d* lo, __m256d* hi) {
  const __m256d e0 = _mm256_cvtps_pd(_mm256_castps256_ps128(e));
  const __m256d e1 = _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1));
  *lo = _mm256_add_pd(*lo, _mm256_mul_pd(e0, e0));
  *hi = _mm256_add_pd(*hi, _mm256_mul_pd(e1, e1));
}

WQ_AVX2_INLINE double combined(__m256d lo, __m256d hi) {
  alignas(32) double lanes[8];
  _mm256_store_pd(lanes, lo);
  _mm256_store_pd(lanes + 4, hi);
  return codec::combine_lanes(lanes[0], lanes[1], lanes[2], lanes[3], lanes[4], lanes[5], lanes[6], lanes[7]);
}

// Eight integer-valued floats in [-128, 255] as eight bytes (signed or unsigned by the caller's
// reading: the low byte of each, as the codec's casts keep).
WQ_AVX2_INLINE void store_bytes(__m256 q, void* out) {
  const __m256i i32 = _mm256_cvttps_epi32(q);
  const __m128i w16 = _mm_packs_epi32(_mm256_castsi256_si128(i32), _mm256_extracti128_si256(i32, 1));
  const __m128i b8 = _mm_shuffle_epi8(w16, _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, -1, -1, -1, -1, -1, -1, -1, -1));
  _mm_storel_epi64(static_cast<__m128i*>(out), b8);
}

WQ_SEARCH_AVX2 double symmetric_avx2(const float* x, float d, int low, int high, ggml::SymmetricCodes* out) {
  const __m256 step = _mm256_set1_ps(d);
  const __m256 lo = _mm256_set1_ps(-static_cast<float>(low)), hi = _mm256_set1_ps(static_cast<float>(high));
  __m256d lanes_lo = _mm256_setzero_pd(), lanes_hi = _mm256_setzero_pd();
  out->d = d;
  for (int v = 0; v < 4; ++v) {
    const __m256 xv = _mm256_loadu_ps(x + 8 * v);
    __m256 t = _mm256_max_ps(_mm256_div_ps(xv, step), lo);
    t = _mm256_round_ps(_mm256_min_ps(t, hi), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    store_bytes(t, out->q + 8 * v);
    add_squares(_mm256_sub_ps(xv, _mm256_mul_ps(t, step)), &lanes_lo, &lanes_hi);
  }
  return combined(lanes_lo, lanes_hi);
}

WQ_SEARCH_AVX2 double affine_avx2(const float* x, codec::AffineParams p, int bits, std::uint8_t* q) {
  const avx2::CodeConstants c = avx2::code_constants(static_cast<float>(codec::max_code(bits)));
  const __m256 scale = _mm256_set1_ps(p.scale), min = _mm256_set1_ps(p.min);
  __m256d lanes_lo = _mm256_setzero_pd(), lanes_hi = _mm256_setzero_pd();
  for (int v = 0; v < 4; ++v) {
    const __m256 xv = _mm256_loadu_ps(x + 8 * v);
    const __m256 codes = avx2::codes_by_vector_division(xv, min, scale, c);
    store_bytes(codes, q + 8 * v);
    add_squares(_mm256_sub_ps(xv, _mm256_add_ps(_mm256_mul_ps(codes, scale), min)), &lanes_lo, &lanes_hi);
  }
  return combined(lanes_lo, lanes_hi);
}

}  // namespace

double Avx2SearchKernels::symmetric(const float* x, float d, int low, int high, ggml::SymmetricCodes* out) const {
  return symmetric_avx2(x, d, low, high, out);
}

codec::ParamsStatus Avx2SearchKernels::affine_params(const float* x, float lo, float hi, int bits,
                                                     codec::AffineParams* out) const {
  return mse_span_params(DType::kF32, reinterpret_cast<const std::byte*>(x), ggml::kLegacyBlock, lo, hi,
                         codec::Recipe{codec::RangeRule::kMse, bits, true}, out);
}

double Avx2SearchKernels::affine(const float* x, codec::AffineParams p, int bits, std::uint8_t* q) const {
  return affine_avx2(x, p, bits, q);
}

}  // namespace wq::detail
