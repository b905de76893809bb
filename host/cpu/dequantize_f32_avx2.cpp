#include "cpu/dequantize_f32_avx2.h"

#include <immintrin.h>

#include <algorithm>
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
// `out` is where element s goes.
WQ_AVX2_INLINE void run_f32(float* out, std::uint64_t s, std::uint64_t t, codec::AffineParams p,
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
          store8(out + (i - s) + 8 * h, _mm256_fmadd_ps(scale, q, min), stream);
        }
      }
    }
    for (; i + 8 <= t; i += 8) {
      const __m256 q = _mm256_cvtepi32_ps(octet_codes(codes, code_bytes, i / 8, bits, shifts, mask));
      store8(out + (i - s), _mm256_fmadd_ps(scale, q, min), stream);
    }
  }
  for (; i < t; ++i) {
    out[i - s] = __builtin_fmaf(p.scale, static_cast<float>(code_at(codes, code_bytes, i, bits)), p.min);
  }
}

// Whole groups [k0, k1) of size G, rows made of whole groups (so group k is elements
// [k G, k G + G) and params[k]): no per-run bookkeeping, the parameters broadcast from memory.
// 4- and 8-bit codes 32 per step (G a multiple of 32), other widths an octet per step (G a
// multiple of 8). `out` is where group k0 goes.
template <int Bits>
WQ_AVX2_INLINE void whole_groups(float* out, const codec::AffineParams* params, std::uint64_t k0, std::uint64_t k1,
                                 std::uint64_t size, const std::uint8_t* codes, std::uint64_t code_bytes,
                                 bool stream) {
  const __m128i nibble = _mm_set1_epi8(0x0f);
  const __m256i shifts = _mm256_setr_epi32(0, Bits, 2 * Bits, 3 * Bits, 0, Bits, 2 * Bits, 3 * Bits);
  const __m256i mask = _mm256_set1_epi32((1 << Bits) - 1);
  for (std::uint64_t k = k0; k < k1; ++k, out += size) {
    const __m256 scale = _mm256_broadcast_ss(&params[k].scale), min = _mm256_broadcast_ss(&params[k].min);
    if constexpr (Bits != 4 && Bits != 8) {
      for (std::uint64_t i = 0; i < size; i += 8) {
        const __m256 q = _mm256_cvtepi32_ps(octet_codes(codes, code_bytes, (k * size + i) / 8, Bits, shifts, mask));
        store8(out + i, _mm256_fmadd_ps(scale, q, min), stream);
      }
    } else {
      const std::uint8_t* c = codes + k * size / 8 * Bits;
      for (std::uint64_t i = 0; i < size; i += 32) {
        __m128i parts[4];
        if constexpr (Bits == 4) {  // 32 codes from 16 bytes: nibbles split and interleaved back in order
          const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(c + i / 2));
          const __m128i lo = _mm_and_si128(b, nibble), hi = _mm_and_si128(_mm_srli_epi16(b, 4), nibble);
          const __m128i c0 = _mm_unpacklo_epi8(lo, hi), c1 = _mm_unpackhi_epi8(lo, hi);
          parts[0] = c0, parts[1] = _mm_srli_si128(c0, 8), parts[2] = c1, parts[3] = _mm_srli_si128(c1, 8);
        } else {
          static_assert(Bits == 8);
          const __m128i b0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(c + i));
          const __m128i b1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(c + i + 16));
          parts[0] = b0, parts[1] = _mm_srli_si128(b0, 8), parts[2] = b1, parts[3] = _mm_srli_si128(b1, 8);
        }
        for (int h = 0; h < 4; ++h) {
          const __m256 q = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(parts[h]));
          store8(out + i + 8 * h, _mm256_fmadd_ps(scale, q, min), stream);
        }
      }
    }
  }
}

// Elements [begin, end) into out[i - base].
WQ_AVX2_INLINE void decode_f32(float* out, std::uint64_t base, const GroupGeometry& g,
                               const codec::AffineParams* params, int bits, std::uint64_t begin, std::uint64_t end,
                               const std::uint8_t* codes, bool stream) {
  const __m256i shifts = _mm256_setr_epi32(0, bits, 2 * bits, 3 * bits, 0, bits, 2 * bits, 3 * bits);
  const __m256i mask = _mm256_set1_epi32(static_cast<int>((1u << bits) - 1u));
  if (g.group_size % (bits == 4 || bits == 8 ? 32 : 8) == 0 && g.cols % g.group_size == 0) {
    // Rows of whole groups: a partial group at either end by runs, the rest group by group.
    const std::uint64_t size = g.group_size;
    const std::uint64_t k0 = (begin + size - 1) / size, k1 = end / size;
    if (k0 < k1) {
      if (begin < k0 * size) {
        run_f32(out + (begin - base), begin, k0 * size, params[k0 - 1], codes, g.code_bytes, bits, shifts, mask,
                stream);
      }
      float* first = out + (k0 * size - base);
      switch (bits) {
        case 1: whole_groups<1>(first, params, k0, k1, size, codes, g.code_bytes, stream); break;
        case 2: whole_groups<2>(first, params, k0, k1, size, codes, g.code_bytes, stream); break;
        case 3: whole_groups<3>(first, params, k0, k1, size, codes, g.code_bytes, stream); break;
        case 4: whole_groups<4>(first, params, k0, k1, size, codes, g.code_bytes, stream); break;
        case 5: whole_groups<5>(first, params, k0, k1, size, codes, g.code_bytes, stream); break;
        case 6: whole_groups<6>(first, params, k0, k1, size, codes, g.code_bytes, stream); break;
        case 7: whole_groups<7>(first, params, k0, k1, size, codes, g.code_bytes, stream); break;
        default: whole_groups<8>(first, params, k0, k1, size, codes, g.code_bytes, stream); break;
      }
      if (k1 * size < end) {
        run_f32(out + (k1 * size - base), k1 * size, end, params[k1], codes, g.code_bytes, bits, shifts, mask, stream);
      }
      return;
    }
  }
  // Runs of one group, as for_each_group_run() cuts them (written out: no lambda in AVX2 code),
  // with the row and group advanced by counting: two 64-bit divisions per group cost as much
  // as decoding a group of 32.
  std::uint64_t row = begin / g.cols;
  std::uint64_t j = (begin - row * g.cols) / g.group_size;
  for (std::uint64_t e = begin; e < end;) {
    std::uint64_t run_end = row * g.cols + ((j + 1) * g.group_size < g.cols ? (j + 1) * g.group_size : g.cols);
    if (run_end > end) run_end = end;
    run_f32(out + (e - base), e, run_end, params[row * g.groups_per_row + j], codes, g.code_bytes, bits, shifts,
            mask, stream);
    e = run_end;
    if (++j == g.groups_per_row) {
      j = 0;
      ++row;
    }
  }
}

