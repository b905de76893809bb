#include "cpu/ggml_legacy_avx2.h"

#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "cpu/lanes.h"
#include "wq/codec/ggml_legacy.h"
#include "wq/codec/half.h"

namespace wq::detail {
namespace {

namespace ggml = codec::ggml;

#define WQ_AVX2_INLINE __attribute__((target("avx2"), always_inline)) inline
#define WQ_AVX2_F16C_INLINE __attribute__((target("avx2,f16c"), always_inline)) inline

struct Block32 {
  __m256 v[4];  // elements 0-7, 8-15, 16-23, 24-31
};

WQ_AVX2_INLINE Block32 load_block(const float* x) {
  Block32 b;
  for (int k = 0; k < 4; ++k) b.v[k] = _mm256_loadu_ps(x + 8 * k);
  return b;
}

WQ_AVX2_INLINE __m256 abs_of(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

WQ_AVX2_INLINE float horizontal_max(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
  return _mm_cvtss_f32(m);
}

// The magnitudes' bit patterns of a block, lane-wise maxima of its four registers. Non-negative
// binary32 values order as their bit patterns do as integers, and a NaN's pattern lies above
// every other, so these maxima (vpmaxsd) keep a NaN where the float maximum (vmaxps) would drop
// it whenever it is the first operand: a block with a NaN has a NaN largest magnitude, whatever
// its position. (The backend refuses such a block; until then its d is NaN and its codes 0.)
WQ_AVX2_INLINE __m256i magnitude_bits_max(const Block32& b) {
  const __m256i magnitude = _mm256_set1_epi32(0x7fffffff);
  __m256i m = _mm256_and_si256(_mm256_castps_si256(b.v[0]), magnitude);
  for (int k = 1; k < 4; ++k) m = _mm256_max_epi32(m, _mm256_and_si256(_mm256_castps_si256(b.v[k]), magnitude));
  return m;
}

// The largest magnitude of a block.
WQ_AVX2_INLINE float block_absmax(const Block32& b) {
  const __m256i m = magnitude_bits_max(b);
  __m128i h = _mm_max_epi32(_mm256_castsi256_si128(m), _mm256_extracti128_si256(m, 1));
  h = _mm_max_epi32(h, _mm_unpackhi_epi64(h, h));
  h = _mm_max_epi32(h, _mm_shuffle_epi32(h, 1));
  return _mm_cvtss_f32(_mm_castsi128_ps(h));
}

// Eight blocks' magnitude_bits_max() reduced at once: lane j is block j's largest magnitude.
// The steps of an 8x8 transpose, each pair of rows merged by a maximum as it goes (21
// instructions for the eight, where one block's horizontal maximum takes 7 and a store).
WQ_AVX2_INLINE __m256 largest_magnitudes(const __m256i m[8]) {
  __m256i pairs[4];  // per 128-bit half: rows 2k and 2k+1, each folded to two values
  for (int k = 0; k < 4; ++k) {
    pairs[k] = _mm256_max_epi32(_mm256_unpacklo_epi32(m[2 * k], m[2 * k + 1]),
                                _mm256_unpackhi_epi32(m[2 * k], m[2 * k + 1]));
  }
  __m256i quads[2];  // per 128-bit half: rows 4k..4k+3, each folded to one value
  for (int k = 0; k < 2; ++k) {
    quads[k] = _mm256_max_epi32(_mm256_unpacklo_epi64(pairs[2 * k], pairs[2 * k + 1]),
                                _mm256_unpackhi_epi64(pairs[2 * k], pairs[2 * k + 1]));
  }
  const __m256i low_halves = _mm256_permute2x128_si256(quads[0], quads[1], 0x20);
  const __m256i high_halves = _mm256_permute2x128_si256(quads[0], quads[1], 0x31);
  return _mm256_castsi256_ps(_mm256_max_epi32(low_halves, high_halves));
}

WQ_AVX2_INLINE float horizontal_min(__m256 v) {
  __m128 m = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_min_ps(m, _mm_movehl_ps(m, m));
  m = _mm_min_ss(m, _mm_shuffle_ps(m, m, 1));
  return _mm_cvtss_f32(m);
}

// The index of the first element equal (as a value: -0 == +0) to `value`, without a branch:
// which quarter of the block holds it is random on real data, and a loop that stopped there
// mispredicted about once per block. With no match (only for a NaN `value`, from a block with a
// NaN, which the backend then refuses) it is 31: still an element of the block.
WQ_AVX2_INLINE int first_equal(const Block32& b, __m256 value) {
  unsigned mask = 0x80000000u;
  for (int k = 0; k < 4; ++k) {
    mask |= static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(b.v[k], value, _CMP_EQ_OQ))) << (8 * k);
  }
  return __builtin_ctz(mask);
}

// The low byte of each of eight int32 lanes (C's narrowing to a byte: modular, no saturation).
WQ_AVX2_INLINE void store_low_bytes(__m256i v, std::uint8_t* out) {
  const __m256i pick = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,  //
                                        0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
  const __m256i bytes = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(v, pick), _mm256_setr_epi32(0, 4, 0, 0, 0, 0, 0, 0));
  const std::uint64_t low = static_cast<std::uint64_t>(_mm_cvtsi128_si64(_mm256_castsi256_si128(bytes)));
  std::memcpy(out, &low, 8);
}

