#include "cpu/dequantize_f32_avx2.h"

#include <immintrin.h>

#include <cstring>

namespace wq::detail {
namespace {

// Every function here is compiled for AVX2 + FMA and called only after use_avx2(); nothing
// from a header is instantiated in here (an inline function emitted with AVX2 code could be
// picked by the linker for a baseline caller).
#define WQ_AVX2 __attribute__((target("avx2,fma")))
#define WQ_AVX2_INLINE __attribute__((target("avx2,fma"), always_inline)) inline

// Code i of the stream, for the few elements outside whole aligned octets (b <= 8, so two
// bytes always hold it).
WQ_AVX2_INLINE std::uint32_t code_at(const std::uint8_t* codes, std::uint64_t code_bytes, std::uint64_t i, int bits) {
  const std::uint64_t bit = i * static_cast<std::uint64_t>(bits);
  std::uint32_t v = codes[bit / 8];
  if (bit / 8 + 1 < code_bytes) v |= static_cast<std::uint32_t>(codes[bit / 8 + 1]) << 8;
  return (v >> (bit % 8)) & ((1u << bits) - 1u);
}

// The eight codes of octet k (stream bytes [k*b, k*b + b)) as eight int32 lanes: codes 0..3
// sit in the low 4b bits and codes 4..7 in the next 4b bits (4b <= 32), so each half is one
// 32-bit word broadcast over four lanes and shifted by 0, b, 2b, 3b.
WQ_AVX2_INLINE __m256i octet_codes(const std::uint8_t* codes, std::uint64_t code_bytes, std::uint64_t k, int bits,
                                   __m256i shifts, __m256i mask) {
  const std::uint64_t at = k * static_cast<std::uint64_t>(bits);
  std::uint64_t w = 0;
  if (at + 8 <= code_bytes) {
    std::memcpy(&w, codes + at, 8);
  } else {
    std::memcpy(&w, codes + at, static_cast<std::size_t>(bits));  // last octet: never read past the end
  }
  if (bits == 8) return _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<long long>(w)));
  const __m128i lo = _mm_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(w)));
  const __m128i hi = _mm_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(w >> (4 * bits))));
  const __m256i both = _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
  return _mm256_and_si256(_mm256_srlv_epi32(both, shifts), mask);
}

// Stores 8 floats at p; non-temporal when asked and p allows it (32- or 16-byte aligned).
WQ_AVX2_INLINE void store8(float* p, __m256 v, bool stream) {
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  if (stream && a % 32 == 0) {
    _mm256_stream_ps(p, v);
  } else if (stream && a % 16 == 0) {
    _mm_stream_ps(p, _mm256_castps256_ps128(v));
    _mm_stream_ps(p + 4, _mm256_extractf128_ps(v, 1));
  } else {
    _mm256_storeu_ps(p, v);
  }
}

// One run [s, t) of group parameters p: whole octets with vectors when s is octet-aligned,
// the rest element by element. fma(scale, q, min) is _mm256_fmadd_ps lane-wise and fmaf
// (one rounding) in the scalar rest: the same correctly rounded result as the codec.
WQ_AVX2_INLINE void run_f32(float* dst, std::uint64_t s, std::uint64_t t, codec::AffineParams p,
                            const std::uint8_t* codes, std::uint64_t code_bytes, int bits, __m256i shifts,
                            __m256i mask, bool stream) {
  std::uint64_t i = s;
  if (s % 8 == 0) {
    const __m256 scale = _mm256_set1_ps(p.scale), min = _mm256_set1_ps(p.min);
    if (bits == 4) {  // 32 codes from 16 bytes with byte-wide nibble splits (half the work of octets)
      const __m128i nibble = _mm_set1_epi8(0x0f);
      for (; i + 32 <= t; i += 32) {
        const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + i / 2));
        const __m128i lo = _mm_and_si128(b, nibble), hi = _mm_and_si128(_mm_srli_epi16(b, 4), nibble);
        const __m128i c0 = _mm_unpacklo_epi8(lo, hi), c1 = _mm_unpackhi_epi8(lo, hi);  // codes i..i+15, i+16..
        const __m128i parts[4] = {c0, _mm_srli_si128(c0, 8), c1, _mm_srli_si128(c1, 8)};
        for (int h = 0; h < 4; ++h) {
          const __m256 q = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(parts[h]));
          store8(dst + i + 8 * h, _mm256_fmadd_ps(scale, q, min), stream);
        }
      }
    }
    for (; i + 8 <= t; i += 8) {
      const __m256 q = _mm256_cvtepi32_ps(octet_codes(codes, code_bytes, i / 8, bits, shifts, mask));
      store8(dst + i, _mm256_fmadd_ps(scale, q, min), stream);
    }
  }
  for (; i < t; ++i) {
    dst[i] = __builtin_fmaf(p.scale, static_cast<float>(code_at(codes, code_bytes, i, bits)), p.min);
  }
}

}  // namespace

WQ_AVX2 void dequantize_f32_avx2(float* dst, const GroupGeometry& g, const codec::AffineParams* params, int bits,
                                 std::uint64_t begin, std::uint64_t end, const std::uint8_t* codes, bool stream) {
  const __m256i shifts = _mm256_setr_epi32(0, bits, 2 * bits, 3 * bits, 0, bits, 2 * bits, 3 * bits);
  const __m256i mask = _mm256_set1_epi32(static_cast<int>((1u << bits) - 1u));
  // Runs of one group, as for_each_group_run() cuts them (written out: no lambda in AVX2 code),
  // with the row and group advanced by counting: two 64-bit divisions per group cost as much
  // as decoding a group of 32.
  std::uint64_t row = begin / g.cols;
  std::uint64_t j = (begin - row * g.cols) / g.group_size;
  for (std::uint64_t e = begin; e < end;) {
    std::uint64_t run_end = row * g.cols + ((j + 1) * g.group_size < g.cols ? (j + 1) * g.group_size : g.cols);
    if (run_end > end) run_end = end;
    run_f32(dst, e, run_end, params[row * g.groups_per_row + j], codes, g.code_bytes, bits, shifts, mask, stream);
    e = run_end;
    if (++j == g.groups_per_row) {
      j = 0;
      ++row;
    }
  }
  if (stream) _mm_sfence();  // non-temporal stores are weakly ordered: publish them before returning
}

}  // namespace wq::detail