// Eight binary32 values rounded to nearest even as bfloat16 (D = kBF16) or float16 (kF16), with
// the codec's NaN (codec::f32_to_bf16_bits: the top half with the quiet bit; f32_to_f16_bits:
// sign | 0x7e00). Finite values and infinities round by the same rule as the codec; decoded
// values are NaN only when a container's parameters are.
template <DType D>
__attribute__((target("avx2,fma,f16c"), always_inline)) inline __m128i to_half8(__m256 v) {
  const __m256i x = _mm256_castps_si256(v);
  const __m256 nan = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
  __m256i h;
  if constexpr (D == DType::kBF16) {
    const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(1));
    const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(x, _mm256_add_epi32(odd, _mm256_set1_epi32(0x7fff))), 16);
    const __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(0x40));
    h = _mm256_blendv_epi8(rounded, quiet, _mm256_castps_si256(nan));
  } else {
    static_assert(D == DType::kF16);
    const __m256i converted = _mm256_cvtepu16_epi32(_mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
    const __m256i quiet = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(0x8000)),
                                          _mm256_set1_epi32(0x7e00));
    h = _mm256_blendv_epi8(converted, quiet, _mm256_castps_si256(nan));
  }
  // 32-bit lanes holding 16-bit values: pack (per 128-bit half), then the halves together.
  return _mm256_castsi256_si128(_mm256_permute4x64_epi64(_mm256_packus_epi32(h, h), 0x08));
}

// Decodes into float32 blocks in L1, then rounds each block to the half dtype.
template <DType D>
__attribute__((target("avx2,fma,f16c"))) void decode_half(std::byte* dst, const GroupGeometry& g,
                                                          const codec::AffineParams* params, int bits,
                                                          std::uint64_t begin, std::uint64_t end,
                                                          const std::uint8_t* codes, bool stream) {
  constexpr std::uint64_t kBlock = 2048;  // a multiple of 8: blocks start on whole octets
  alignas(32) float block[kBlock + 8];
  for (std::uint64_t b0 = begin; b0 < end; b0 += kBlock) {
    const std::uint64_t n = std::min(kBlock, end - b0);
    decode_f32(block, b0, g, params, bits, b0, b0 + n, codes, false);
    std::byte* out = dst + 2 * b0;
    std::uint64_t i = 0;
    for (; i + 8 <= n; i += 8) {
      const __m128i h = to_half8<D>(_mm256_load_ps(block + i));
      if (stream && reinterpret_cast<std::uintptr_t>(out + 2 * i) % 16 == 0) {
        _mm_stream_si128(reinterpret_cast<__m128i*>(out + 2 * i), h);
      } else {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 2 * i), h);
      }
    }
    if (i < n) {  // the last few elements of the range: convert a padded vector, keep n - i
      for (std::uint64_t k = n; k < i + 8; ++k) block[k] = 0.0f;
      const __m128i h = to_half8<D>(_mm256_load_ps(block + i));
      std::uint16_t halves[8];
      std::memcpy(halves, &h, sizeof halves);
      std::memcpy(out + 2 * i, halves, 2 * (n - i));
    }
  }
  if (stream) _mm_sfence();
}

}  // namespace

WQ_AVX2 void dequantize_f32_avx2(float* dst, const GroupGeometry& g, const codec::AffineParams* params, int bits,
                                 std::uint64_t begin, std::uint64_t end, const std::uint8_t* codes, bool stream) {
  decode_f32(dst, 0, g, params, bits, begin, end, codes, stream);
  if (stream) _mm_sfence();  // non-temporal stores are weakly ordered: publish them before returning
}

void dequantize_half_avx2(DType dtype, std::byte* dst, const GroupGeometry& g, const codec::AffineParams* params,
                          int bits, std::uint64_t begin, std::uint64_t end, const std::uint8_t* codes, bool stream) {
  if (dtype == DType::kBF16) {
    decode_half<DType::kBF16>(dst, g, params, bits, begin, end, codes, stream);
  } else {
    decode_half<DType::kF16>(dst, g, params, bits, begin, end, codes, stream);
  }
}

}  // namespace wq::detail