// truncate_like_x86() of each lane: cvttps2dq gives INT32_MIN for NaN and out-of-range values,
// as cvttss2si does.
WQ_AVX2_INLINE __m256i truncate(__m256 v) { return _mm256_cvttps_epi32(v); }

// round_half_away() then truncate_like_x86(), in three operations: truncate p + h, where h is
// the largest binary32 below one half (0.5 - 2^-25) with p's sign. Why it is roundf: a fraction
// of at least one half carries into the next integer (at exactly 1/2 the sum lands halfway
// between two binary32 values and rounds to the even one, the integer), any smaller fraction
// stays below it, and from 2^23 on, where p is an integer, p + h rounds back to p. NaN and
// values beyond int32 still give cvttps2dq's INT32_MIN. Checked against the previous
// spelling (trunc, then the sign where the exact fraction was at least one half) on all 2^32
// bit patterns: identical; tests/unit/ggml_vectors_test.cpp and the live ggml check hold it to
// roundf and to ggml.
WQ_AVX2_INLINE __m256i round_half_away_to_int(__m256 p) {
  const __m256 h = _mm256_or_ps(_mm256_and_ps(p, _mm256_set1_ps(-0.0f)), _mm256_set1_ps(0.49999997f));
  return truncate(_mm256_add_ps(p, h));
}

// ggml's `MIN(15, (int8_t)v)` as an unsigned byte value (0..255: a negative int8 stays as its
// two's complement byte, as the C code's uint8_t holds it).
WQ_AVX2_INLINE __m256i nibble_code(__m256i truncated) {
  const __m256i as_int8 = _mm256_srai_epi32(_mm256_slli_epi32(truncated, 24), 24);
  return _mm256_and_si256(_mm256_min_epi32(as_int8, _mm256_set1_epi32(15)), _mm256_set1_epi32(0xff));
}

// Byte j = code j | code j + 16 << 4, narrowed to a byte as the C expression is.
WQ_AVX2_INLINE void store_nibbles(__m256i low[2], __m256i high[2], std::uint8_t* qs) {
  for (int k = 0; k < 2; ++k) {
    const __m256i byte = _mm256_or_si256(low[k], _mm256_slli_epi32(high[k], 4));
    store_low_bytes(byte, qs + 8 * k);
  }
}

// Q5's codes split as ggml's store does: low nibbles paired as Q4's, and bit 4 of element j
// at bit j of the little-endian qh (from the byte values, as the C code's uint8_t holds them).
WQ_AVX2_INLINE void store_q5(const __m256i codes[4], std::uint8_t* qs, std::uint8_t* qh) {
  const __m256i nibble = _mm256_set1_epi32(0x0f);
  __m256i low[2], high[2];
  for (int k = 0; k < 2; ++k) {
    low[k] = _mm256_and_si256(codes[k], nibble);
    high[k] = _mm256_and_si256(codes[k + 2], nibble);
  }
  store_nibbles(low, high, qs);
  std::uint32_t bits = 0;
  for (int k = 0; k < 4; ++k) {
    const int fifth = _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_slli_epi32(codes[k], 27)));
    bits |= static_cast<std::uint32_t>(fifth) << (8 * k);
  }
  ggml::store_u32_le(qh, bits);
}

