#include "cpu/ggml_legacy_decode_avx2.h"

#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace wq::detail {
namespace {

namespace ggml = codec::ggml;

#define WQ_DECODE_INLINE __attribute__((target("avx2,f16c"), always_inline)) inline

// A block's binary16 field at byte `offset`, widened exactly.
WQ_DECODE_INLINE __m256 half_at(const std::uint8_t* block, int offset) {
  std::uint16_t bits;
  std::memcpy(&bits, block + offset, sizeof bits);
  return _mm256_set1_ps(_cvtsh_ss(bits));
}

// Eight bytes as eight int32 lanes, unsigned.
WQ_DECODE_INLINE __m256i bytes8(__m128i v) { return _mm256_cvtepu8_epi32(v); }

// code * d (+ m): the codec's mul_rn, then add_rn for the types with a min.
template <bool kMin>
WQ_DECODE_INLINE void store_values(__m256i code, __m256 d, __m256 m, float* out) {
  __m256 y = _mm256_mul_ps(_mm256_cvtepi32_ps(code), d);
  if constexpr (kMin) y = _mm256_add_ps(y, m);
  _mm256_storeu_ps(out, y);
}

// The 32 codes of a Q4 block's 16 bytes: j < 16 the low nibble of byte j, else the high nibble
// of byte j - 16; `offset` subtracted (8 for Q4_0, 0 for Q4_1).
template <bool kMin>
WQ_DECODE_INLINE void decode_q4(const std::uint8_t* qs, __m256 d, __m256 m, int offset, float* out) {
  const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i mask = _mm_set1_epi8(0x0f);
  const __m128i low = _mm_and_si128(bytes, mask), high = _mm_and_si128(_mm_srli_epi16(bytes, 4), mask);
  const __m256i off = _mm256_set1_epi32(offset);
  store_values<kMin>(_mm256_sub_epi32(bytes8(low), off), d, m, out);
  store_values<kMin>(_mm256_sub_epi32(bytes8(_mm_srli_si128(low, 8)), off), d, m, out + 8);
  store_values<kMin>(_mm256_sub_epi32(bytes8(high), off), d, m, out + 16);
  store_values<kMin>(_mm256_sub_epi32(bytes8(_mm_srli_si128(high, 8)), off), d, m, out + 24);
}

// Q5: code j = the Q4 nibble | bit j of qh << 4 (codec::ggml::q5_code), `offset` subtracted.
template <bool kMin>
WQ_DECODE_INLINE void decode_q5(const std::uint8_t* qh_bytes, const std::uint8_t* qs, __m256 d, __m256 m, int offset,
                                float* out) {
  std::uint32_t qh;
  std::memcpy(&qh, qh_bytes, sizeof qh);  // little-endian, as load_u32_le
  const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i mask = _mm_set1_epi8(0x0f);
  const __m128i low = _mm_and_si128(bytes, mask), high = _mm_and_si128(_mm_srli_epi16(bytes, 4), mask);
  const __m128i nibbles[4] = {low, _mm_srli_si128(low, 8), high, _mm_srli_si128(high, 8)};
  const __m256i bits = _mm256_set1_epi32(static_cast<int>(qh));
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i off = _mm256_set1_epi32(offset), one = _mm256_set1_epi32(1);
  for (int k = 0; k < 4; ++k) {
    const __m256i fifth = _mm256_and_si256(_mm256_srlv_epi32(bits, _mm256_add_epi32(lane, _mm256_set1_epi32(8 * k))), one);
    const __m256i code = _mm256_or_si256(bytes8(nibbles[k]), _mm256_slli_epi32(fifth, 4));
    store_values<kMin>(_mm256_sub_epi32(code, off), d, m, out + 8 * k);
  }
}

}  // namespace

__attribute__((target("avx2,f16c"))) void decode_q8_0_blocks_avx2(const std::uint8_t* in, std::uint64_t blocks,
                                                                  float* out) {
  for (std::uint64_t b = 0; b < blocks; ++b) {
    const std::uint8_t* block = in + b * sizeof(ggml::BlockQ8_0);
    const __m256 d = half_at(block, offsetof(ggml::BlockQ8_0, d));
    const std::uint8_t* qs = block + offsetof(ggml::BlockQ8_0, qs);
    for (int k = 0; k < 4; ++k) {
      const __m256i code = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(qs + 8 * k)));
      store_values<false>(code, d, d, out + 32 * b + 8 * k);
    }
  }
}

__attribute__((target("avx2,f16c"))) void decode_q4_0_blocks_avx2(const std::uint8_t* in, std::uint64_t blocks,
                                                                  float* out) {
  for (std::uint64_t b = 0; b < blocks; ++b) {
    const std::uint8_t* block = in + b * sizeof(ggml::BlockQ4_0);
    const __m256 d = half_at(block, offsetof(ggml::BlockQ4_0, d));
    decode_q4<false>(block + offsetof(ggml::BlockQ4_0, qs), d, d, 8, out + 32 * b);
  }
}

__attribute__((target("avx2,f16c"))) void decode_q4_1_blocks_avx2(const std::uint8_t* in, std::uint64_t blocks,
                                                                  float* out) {
  for (std::uint64_t b = 0; b < blocks; ++b) {
    const std::uint8_t* block = in + b * sizeof(ggml::BlockQ4_1);
    const __m256 d = half_at(block, offsetof(ggml::BlockQ4_1, d)), m = half_at(block, offsetof(ggml::BlockQ4_1, m));
    decode_q4<true>(block + offsetof(ggml::BlockQ4_1, qs), d, m, 0, out + 32 * b);
  }
}

__attribute__((target("avx2,f16c"))) void decode_q5_0_blocks_avx2(const std::uint8_t* in, std::uint64_t blocks,
                                                                  float* out) {
  for (std::uint64_t b = 0; b < blocks; ++b) {
    const std::uint8_t* block = in + b * sizeof(ggml::BlockQ5_0);
    const __m256 d = half_at(block, offsetof(ggml::BlockQ5_0, d));
    decode_q5<false>(block + offsetof(ggml::BlockQ5_0, qh), block + offsetof(ggml::BlockQ5_0, qs), d, d, 16,
                     out + 32 * b);
  }
}

__attribute__((target("avx2,f16c"))) void decode_q5_1_blocks_avx2(const std::uint8_t* in, std::uint64_t blocks,
                                                                  float* out) {
  for (std::uint64_t b = 0; b < blocks; ++b) {
    const std::uint8_t* block = in + b * sizeof(ggml::BlockQ5_1);
    const __m256 d = half_at(block, offsetof(ggml::BlockQ5_1, d)), m = half_at(block, offsetof(ggml::BlockQ5_1, m));
    decode_q5<true>(block + offsetof(ggml::BlockQ5_1, qh), block + offsetof(ggml::BlockQ5_1, qs), d, m, 0,
                    out + 32 * b);
  }
}

}  // namespace wq::detail
