#include "cpu/packed_avx2.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "cpu/avx2_elements.h"
#include "cpu/element_io.h"

namespace wq::detail {
namespace {

namespace ct = codec::ct;

#define WQ_PACKED_INLINE WQ_AVX2_F16C_INLINE

using avx2::load8;

// round_to() of the codec in eight lanes: bf16 by f32_to_bf16_bits' own bit arithmetic (the
// values here are finite), fp16 by the hardware's round-to-nearest-even conversion, which is
// what f32_to_f16_bits computes (subnormals and overflow to infinity included).
template <DType D>
WQ_PACKED_INLINE __m256 round_to(__m256 v) {
  if constexpr (D == DType::kF32) {
    return v;
  } else if constexpr (D == DType::kBF16) {
    const __m256i x = _mm256_castps_si256(v);
    const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(1));
    const __m256i r = _mm256_add_epi32(_mm256_add_epi32(x, _mm256_set1_epi32(0x7fff)), odd);
    return _mm256_castsi256_ps(_mm256_and_si256(r, _mm256_set1_epi32(static_cast<int>(0xffff0000u))));
  } else {
    return _mm256_cvtph_ps(_mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
}

// All lanes finite: exponent not all ones.
WQ_PACKED_INLINE __m256 finite_mask(__m256 v) {
  const __m256 exp = _mm256_and_ps(v, _mm256_castsi256_ps(_mm256_set1_epi32(0x7f800000)));
  return _mm256_cmp_ps(exp, _mm256_castsi256_ps(_mm256_set1_epi32(0x7f800000)), _CMP_NEQ_OQ);
}

template <DType D>
__attribute__((target("avx2,fma,f16c"))) bool range(const std::byte* in, std::uint64_t count, float* lo, float* hi) {
  constexpr std::uint64_t kSize = kElementBytes<D>;
  __m256 mn = _mm256_set1_ps(__builtin_inff()), mx = _mm256_set1_ps(-__builtin_inff());
  __m256 ok = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
  std::uint64_t i = 0;
  for (; i + 8 <= count; i += 8) {
    const __m256 x = load8<D>(in + kSize * i);
    ok = _mm256_and_ps(ok, finite_mask(x));
    mn = _mm256_min_ps(mn, x);
    mx = _mm256_max_ps(mx, x);
  }
  float l = avx2::min_of(mn), h = avx2::max_of(mx);
  bool finite = _mm256_movemask_ps(ok) == 0xff;
  for (; i < count; ++i) {
    const float x = load_f32<D>(in, i);
    finite = finite && codec::is_finite(x);
    l = std::min(l, x);
    h = std::max(h, x);
  }
  *lo = l;
  *hi = h;
  return finite;
}

// The error statistics are summed in binary32 lanes over chunks of kStatsChunk elements and
// folded into binary64 at the end of each (as the ggml kernels do): a fifth of the work of
// binary64 lanes, for sums that differ from the scalar path's in the seventh digit. The
// difference x - decoded itself is exact in binary32 (both are values of the dtype, close
// to each other).
constexpr std::uint64_t kStatsChunk = 256;

WQ_PACKED_INLINE void fold(__m256 signal, __m256 error, __m256 max_error, std::uint64_t count, ErrorStats* s) {
  alignas(32) float sig[8], err[8], mxe[8];
  _mm256_store_ps(sig, signal);
  _mm256_store_ps(err, error);
  _mm256_store_ps(mxe, max_error);
  double a = 0.0, b = 0.0, m = 0.0;
  for (int k = 0; k < 8; ++k) {
    a += sig[k];
    b += err[k];
    m = std::max(m, static_cast<double>(mxe[k]));
  }
  s->count += count;
  s->signal_energy += a;
  s->error_energy += b;
  s->max_abs_error = std::max(s->max_abs_error, m);
}

// Eight 4-bit codes, one per byte of `v` (little-endian), as the four bytes of the LSB-first
// stream: byte k = code 2k | code 2k+1 << 4.
inline std::uint32_t nibbles(std::uint64_t v) {
  v = (v | (v >> 4)) & 0x00ff00ff00ff00ffull;  // even bytes: code 2k | code 2k+1 << 4
  v = (v | (v >> 8)) & 0x0000ffff0000ffffull;
  return static_cast<std::uint32_t>(v | (v >> 16));
}

// The codec's first step, R(x / scale), for bf16 weights as R(x * (1 / scale)): vdivps was a
// fifth of this loop. Exact, because both operands are bf16 values (the scale is rounded to
// bf16 by group_params()) with the scale and its reciprocal normal:
// - write x / scale = (a / b) * 2^k with integer significands a, b <= 255, and a bf16
//   rounding boundary (a midpoint between neighbours) of the quotient's binade as n * 2^j,
//   n odd in [257, 511]. Then |x / scale - n 2^j| = |a 2^c - n b| 2^j / b, whose numerator
//   is a non-zero integer (n b = a 2^c would make n divide a's odd part, which is < 257);
//   so the quotient lies at least 2^-17 of itself from every boundary;
// - its binary32 rounding moves it by at most 2^-24 of itself, the product by at most
//   3 * 2^-24 (one rounding in 1 / scale, one in the product): both land on the quotient's
//   side of every boundary, and R() of the two is the same;
// - a quotient below 2^-126 (where binary32 rounds in absolute terms) rounds to a t of at
//   most 2^-126, which codes as 0 (t alone) or as the zero point (t + zero, rounded to bf16),
//   either way.
// PackedCodec.Bf16QuotientIsTheReciprocalProduct checks the claim over every bf16 significand
// pair, and that it fails for binary32 weights.
inline bool reciprocal_applies(float scale) {
  const float inverse = 1.0f / scale;
  return scale >= std::numeric_limits<float>::min() && inverse >= std::numeric_limits<float>::min() &&
         inverse <= std::numeric_limits<float>::max();
}

// kZero: the group's zero point is 0 (every symmetric group), where R(t + 0) is t and the
// addition and its rounding are skipped. kNibbles: 4-bit codes are written packed (the stream
// of cpu/bit_packing.h from `out`, which must start at a code whose index is a multiple of 8),
// sparing a pass of pack_block(); else one code per byte. kReciprocal: x * (1 / scale) for
// x / scale (reciprocal_applies()).
template <DType D, bool kZero, bool kNibbles, bool kReciprocal>
__attribute__((target("avx2,fma,f16c"))) bool codes_t(const std::byte* in, std::uint64_t count, ct::Params p, int bits,
                                                     std::uint8_t* out, ErrorStats* stats) {
  static_assert(!kReciprocal || D == DType::kBF16, "the product is the quotient for bf16 operands only");
  constexpr std::uint64_t kSize = kElementBytes<D>;
  constexpr ct::Scalar kScalar = D == DType::kF16 ? ct::Scalar::kF16 : D == DType::kBF16 ? ct::Scalar::kBF16 : ct::Scalar::kF32;
  const __m256 scale = _mm256_set1_ps(p.scale), zero = _mm256_set1_ps(static_cast<float>(p.zero));
  const __m256 inverse = _mm256_set1_ps(1.0f / p.scale);
  const __m256 qmin = _mm256_set1_ps(static_cast<float>(ct::q_min(bits)));
  const __m256 qmax = _mm256_set1_ps(static_cast<float>(ct::q_max(bits)));
  const __m256i offset = _mm256_set1_epi32(-ct::q_min(bits));
  const __m256 inf = _mm256_set1_ps(__builtin_inff()), abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256 bad = _mm256_setzero_ps();
  ErrorStats s;
  std::uint64_t i = 0;
  const std::uint64_t whole = count / 8 * 8;
  while (i < whole) {
    __m256 signal = _mm256_setzero_ps(), error = _mm256_setzero_ps(), max_error = _mm256_setzero_ps();
    const std::uint64_t chunk_end = std::min(whole, i + kStatsChunk), chunk_begin = i;
    for (; i < chunk_end; i += 8) {
      const __m256 x = load8<D>(in + kSize * i);
      __m256 t = round_to<D>(kReciprocal ? _mm256_mul_ps(x, inverse) : _mm256_div_ps(x, scale));
      if constexpr (!kZero) t = round_to<D>(_mm256_add_ps(t, zero));
      t = _mm256_min_ps(_mm256_max_ps(t, qmin), qmax);
      const __m256 q = _mm256_round_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      const __m256i u = _mm256_add_epi32(_mm256_cvtps_epi32(q), offset);
      // 8 codes (< 256) to 8 bytes: pack to 16 bits, then to 8, within lanes; one dword each.
      const __m256i w = _mm256_packus_epi32(u, u);
      const __m256i b = _mm256_packus_epi16(w, w);
      const std::uint32_t lo = static_cast<std::uint32_t>(_mm256_extract_epi32(b, 0));
      const std::uint32_t hi = static_cast<std::uint32_t>(_mm256_extract_epi32(b, 4));
      if constexpr (kNibbles) {
        const std::uint32_t packed = nibbles(lo | static_cast<std::uint64_t>(hi) << 32);
        std::memcpy(out + i / 2, &packed, 4);
      } else {
        std::memcpy(out + i, &lo, 4);
        std::memcpy(out + i + 4, &hi, 4);
      }
      const __m256 decoded = round_to<D>(_mm256_mul_ps(kZero ? q : _mm256_sub_ps(q, zero), scale));
      const __m256 e = _mm256_sub_ps(x, decoded);
      bad = _mm256_or_ps(bad, _mm256_cmp_ps(_mm256_and_ps(decoded, abs_mask), inf, _CMP_NLT_UQ));
      signal = _mm256_fmadd_ps(x, x, signal);
      error = _mm256_fmadd_ps(e, e, error);
      max_error = _mm256_max_ps(max_error, _mm256_and_ps(e, abs_mask));
    }
    fold(signal, error, max_error, i - chunk_begin, &s);
  }
  if (_mm256_movemask_ps(bad) != 0) return false;
  if constexpr (kNibbles) {
    if (i < count) return false;  // the caller sends whole octets only
  }
  for (; i < count; ++i) {  // the last elements of a row that is not whole octets: the codec itself
    const float x = load_f32<D>(in, i);
    const std::uint32_t u = ct::code(x, p, bits, kScalar);
    out[i] = static_cast<std::uint8_t>(u);
    const float decoded = ct::decode(u, p, bits, kScalar);
    if (!codec::is_finite(decoded)) return false;
    const double v = x, e = v - static_cast<double>(decoded);
    s.signal_energy += v * v;
    s.error_energy += e * e;
    s.max_abs_error = std::max(s.max_abs_error, std::fabs(e));
    ++s.count;
  }
  stats->merge(s);
  return true;
}

template <DType D>
bool codes(const std::byte* in, std::uint64_t count, ct::Params p, int bits, std::uint8_t* out, ErrorStats* stats,
           bool nibbles) {
  if constexpr (D == DType::kBF16) {
    if (reciprocal_applies(p.scale)) {
      if (nibbles) {
        return p.zero == 0 ? codes_t<D, true, true, true>(in, count, p, bits, out, stats)
                           : codes_t<D, false, true, true>(in, count, p, bits, out, stats);
      }
      return p.zero == 0 ? codes_t<D, true, false, true>(in, count, p, bits, out, stats)
                         : codes_t<D, false, false, true>(in, count, p, bits, out, stats);
    }
  }
  if (nibbles) {
    return p.zero == 0 ? codes_t<D, true, true, false>(in, count, p, bits, out, stats)
                       : codes_t<D, false, true, false>(in, count, p, bits, out, stats);
  }
  return p.zero == 0 ? codes_t<D, true, false, false>(in, count, p, bits, out, stats)
                     : codes_t<D, false, false, false>(in, count, p, bits, out, stats);
}

// search_error() with lane j of the vector as the codec's lane j: elements from the group's
// start, eight at a time, so element i lands in lane i % 8; the last elements (fewer than
// eight) go to their lanes one by one, with the codec's own functions.
template <DType D, bool kReciprocal>
__attribute__((target("avx2,fma,f16c"))) double search_error(const std::byte* in, std::uint64_t count, ct::Params p,
                                                            int bits) {
  static_assert(!kReciprocal || D == DType::kBF16, "the product is the quotient for bf16 operands only");
  constexpr std::uint64_t kSize = kElementBytes<D>;
  constexpr ct::Scalar kScalar = D == DType::kF16 ? ct::Scalar::kF16 : D == DType::kBF16 ? ct::Scalar::kBF16 : ct::Scalar::kF32;
  const __m256 scale = _mm256_set1_ps(p.scale), zero = _mm256_set1_ps(static_cast<float>(p.zero));
  const __m256 inverse = _mm256_set1_ps(1.0f / p.scale);
  const __m256 qmin = _mm256_set1_ps(static_cast<float>(ct::q_min(bits)));
  const __m256 qmax = _mm256_set1_ps(static_cast<float>(ct::q_max(bits)));
  __m256d total_lo = _mm256_setzero_pd(), total_hi = _mm256_setzero_pd();
  for (std::uint64_t begin = 0; begin < count; begin += codec::kMseBlock) {
    const std::uint64_t end = std::min(count, begin + codec::kMseBlock);
    __m256 lane = _mm256_setzero_ps();
    std::uint64_t i = begin;
    for (; i + 8 <= end; i += 8) {
      const __m256 x = load8<D>(in + kSize * i);
      __m256 t = round_to<D>(kReciprocal ? _mm256_mul_ps(x, inverse) : _mm256_div_ps(x, scale));
      t = round_to<D>(_mm256_add_ps(t, zero));
      t = _mm256_min_ps(_mm256_max_ps(t, qmin), qmax);
      const __m256 q = _mm256_round_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      const __m256 e = _mm256_sub_ps(x, round_to<D>(_mm256_mul_ps(_mm256_sub_ps(q, zero), scale)));
      lane = _mm256_fmadd_ps(e, e, lane);
    }
    if (i < end) {
      alignas(32) float tail[8];
      _mm256_store_ps(tail, lane);
      for (; i < end; ++i) {
        const float x = load_f32<D>(in, i);
        const float e = codec::sub_rn(x, ct::decode(ct::code(x, p, bits, kScalar), p, bits, kScalar));
        tail[i % 8] = codec::fma_rn(e, e, tail[i % 8]);
      }
      lane = _mm256_load_ps(tail);
    }
    total_lo = _mm256_add_pd(total_lo, _mm256_cvtps_pd(_mm256_castps256_ps128(lane)));
    total_hi = _mm256_add_pd(total_hi, _mm256_cvtps_pd(_mm256_extractf128_ps(lane, 1)));
  }
  alignas(32) double t[8];
  _mm256_store_pd(t, total_lo);
  _mm256_store_pd(t + 4, total_hi);
  return codec::combine_lanes(t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7]);
}

}  // namespace

double packed_search_error_avx2(DType dtype, const std::byte* in, std::uint64_t count, ct::Params p, int bits) {
  switch (dtype) {
    case DType::kF16: return search_error<DType::kF16, false>(in, count, p, bits);
    case DType::kBF16:
      return reciprocal_applies(p.scale) ? search_error<DType::kBF16, true>(in, count, p, bits)
                                         : search_error<DType::kBF16, false>(in, count, p, bits);
    default: return search_error<DType::kF32, false>(in, count, p, bits);
  }
}

bool packed_range_avx2(DType dtype, const std::byte* in, std::uint64_t count, float* lo, float* hi) {
  switch (dtype) {
    case DType::kF16: return range<DType::kF16>(in, count, lo, hi);
    case DType::kBF16: return range<DType::kBF16>(in, count, lo, hi);
    default: return range<DType::kF32>(in, count, lo, hi);
  }
}

bool packed_codes_avx2(DType dtype, const std::byte* in, std::uint64_t count, ct::Params p, int bits,
                       std::uint8_t* out, ErrorStats* stats) {
  switch (dtype) {
    case DType::kF16: return codes<DType::kF16>(in, count, p, bits, out, stats, false);
    case DType::kBF16: return codes<DType::kBF16>(in, count, p, bits, out, stats, false);
    default: return codes<DType::kF32>(in, count, p, bits, out, stats, false);
  }
}

bool packed_nibbles_avx2(DType dtype, const std::byte* in, std::uint64_t count, ct::Params p, std::uint8_t* out,
                         ErrorStats* stats) {
  switch (dtype) {
    case DType::kF16: return codes<DType::kF16>(in, count, p, 4, out, stats, true);
    case DType::kBF16: return codes<DType::kBF16>(in, count, p, 4, out, stats, true);
    default: return codes<DType::kF32>(in, count, p, 4, out, stats, true);
  }
}

}  // namespace wq::detail