// ggml's `MIN(31, (int8_t)v)` as an unsigned byte value, as nibble_code() for 15.
WQ_AVX2_INLINE __m256i five_bit_code(__m256i truncated) {
  const __m256i as_int8 = _mm256_srai_epi32(_mm256_slli_epi32(truncated, 24), 24);
  return _mm256_and_si256(_mm256_min_epi32(as_int8, _mm256_set1_epi32(31)), _mm256_set1_epi32(0xff));
}

// The signed element of largest magnitude, first on ties; +0 for a block of zeros.
WQ_AVX2_INLINE float signed_absmax(const float* x, const Block32& b) {
  Block32 magnitudes;
  __m256 m = abs_of(b.v[0]);
  for (int k = 0; k < 4; ++k) {
    magnitudes.v[k] = abs_of(b.v[k]);
    m = _mm256_max_ps(m, magnitudes.v[k]);
  }
  const float amax = horizontal_max(m);
  return amax != 0.0f ? x[first_equal(magnitudes, _mm256_set1_ps(amax))] : 0.0f;
}

// block_min_max(): the first of equal extremes, which only matters for the sign of a zero.
WQ_AVX2_INLINE void block_min_max(const float* x, const Block32& b, float* min_out, float* max_out) {
  __m256 lo = b.v[0], hi = b.v[0];
  for (int k = 1; k < 4; ++k) {
    lo = _mm256_min_ps(lo, b.v[k]);
    hi = _mm256_max_ps(hi, b.v[k]);
  }
  float min = horizontal_min(lo), max = horizontal_max(hi);
  if (min == 0.0f) min = x[first_equal(b, _mm256_setzero_ps())];
  if (max == 0.0f) max = x[first_equal(b, _mm256_setzero_ps())];
  *min_out = min;
  *max_out = max;
}

// Each legacy type's codes from its block's 1/d (and min, for the types that store one), the
// arithmetic of ggml_legacy.h's loops on eight elements at once, stored into the block's bytes
// at y (unaligned); the header (d, m) is the caller's. One spelling, used one block at a time
// and eight blocks at a time below. The blocks are written where they go, not built aside and
// copied: the copy's loads spanned the header's and the codes' stores, which the CPU cannot
// forward (28 % of Q4_0's samples sat on them).
struct Q4_0Codes {
  using Block = ggml::BlockQ4_0;
  static constexpr float kDivisor = -8.0f;  // d = signed absmax / -8
  static constexpr bool kMin = false;
  static constexpr int kOffset = 8;    // decoded: (q - 8) * d
  static constexpr int kCodeMask = 0x0f;
  WQ_AVX2_INLINE static void codes(const Block32& b, __m256 idv, __m256, std::uint8_t* y, __m256i* out = nullptr) {
    const __m256 offset = _mm256_set1_ps(8.5f);
    __m256i low[2], high[2];
    for (int k = 0; k < 2; ++k) {
      low[k] = nibble_code(truncate(_mm256_add_ps(_mm256_mul_ps(b.v[k], idv), offset)));
      high[k] = nibble_code(truncate(_mm256_add_ps(_mm256_mul_ps(b.v[k + 2], idv), offset)));
    }
    store_nibbles(low, high, y + offsetof(Block, qs));
    if (out != nullptr) out[0] = low[0], out[1] = low[1], out[2] = high[0], out[3] = high[1];
  }
};

