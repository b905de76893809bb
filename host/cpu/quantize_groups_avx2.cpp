#include "cpu/quantize_groups_avx2.h"

#include <algorithm>

#include "cpu/avx2_codes.h"
#include "cpu/avx2_elements.h"
#include "cpu/element_io.h"

namespace wq::detail {
namespace {

using avx2::CodeConstants;

// Everything here runs only after use_avx2() (and use_f16c() for F16 input).
using avx2::load8;
using avx2::max_of;
using avx2::min_of;

// A batch of groups is reduced, then parameterised, then coded while it stays in L1: at most
// this many elements (one group when a group is longer) and kMaxBatch groups.
constexpr std::uint64_t kBatchElements = 2048;
constexpr int kMaxBatch = 16;
// The range pass is the first to touch the input: it fetches this many bytes ahead.
constexpr std::uint64_t kPrefetchBytes = 8192;

// Range of one group, and its x^2 into `signal`. The loaded value is min's and max's first
// operand: on NaN they return the second, so NaN is skipped (the error sums find it later).
template <DType D>
WQ_AVX2_F16C_INLINE void group_range(const std::byte* g, std::uint64_t size, float* lo, float* hi, __m256* signal) {
  constexpr std::uint64_t kSize = kElementBytes<D>;
  const __m256 inf = _mm256_set1_ps(__builtin_inff());
  __m256 lo0 = inf, lo1 = inf, hi0 = -inf, hi1 = -inf, sig = *signal, sig1 = _mm256_setzero_ps();
  for (std::uint64_t i = 0; i < size; i += 16) {
    _mm_prefetch(reinterpret_cast<const char*>(g + kSize * i + kPrefetchBytes), _MM_HINT_T0);
    const __m256 a = load8<D>(g + kSize * i), b = load8<D>(g + kSize * (i + 8));
    lo0 = _mm256_min_ps(a, lo0);
    hi0 = _mm256_max_ps(a, hi0);
    lo1 = _mm256_min_ps(b, lo1);
    hi1 = _mm256_max_ps(b, hi1);
    sig = _mm256_fmadd_ps(a, a, sig);
    sig1 = _mm256_fmadd_ps(b, b, sig1);
  }
  *lo = min_of(_mm256_min_ps(lo0, lo1));
  *hi = max_of(_mm256_max_ps(hi0, hi1));
  *signal = _mm256_add_ps(sig, sig1);
}

// How code_loop() clamps t: not at all (every element inside), at both ends with the error of
// every element measured, or with the clipped elements' error taken from the group's ends.
enum class CodeClamp { kNone, kBoth, kBothFromEnds, kAboveFromEnds };

// Codes of a group whose scale is usable through its reciprocal, without the codec's clamp:
// every element lies in [lo, hi], so d = RN(x - lo) is in [0, RN(hi - lo)] and t = RN(d * r)
// in [0, M (1 + 3u)] (u = 2^-24; scale and r are each within one rounding of (hi - lo) / M
// and its inverse). On [0, M + 1/2) rint(t) is rint(clamp(t, 0, M)); NaN gives code 0 through
// the saturating packs, as in the codec, and NaN error sums that report it. The error is kept
// in code units, e = t - q: the proof's check is |e| <= 1/2 - 2^-12 (a lane that fails it takes
// the division), and e * scale is the error x - decoded up to a few ulps of t (statistics
// only, one multiplication per group instead of two operations per element).
// With Signal, x^2 is added to *signal here (the per-tensor pass has no range pass of its own).
// With kBoth (F16 parameters: the rounded min may sit above the smallest element, the rounded
// scale below (hi - lo) / M; symmetric ranges), t is clamped as in the codec and the proof's check is on
// |clamp(t) - q|; the error stays t - q, so clipped elements count in full.
// With a clamp whose clipped error comes from the ends (kBothFromEnds, kAboveFromEnds), `clip`
// is the largest |t - code| of the clipped elements (GroupEnds): clipped elements have
// tc - q = 0, so |tc - q|, which the proof's check needs anyway, gives the largest error of the
// others, and the loop spends no operations on |t - q|. The maximum is the same value as the
// per-element one. kAboveFromEnds leaves out the clamp at 0, for groups whose every t is at
// least -1/2: there rint(t) is -0.0 (code 0, through the conversion) where the clamp gives 0,
// and t - rint(t) = t - 0 is the same error.
template <DType D, int Bits, bool Signal, CodeClamp Clamping>
WQ_AVX2_F16C_INLINE void code_loop(const std::byte* g, std::uint64_t size, codec::AffineParams p, float reciprocal,
                                   const CodeConstants& c, std::uint64_t ahead, std::uint8_t* out, __m256* error,
                                   __m256* max_error, __m256* signal, float clip = 0.0f) {
  constexpr bool Clamp = Clamping != CodeClamp::kNone;
  constexpr bool ClipKnown = Clamping == CodeClamp::kBothFromEnds || Clamping == CodeClamp::kAboveFromEnds;
  constexpr std::uint64_t kSize = kElementBytes<D>;
  const __m256 min = _mm256_set1_ps(p.min), r = _mm256_set1_ps(reciprocal), scale = _mm256_set1_ps(p.scale);
  __m256 e2a = _mm256_setzero_ps(), e2b = _mm256_setzero_ps(), emax = _mm256_set1_ps(clip);
  for (std::uint64_t i = 0; i < size; i += 16) {
    _mm_prefetch(reinterpret_cast<const char*>(g + kSize * i + ahead), _MM_HINT_T0);
    const __m256 x0 = load8<D>(g + kSize * i), x1 = load8<D>(g + kSize * (i + 8));
    const __m256 t0 = _mm256_mul_ps(_mm256_sub_ps(x0, min), r);
    const __m256 t1 = _mm256_mul_ps(_mm256_sub_ps(x1, min), r);
    __m256 tc0 = t0, tc1 = t1;
    if constexpr (Clamping == CodeClamp::kAboveFromEnds) {
      tc0 = _mm256_min_ps(c.top, t0);  // NaN stays NaN (min's second operand): code 0, as without a clamp
      tc1 = _mm256_min_ps(c.top, t1);
    } else if constexpr (Clamp) {
      tc0 = _mm256_min_ps(_mm256_max_ps(t0, _mm256_setzero_ps()), c.top);
      tc1 = _mm256_min_ps(_mm256_max_ps(t1, _mm256_setzero_ps()), c.top);
    }
    __m256 q0 = _mm256_round_ps(tc0, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 q1 = _mm256_round_ps(tc1, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 e0 = _mm256_sub_ps(t0, q0), e1 = _mm256_sub_ps(t1, q1);
    __m256 a, unproved;
    if constexpr (ClipKnown) {
      a = unproved = _mm256_max_ps(_mm256_and_ps(_mm256_sub_ps(tc0, q0), c.abs_mask),
                                   _mm256_and_ps(_mm256_sub_ps(tc1, q1), c.abs_mask));
    } else {
      a = unproved = _mm256_max_ps(_mm256_and_ps(e0, c.abs_mask), _mm256_and_ps(e1, c.abs_mask));
      if constexpr (Clamp) {
        unproved = _mm256_max_ps(_mm256_and_ps(_mm256_sub_ps(tc0, q0), c.abs_mask),
                                 _mm256_and_ps(_mm256_sub_ps(tc1, q1), c.abs_mask));
      }
    }
    if (__builtin_expect(_mm256_movemask_ps(_mm256_cmp_ps(unproved, c.margin, _CMP_GT_OQ)) != 0, 0)) {
      q0 = avx2::codes_by_vector_division(x0, min, scale, c);
      q1 = avx2::codes_by_vector_division(x1, min, scale, c);
      e0 = _mm256_sub_ps(t0, q0);
      e1 = _mm256_sub_ps(t1, q1);
      a = _mm256_max_ps(_mm256_and_ps(e0, c.abs_mask), _mm256_and_ps(e1, c.abs_mask));
    }
    avx2::store_codes16<Bits>(avx2::code_bytes(q0, q1, c), out + i / 8 * Bits);
    if constexpr (Signal) *signal = _mm256_fmadd_ps(x1, x1, _mm256_fmadd_ps(x0, x0, *signal));
    if constexpr (ClipKnown) {
      // One accumulator: with two, these loops need a seventeenth register and GCC 12 kept one
      // accumulator on the stack, a store and a reload on the loop's chain every iteration
      // (2-bit symmetric rows ran at 0.79x minmax, 0.91x with one; bench/RESULTS.md).
      e2a = _mm256_fmadd_ps(e1, e1, _mm256_fmadd_ps(e0, e0, e2a));
    } else {
      e2a = _mm256_fmadd_ps(e0, e0, e2a);
      e2b = _mm256_fmadd_ps(e1, e1, e2b);
    }
    emax = _mm256_max_ps(emax, a);
  }
  *error = _mm256_fmadd_ps(_mm256_add_ps(e2a, e2b), _mm256_mul_ps(scale, scale), *error);
  *max_error = _mm256_max_ps(*max_error, _mm256_mul_ps(emax, _mm256_and_ps(scale, c.abs_mask)));  // scale < 0: symmetric
}

template <DType D, int Bits, bool Signal = false>
WQ_AVX2_F16C_INLINE void code_group(const std::byte* g, std::uint64_t size, codec::AffineParams p, float reciprocal,
                                    codec::Coverage coverage, const CodeConstants& c, std::uint64_t ahead, std::uint8_t* out,
                                    __m256* error, __m256* max_error, __m256* signal = nullptr) {
  if (coverage == codec::Coverage::kMayClip) {
    code_loop<D, Bits, Signal, CodeClamp::kBoth>(g, size, p, reciprocal, c, ahead, out, error, max_error, signal);
  } else {
    code_loop<D, Bits, Signal, CodeClamp::kNone>(g, size, p, reciprocal, c, ahead, out, error, max_error, signal);
  }
}

// Codes of a group whose scale is 0 (a constant group, or a range so small that its scale
// rounds to 0: every code is 0, as in codec::affine_code) or outside [2^-126, 2^126]: the
// division for every element, the error in value units.
template <DType D, int Bits, bool Signal = false>
WQ_AVX2_F16C_INLINE void code_group_by_division(const std::byte* g, std::uint64_t size, codec::AffineParams p,
                                                const CodeConstants& c, std::uint8_t* out, __m256* error,
                                                __m256* max_error, __m256* signal = nullptr) {
  constexpr std::uint64_t kSize = kElementBytes<D>;
  const __m256 min = _mm256_set1_ps(p.min), scale = _mm256_set1_ps(p.scale);
  for (std::uint64_t i = 0; i < size; i += 16) {
    const __m256 x0 = load8<D>(g + kSize * i), x1 = load8<D>(g + kSize * (i + 8));
    __m256 q0 = _mm256_setzero_ps(), q1 = _mm256_setzero_ps();
    if (p.scale != 0.0f) {
      q0 = avx2::codes_by_vector_division(x0, min, scale, c);
      q1 = avx2::codes_by_vector_division(x1, min, scale, c);
    }
    avx2::store_codes16<Bits>(avx2::code_bytes(q0, q1, c), out + i / 8 * Bits);
    const __m256 e0 = _mm256_fnmadd_ps(scale, q0, _mm256_sub_ps(x0, min));
    const __m256 e1 = _mm256_fnmadd_ps(scale, q1, _mm256_sub_ps(x1, min));
    if constexpr (Signal) *signal = _mm256_fmadd_ps(x1, x1, _mm256_fmadd_ps(x0, x0, *signal));
    *error = _mm256_fmadd_ps(e1, e1, _mm256_fmadd_ps(e0, e0, *error));
    *max_error = _mm256_max_ps(*max_error, _mm256_max_ps(_mm256_and_ps(e0, c.abs_mask), _mm256_and_ps(e1, c.abs_mask)));
  }
}

// What a group's ends say of its clipped elements, with t computed as code_loop() computes it:
// t is monotone in x, so the farthest below 0 is the low end's and the farthest above M the
// high end's.
struct GroupEnds {
  float clip;       // the largest |t - code| of the clipped elements, in code units (0: none)
  bool below_half;  // some t < -1/2: the clamp at 0 changes codes
};

inline GroupEnds group_ends(float lo, float hi, codec::AffineParams p, float r, float max_code) {
  float low, high;
  codec::reciprocal_t_of_ends(lo, hi, p.min, r, &low, &high);
  return {std::max({0.0f, -low, high - max_code}), low < -0.5f};
}

// A group whose elements may clip: through its reciprocal where it has one (symmetric groups
// clip only above: their t is at least 0), else through the division.
template <DType D, int Bits>
WQ_AVX2_F16C_INLINE void code_clipping_group(const std::byte* g, std::uint64_t size, codec::AffineParams p,
                                             float reciprocal, float lo, float hi, float max_code,
                                             const CodeConstants& c, std::uint64_t ahead, std::uint8_t* out,
                                             __m256* error, __m256* max_error) {
  if (reciprocal == 0.0f) return code_group_by_division<D, Bits>(g, size, p, c, out, error, max_error);
  const GroupEnds ends = group_ends(lo, hi, p, reciprocal, max_code);
  if (ends.below_half) {
    code_loop<D, Bits, false, CodeClamp::kBothFromEnds>(g, size, p, reciprocal, c, ahead, out, error, max_error,
                                                         nullptr, ends.clip);
  } else {
    code_loop<D, Bits, false, CodeClamp::kAboveFromEnds>(g, size, p, reciprocal, c, ahead, out, error, max_error,
                                                          nullptr, ends.clip);
  }
}

// A group through its reciprocal where it has one, else through the division.
template <DType D, int Bits>
WQ_AVX2_F16C_INLINE void code_any_group(const std::byte* g, std::uint64_t size, codec::AffineParams p, float reciprocal,
                                        codec::Coverage coverage, const CodeConstants& c, std::uint64_t ahead,
                                        std::uint8_t* out, __m256* error, __m256* max_error) {
  if (reciprocal != 0.0f) {
    code_group<D, Bits>(g, size, p, reciprocal, coverage, c, ahead, out, error, max_error);
  } else {
    code_group_by_division<D, Bits>(g, size, p, c, out, error, max_error);
  }
}

template <DType D, int Bits>
__attribute__((target("avx2,fma,f16c"))) UniformGroupsResult uniform_groups(const std::byte* x, std::uint64_t groups,
                                                                        std::uint64_t size, const codec::Recipe& recipe,
                                                                        codec::AffineParams* params,
                                                                        std::uint8_t* out, float* signal,
                                                                        float* error, float* max_error) {
  const float max_code = static_cast<float>(codec::max_code(recipe.bits));
  // A local copy: the code stores may alias anything, and would make every group reload it.
  const codec::Coverage coverage = recipe.coverage();
  // A range that may clip (symmetric, F16 parameters) often does not in a given group (4-bit
  // symmetric groups of 64 of normal data: 81 % code inside their range): then its codes can
  // skip the clamp too. Choosing the loop per group is a branch the CPU cannot predict
  // (2-bit symmetric groups of normal data clip 60-80 % of the time), so the batch is first sorted into two
  // lists without branches, and each list runs its own loop.
  const bool sort_groups = coverage == codec::Coverage::kMayClip;
  const CodeConstants c = avx2::code_constants(max_code);
  const std::uint64_t out_per_group = size / 8 * Bits;
  const int batch = static_cast<int>(std::clamp<std::uint64_t>(kBatchElements / size, 1, kMaxBatch));
  __m256 sig = _mm256_loadu_ps(signal), err = _mm256_loadu_ps(error), mx = _mm256_loadu_ps(max_error);
  UniformGroupsResult result;
  for (std::uint64_t k = 0; k < groups;) {
    const int count = static_cast<int>(std::min<std::uint64_t>(batch, groups - k));
    float lo[kMaxBatch], hi[kMaxBatch], reciprocal[kMaxBatch];
    for (int b = 0; b < count; ++b) group_range<D>(x + kElementBytes<D> * (k + b) * size, size, &lo[b], &hi[b], &sig);
    codec::Coverage group_coverage[kMaxBatch];
    const int refused = params_of_ranges(lo, hi, count, recipe, params + k, reciprocal, &result,
                                         sort_groups ? group_coverage : nullptr);
    const std::uint64_t ahead = kElementBytes<D> * count * size;
    const std::byte* batch_x = x + kElementBytes<D> * k * size;
    std::uint8_t* batch_out = out + k * out_per_group;
    if (sort_groups) {
      // group_coverage is kMayClip where the reciprocal is 0: those groups take the division
      // (a branch the CPU predicts, they are rare) from the clipping list.
      int inside[kMaxBatch], clipping[kMaxBatch], n_inside = 0, n_clipping = 0;
      for (int b = 0; b < refused; ++b) {
        const bool in = group_coverage[b] == codec::Coverage::kEveryElementInside;
        inside[n_inside] = b;
        clipping[n_clipping] = b;
        n_inside += in;
        n_clipping += !in;
      }
      for (int i = 0; i < n_inside; ++i) {
        const int b = inside[i];
        code_group<D, Bits>(batch_x + kElementBytes<D> * b * size, size, params[k + b], reciprocal[b],
                            group_coverage[b], c, ahead, batch_out + b * out_per_group, &err, &mx);
      }
      for (int i = 0; i < n_clipping; ++i) {
        const int b = clipping[i];
        code_clipping_group<D, Bits>(batch_x + kElementBytes<D> * b * size, size, params[k + b], reciprocal[b], lo[b],
                                     hi[b], max_code, c, ahead, batch_out + b * out_per_group, &err, &mx);
      }
    } else {
      for (int b = 0; b < refused; ++b) {
        code_any_group<D, Bits>(batch_x + kElementBytes<D> * b * size, size, params[k + b], reciprocal[b], coverage,
                                c, ahead, batch_out + b * out_per_group, &err, &mx);
      }
    }
    k += static_cast<std::uint64_t>(refused);
    if (refused < count) {
      result.done = k;
      break;
    }
    result.done = k;
  }
  _mm256_storeu_ps(signal, sig);
  _mm256_storeu_ps(error, err);
  _mm256_storeu_ps(max_error, mx);
  return result;
}

template <DType D>
UniformGroupsResult uniform_groups_of(const std::byte* x, std::uint64_t groups, std::uint64_t group_size,
                                      const codec::Recipe& recipe, codec::AffineParams* params, std::uint8_t* out, float* signal, float* error,
                                      float* max_error) {
  return dispatch_bits(recipe.bits, [&]<int B>() {
    return uniform_groups<D, B>(x, groups, group_size, recipe, params, out, signal, error, max_error);
  });
}

// The per-tensor codes pass: blocks of a few thousand elements, fetching one block ahead.
template <DType D, int Bits>
__attribute__((target("avx2,fma,f16c"))) void span(const std::byte* x, std::uint64_t n, codec::AffineParams p,
                                                   float reciprocal, codec::Coverage coverage, std::uint8_t* out, float* signal, float* error,
                                                   float* max_error) {
  constexpr std::uint64_t kBlock = 4096;
  const CodeConstants c = avx2::code_constants(static_cast<float>(codec::max_code(Bits)));
  __m256 sig = _mm256_loadu_ps(signal), err = _mm256_loadu_ps(error), mx = _mm256_loadu_ps(max_error);
  for (std::uint64_t b = 0; b < n; b += kBlock) {
    const std::uint64_t len = std::min(kBlock, n - b);
    const std::byte* g = x + kElementBytes<D> * b;
    std::uint8_t* o = out + b / 8 * Bits;
    if (reciprocal != 0.0f) {
      code_group<D, Bits, true>(g, len, p, reciprocal, coverage, c, kElementBytes<D> * kBlock, o, &err, &mx, &sig);
    } else {
      code_group_by_division<D, Bits, true>(g, len, p, c, o, &err, &mx, &sig);
    }
  }
  _mm256_storeu_ps(signal, sig);
  _mm256_storeu_ps(error, err);
  _mm256_storeu_ps(max_error, mx);
}

template <DType D>
void span_of(const std::byte* x, std::uint64_t n, codec::AffineParams p, float reciprocal, codec::Coverage coverage, int bits,
             std::uint8_t* out, float* signal, float* error, float* max_error) {
  dispatch_bits(bits, [&]<int B>() { span<D, B>(x, n, p, reciprocal, coverage, out, signal, error, max_error); });
}

}  // namespace

void quantize_span_avx2(DType dtype, const std::byte* x, std::uint64_t n, codec::AffineParams params,
                        float reciprocal, codec::Coverage coverage, int bits, std::uint8_t* out, float* signal, float* error, float* max_error) {
  switch (dtype) {
    case DType::kBF16: return span_of<DType::kBF16>(x, n, params, reciprocal, coverage, bits, out, signal, error, max_error);
    case DType::kF16: return span_of<DType::kF16>(x, n, params, reciprocal, coverage, bits, out, signal, error, max_error);
    default: return span_of<DType::kF32>(x, n, params, reciprocal, coverage, bits, out, signal, error, max_error);
  }
}

UniformGroupsResult quantize_uniform_groups_avx2(DType dtype, const std::byte* x, std::uint64_t groups,
                                                 std::uint64_t group_size, const codec::Recipe& recipe,
                                                 codec::AffineParams* params,
                                                 std::uint8_t* out, float* signal, float* error, float* max_error) {
  switch (dtype) {
    case DType::kBF16: return uniform_groups_of<DType::kBF16>(x, groups, group_size, recipe, params, out, signal, error, max_error);
    case DType::kF16: return uniform_groups_of<DType::kF16>(x, groups, group_size, recipe, params, out, signal, error, max_error);
    default: return uniform_groups_of<DType::kF32>(x, groups, group_size, recipe, params, out, signal, error, max_error);
  }
}

}  // namespace wq::detail