struct Q4_1Codes {
  using Block = ggml::BlockQ4_1;
  static constexpr float kDivisor = 15.0f;  // d = (max - min) / 15
  static constexpr bool kMin = true;
  static constexpr int kOffset = 0;  // decoded: q * d + m
  static constexpr int kCodeMask = 0x0f;
  WQ_AVX2_INLINE static void codes(const Block32& b, __m256 idv, __m256 minv, std::uint8_t* y, __m256i* out = nullptr) {
    const __m256 half = _mm256_set1_ps(0.5f);
    __m256i low[2], high[2];
    for (int k = 0; k < 2; ++k) {
      low[k] = nibble_code(truncate(_mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(b.v[k], minv), idv), half)));
      high[k] = nibble_code(truncate(_mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(b.v[k + 2], minv), idv), half)));
    }
    store_nibbles(low, high, y + offsetof(Block, qs));
    if (out != nullptr) out[0] = low[0], out[1] = low[1], out[2] = high[0], out[3] = high[1];
  }
};

struct Q5_0Codes {
  using Block = ggml::BlockQ5_0;
  static constexpr float kDivisor = -16.0f;
  static constexpr bool kMin = false;
  static constexpr int kOffset = 16;  // decoded: (q - 16) * d
  static constexpr int kCodeMask = 0x1f;
  WQ_AVX2_INLINE static void codes(const Block32& b, __m256 idv, __m256, std::uint8_t* y, __m256i* out = nullptr) {
    const __m256 offset = _mm256_set1_ps(16.5f);
    __m256i codes[4];
    for (int k = 0; k < 4; ++k) codes[k] = five_bit_code(truncate(_mm256_add_ps(_mm256_mul_ps(b.v[k], idv), offset)));
    store_q5(codes, y + offsetof(Block, qs), y + offsetof(Block, qh));
    if (out != nullptr) std::memcpy(out, codes, sizeof codes);
  }
};

struct Q5_1Codes {
  using Block = ggml::BlockQ5_1;
  static constexpr float kDivisor = 31.0f;
  static constexpr bool kMin = true;
  static constexpr int kOffset = 0;  // decoded: q * d + m
  static constexpr int kCodeMask = 0x1f;
  WQ_AVX2_INLINE static void codes(const Block32& b, __m256 idv, __m256 minv, std::uint8_t* y, __m256i* out = nullptr) {
    const __m256 half = _mm256_set1_ps(0.5f);
    __m256i codes[4];
    for (int k = 0; k < 4; ++k) {  // (uint8_t) of the truncation: the low byte, no clamp at all
      const __m256i t = truncate(_mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(b.v[k], minv), idv), half));
      codes[k] = _mm256_and_si256(t, _mm256_set1_epi32(0xff));
    }
    store_q5(codes, y + offsetof(Block, qs), y + offsetof(Block, qh));
    if (out != nullptr) std::memcpy(out, codes, sizeof codes);
  }
};

// A block's scalars as ggml computes them: the numerator of d (the signed absmax, or max - min)
// and, for the types with a min, the min.
template <typename T>
WQ_AVX2_INLINE float header_numerator(const float* x, const Block32& b, float* min_out) {
  if constexpr (T::kMin) {
    float min, max;
    block_min_max(x, b, &min, &max);
    *min_out = min;
    return max - min;
  } else {
    *min_out = 0.0f;
    return signed_absmax(x, b);
  }
}

template <typename T>
WQ_AVX2_INLINE void quantize_one_block(const float* x, typename T::Block* y) {
  const Block32 b = load_block(x);
  float min;
  const float d = header_numerator<T>(x, b, &min) / T::kDivisor;
  y->d = codec::f32_to_f16_bits(d);
  if constexpr (T::kMin) y->m = codec::f32_to_f16_bits(min);
  T::codes(b, _mm256_set1_ps(ggml::reciprocal_or_zero(d)), _mm256_set1_ps(min), reinterpret_cast<std::uint8_t*>(y));
}

// Adds a block to the statistics: each code decodes to (q - kOffset) * d, plus m where kMin,
// as decode_*_blocks_avx2 compute it from the stored bytes (d and m the binary16 ones widened),
// and its error and square are summed as LaneStats::add sums them. Q8_0 and the four below.
template <int kOffset, bool kMin>
WQ_AVX2_INLINE void add_decoded_block(const Block32& b, const __m256i codes[4], __m256 dv, __m256 mv,
                                      LaneStats<8>* lanes) {
  for (int k = 0; k < 4; ++k) {
    __m256 decoded = _mm256_cvtepi32_ps(kOffset != 0 ? _mm256_sub_epi32(codes[k], _mm256_set1_epi32(kOffset)) : codes[k]);
    decoded = _mm256_mul_ps(decoded, dv);
    if constexpr (kMin) decoded = _mm256_add_ps(decoded, mv);
    lanes->add_error(FloatLanes<8>(b.v[k]), FloatLanes<8>(_mm256_sub_ps(b.v[k], decoded)));
  }
}

// add_decoded_block() with a legacy type's codes, returning their OR for the caller's check
// that each lies within T::kCodeMask, where it is the stored one. ggml's narrowing and clamps
// keep every code there for any input (a NaN, an infinity and a subnormal d give code 0 or a
// clamped one); the check, one OR per register, keeps the statistics right should a code ever
// spill into its neighbour's bits.
template <typename T>
WQ_AVX2_INLINE __m256i add_block_stats(const Block32& b, const __m256i codes[4], __m256 dv, __m256 mv,
                                       LaneStats<8>* lanes) {
  add_decoded_block<T::kOffset, T::kMin>(b, codes, dv, mv, lanes);
  return _mm256_or_si256(_mm256_or_si256(codes[0], codes[1]), _mm256_or_si256(codes[2], codes[3]));
}

// How far ahead of its reads every legacy type's loop (Q8_0's too) fetches its input (8 KiB). A prefetch past
// the end of the input is harmless: it never faults.
constexpr int kLegacyPrefetchFloats = 2048;

// Eight blocks at a time, as quantize_q8_0_blocks_avx2: d and 1/d by one vector division each
// (1/0 masked to 0, as reciprocal_or_zero), d and min to binary16 by vcvtps2ph. With `lanes`, the
// blocks' statistics are summed into it (add_block_stats()), and the result says whether every
// code was the stored one; a batch of fewer than eight blocks is never summed (false).
template <typename T>
__attribute__((target("avx2,f16c"), always_inline)) inline bool quantize_blocks8(const float* x, std::uint64_t blocks,
                                                                               std::uint8_t* out,
                                                                               LaneStats<8>* lanes = nullptr) {
  using Block = typename T::Block;
  std::uint64_t b = 0;
  __m256i any_code = _mm256_setzero_si256();
  for (; b + 8 <= blocks; b += 8) {
    alignas(32) float numerator[8], min[8];
    for (int j = 0; j < 8; ++j) {
      const float* p = x + (b + j) * 32;
      // 8 KiB ahead, both cache lines of a block, as Q8_0 below: on a 64 MiB input 1.3-1.75x
      // (Xeon, Emerald Rapids), whose reads the hardware prefetcher alone left waiting.
      _mm_prefetch(reinterpret_cast<const char*>(p + kLegacyPrefetchFloats), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(p + kLegacyPrefetchFloats + 16), _MM_HINT_T0);
      numerator[j] = header_numerator<T>(p, load_block(p), &min[j]);
    }
    const __m256 d = _mm256_div_ps(_mm256_load_ps(numerator), _mm256_set1_ps(T::kDivisor));
    const __m256 nonzero = _mm256_cmp_ps(d, _mm256_setzero_ps(), _CMP_NEQ_UQ);
    alignas(32) float id[8];
    _mm256_store_ps(id, _mm256_and_ps(_mm256_div_ps(_mm256_set1_ps(1.0f), d), nonzero));
    alignas(16) std::uint16_t d_bits[8], m_bits[8];
    const __m128i d_half = _mm256_cvtps_ph(d, _MM_FROUND_TO_NEAREST_INT);
    _mm_store_si128(reinterpret_cast<__m128i*>(d_bits), d_half);
    alignas(32) float d_widened[8], m_widened[8];
    if constexpr (T::kMin) {
      const __m128i m_half = _mm256_cvtps_ph(_mm256_load_ps(min), _MM_FROUND_TO_NEAREST_INT);
      _mm_store_si128(reinterpret_cast<__m128i*>(m_bits), m_half);
      if (lanes != nullptr) _mm256_store_ps(m_widened, _mm256_cvtph_ps(m_half));
    }
    if (lanes != nullptr) _mm256_store_ps(d_widened, _mm256_cvtph_ps(d_half));
    for (int j = 0; j < 8; ++j) {
      std::uint8_t* const y = out + (b + j) * sizeof(Block);  // not aligned for Block
      std::memcpy(y + offsetof(Block, d), &d_bits[j], 2);
      if constexpr (T::kMin) std::memcpy(y + offsetof(Block, m), &m_bits[j], 2);
      const Block32 v = load_block(x + (b + j) * 32);
      if (lanes == nullptr) {
        T::codes(v, _mm256_set1_ps(id[j]), _mm256_set1_ps(min[j]), y);
      } else {
        __m256i codes[4];
        T::codes(v, _mm256_set1_ps(id[j]), _mm256_set1_ps(min[j]), y, codes);
        any_code = _mm256_or_si256(any_code, add_block_stats<T>(v, codes, _mm256_set1_ps(d_widened[j]),
                                                                T::kMin ? _mm256_set1_ps(m_widened[j]) : __m256{}, lanes));
      }
    }
  }
  const bool summed = b == blocks && b > 0;
  for (; b < blocks; ++b) {
    Block block;
    quantize_one_block<T>(x + b * 32, &block);
    std::memcpy(out + b * sizeof(Block), &block, sizeof(Block));
  }
  return summed && _mm256_testz_si256(any_code, _mm256_set1_epi32(~T::kCodeMask));
}

// One Q8_0 block's 32 codes, ggml's roundf(x * id) narrowed to a byte, in one write after its two
// bytes of d. kInByte: every |x * id| is below 127.5, so each code is -127..127 and the signed
// saturating packs keep it as it is. Otherwise (a NaN, an infinity, or a subnormal d whose
// reciprocal is infinite) a lane may hold cvttps2dq's INT32_MIN or wrap: the low byte of each
// lane is taken first (and 0xff), as C's narrowing does, and unsigned packs that cannot saturate
// keep it.
// With `lanes`, kInByte's codes also go to the statistics (add_decoded_block(): the code is the
// byte, `dv` the binary16 d widened).
template <bool kInByte>
WQ_AVX2_INLINE void store_q8_0_block(const float* x, __m256 idv, std::uint16_t d_bits, std::uint8_t* y,
                                     LaneStats<8>* lanes = nullptr, __m256 dv = __m256{}) {
  const Block32 v = load_block(x);
  __m256i q[4];
  for (int k = 0; k < 4; ++k) q[k] = round_half_away_to_int(_mm256_mul_ps(v.v[k], idv));
  if constexpr (kInByte) {
    if (lanes != nullptr) add_decoded_block<0, false>(v, q, dv, __m256{}, lanes);
  }
  __m256i bytes;
  if constexpr (kInByte) {
    bytes = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
  } else {
    const __m256i low_byte = _mm256_set1_epi32(0xff);
    for (int k = 0; k < 4; ++k) q[k] = _mm256_and_si256(q[k], low_byte);
    bytes = _mm256_packus_epi16(_mm256_packus_epi32(q[0], q[1]), _mm256_packus_epi32(q[2], q[3]));
  }
  // The packs work within 128-bit halves: dword k of `bytes` holds codes 0-3 of register k, and
  // dword k + 4 its codes 4-7.
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  std::memcpy(y, &d_bits, 2);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + 2), _mm256_permutevar8x32_epi32(bytes, order));
}

// Eight consecutive blocks' codes from their 1/d and binary16 d (with `lanes`, their widened d
// in `ds` too, for the statistics).
template <bool kInByte>
WQ_AVX2_INLINE void store_q8_0_blocks8(const float* x, const float* ids, const std::uint16_t* d_bits,
                                       std::uint8_t* out, LaneStats<8>* lanes = nullptr, const float* ds = nullptr) {
  for (int j = 0; j < 8; ++j) {
    store_q8_0_block<kInByte>(x + 32 * j, _mm256_set1_ps(ids[j]), d_bits[j], out + sizeof(ggml::BlockQ8_0) * j, lanes,
                              lanes != nullptr ? _mm256_set1_ps(ds[j]) : __m256{});
  }
}

// Eight blocks from x into out, as quantize_q8_0_blocks_avx2 below says; with `lanes`, their
// statistics summed into it where every code lies within a byte (the returned value). Where one
// does not, the codes take the masked spelling and nothing is summed.
WQ_AVX2_F16C_INLINE bool quantize_q8_0_blocks8(const float* x, std::uint8_t* out, LaneStats<8>* lanes) {
  const __m256 largest_finite = _mm256_set1_ps(std::numeric_limits<float>::max());
  __m256i magnitudes[8];
  for (int j = 0; j < 8; ++j) {
    // 8 KiB ahead, both cache lines of a block, as the affine kernels fetch: 1.15x on a
    // 64 MiB input here, whose reads the hardware prefetcher alone left waiting.
    _mm_prefetch(reinterpret_cast<const char*>(x + j * 32 + kLegacyPrefetchFloats), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(x + j * 32 + kLegacyPrefetchFloats + 16), _MM_HINT_T0);
    magnitudes[j] = magnitude_bits_max(load_block(x + j * 32));
  }
  const __m256 amax = largest_magnitudes(magnitudes);
  const __m256 d = _mm256_div_ps(amax, _mm256_set1_ps(127.0f));
  const __m256 nonzero = _mm256_cmp_ps(d, _mm256_setzero_ps(), _CMP_NEQ_UQ);
  const __m256 id = _mm256_and_ps(_mm256_div_ps(_mm256_set1_ps(1.0f), d), nonzero);
  const bool in_byte = _mm256_movemask_ps(_mm256_and_ps(_mm256_cmp_ps(amax, largest_finite, _CMP_LE_OQ),
                                                        _mm256_cmp_ps(id, largest_finite, _CMP_LE_OQ))) == 0xff;
  alignas(32) float ids[8];
  _mm256_store_ps(ids, id);
  const __m128i d_half = _mm256_cvtps_ph(d, _MM_FROUND_TO_NEAREST_INT);
  alignas(16) std::uint16_t d_bits[8];
  _mm_store_si128(reinterpret_cast<__m128i*>(d_bits), d_half);
  if (!in_byte) {
    store_q8_0_blocks8<false>(x, ids, d_bits, out);
    return false;
  }
  if (lanes == nullptr) {
    store_q8_0_blocks8<true>(x, ids, d_bits, out);
  } else {
    alignas(32) float ds[8];
    _mm256_store_ps(ds, _mm256_cvtph_ps(d_half));
    store_q8_0_blocks8<true>(x, ids, d_bits, out, lanes, ds);
  }
  return true;
}

}  // namespace

__attribute__((target("avx2"))) void quantize_q8_0_avx2(const float* x, ggml::BlockQ8_0* y) {
  const float d = block_absmax(load_block(x)) / 127.0f;
  store_q8_0_block<false>(x, _mm256_set1_ps(ggml::reciprocal_or_zero(d)), codec::f32_to_f16_bits(d),
                          reinterpret_cast<std::uint8_t*>(y));
}

// Eight blocks at a time: their largest magnitudes reduced together (largest_magnitudes()), their
// d = amax / 127 and 1/d by one vector division each instead of two scalar divisions per block
// (the same single roundings, lane by lane; 1/0 masked to 0 as reciprocal_or_zero), d to
// binary16 by vcvtps2ph (round to nearest even, as f32_to_f16_bits and as ggml's F16C path).
//
// Where every amax and 1/d of the eight is finite, |x * id| <= amax * id < 127.5 for each x: d is
// amax / 127 within a relative 2^-24 when normal, and within 2^-22 when subnormal with a finite
// reciprocal (d >= 2^-128), and 1/d within 2^-24 again, so roundf gives -127..127 and the codes
// take store_q8_0_block<true>'s saturating packs; real weights always do. The other batches
// take the masked spelling.
__attribute__((target("avx2,f16c"))) void quantize_q8_0_blocks_avx2(const float* x, std::uint64_t blocks,
                                                                    std::uint8_t* out) {
  constexpr std::uint64_t kBytes = sizeof(ggml::BlockQ8_0);
  static_assert(kBytes == 34, "Q8_0: 2 bytes of d, 32 codes");
  std::uint64_t b = 0;
  for (; b + 8 <= blocks; b += 8) quantize_q8_0_blocks8(x + b * 32, out + b * kBytes, nullptr);
  for (; b < blocks; ++b) {
    ggml::BlockQ8_0 block;
    quantize_q8_0_avx2(x + b * 32, &block);
    std::memcpy(out + b * kBytes, &block, kBytes);
  }
}

__attribute__((target("avx2"))) void quantize_q4_0_avx2(const float* x, ggml::BlockQ4_0* y) {
  quantize_one_block<Q4_0Codes>(x, y);
}

__attribute__((target("avx2"))) void quantize_q4_1_avx2(const float* x, ggml::BlockQ4_1* y) {
  quantize_one_block<Q4_1Codes>(x, y);
}

__attribute__((target("avx2"))) void quantize_q5_0_avx2(const float* x, ggml::BlockQ5_0* y) {
  quantize_one_block<Q5_0Codes>(x, y);
}

__attribute__((target("avx2"))) void quantize_q5_1_avx2(const float* x, ggml::BlockQ5_1* y) {
  quantize_one_block<Q5_1Codes>(x, y);
}

__attribute__((target("avx2,f16c"))) void quantize_q4_0_blocks_avx2(const float* x, std::uint64_t blocks, std::uint8_t* out) {
  quantize_blocks8<Q4_0Codes>(x, blocks, out);
}

__attribute__((target("avx2,f16c"))) void quantize_q4_1_blocks_avx2(const float* x, std::uint64_t blocks, std::uint8_t* out) {
  quantize_blocks8<Q4_1Codes>(x, blocks, out);
}

__attribute__((target("avx2,f16c"))) void quantize_q5_0_blocks_avx2(const float* x, std::uint64_t blocks, std::uint8_t* out) {
  quantize_blocks8<Q5_0Codes>(x, blocks, out);
}

__attribute__((target("avx2,f16c"))) void quantize_q5_1_blocks_avx2(const float* x, std::uint64_t blocks, std::uint8_t* out) {
  quantize_blocks8<Q5_1Codes>(x, blocks, out);
}

namespace {
// One statistics chunk of eight blocks: Q8_0's (T = its block) or another legacy type's codes.
template <typename T>
WQ_AVX2_F16C_INLINE bool quantize_chunk(const float* x, std::uint8_t* out, WideLaneStats* stats) {
  LaneStats<8> lanes;
  bool summed;
  if constexpr (std::is_same_v<T, ggml::BlockQ8_0>) {
    summed = quantize_q8_0_blocks8(x, out, &lanes);
  } else {
    summed = quantize_blocks8<T>(x, 8, out, &lanes);
  }
  return summed && stats->add(lanes, 256);
}
}  // namespace

__attribute__((target("avx2,f16c"))) bool quantize_q8_0_chunk_avx2(const float* x, std::uint8_t* out, WideLaneStats* stats) {
  return quantize_chunk<ggml::BlockQ8_0>(x, out, stats);
}

__attribute__((target("avx2,f16c"))) bool quantize_q4_0_chunk_avx2(const float* x, std::uint8_t* out, WideLaneStats* stats) {
  return quantize_chunk<Q4_0Codes>(x, out, stats);
}

__attribute__((target("avx2,f16c"))) bool quantize_q4_1_chunk_avx2(const float* x, std::uint8_t* out, WideLaneStats* stats) {
  return quantize_chunk<Q4_1Codes>(x, out, stats);
}

__attribute__((target("avx2,f16c"))) bool quantize_q5_0_chunk_avx2(const float* x, std::uint8_t* out, WideLaneStats* stats) {
  return quantize_chunk<Q5_0Codes>(x, out, stats);
}

__attribute__((target("avx2,f16c"))) bool quantize_q5_1_chunk_avx2(const float* x, std::uint8_t* out, WideLaneStats* stats) {
  return quantize_chunk<Q5_1Codes>(x, out, stats);
}

}  // namespace wq::detail
