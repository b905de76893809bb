// The lane operations of the k-quant searches (cpu/ggml_kquant_lanes.cpp), shared with the
// translation unit built for AVX-512 (cpu/ggml_kquant_search_avx512.cpp): the lane types, the
// transposes that load sub-blocks into lanes, the candidate codes' rounding, and the searches of
// Q2_K, Q4_K, Q5_K (fit_lanes) and Q6_K (fit_symmetric_x2_lanes).
//
// Everything here has internal linkage (an unnamed namespace), so that each translation unit
// compiles its own copies for its own instruction set: a shared inline function would be one
// symbol, and the linker could keep the AVX-512 unit's copy for every caller.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "wq/codec/ggml_kquant_search.h"

namespace wq::detail {
namespace {

namespace kquant_ggml = codec::ggml;

// Eight lanes: sub-block j of the super-block in lane j. GCC/Clang vector extensions, compiled
// by cpu/ggml_kquant_lanes.cpp for AVX2 and for the baseline target (as pairs of SSE registers).
// No fast-math and -ffp-contract=off: each operation rounds on its own, as the codec's
// mul_rn/add_rn do.
typedef float V __attribute__((vector_size(32)));
typedef std::int32_t VI __attribute__((vector_size(32)));
// Sixteen lanes: two registers of eight side by side, in the unit built for AVX-512
// (cpu/ggml_kquant_search_avx512.cpp). The helpers below that the searches use take either
// width.
typedef float V16 __attribute__((vector_size(64)));
typedef std::int32_t VI16 __attribute__((vector_size(64)));
// The float and int lane types of a width, from a vector of either: IntOf<V> is VI,
// FloatOf<VI16> is V16.
template <std::size_t kBytes>
struct LaneTypesOfSize;
template <>
struct LaneTypesOfSize<32> {
  using Float = V;
  using Int = VI;
};
template <>
struct LaneTypesOfSize<64> {
  using Float = V16;
  using Int = VI16;
};
template <typename Vec>
using IntOf = typename LaneTypesOfSize<sizeof(Vec)>::Int;
template <typename Vec>
using FloatOf = typename LaneTypesOfSize<sizeof(Vec)>::Float;

constexpr int kSub = 32;  // elements per sub-block of Q4_K/Q5_K (16 for Q2_K and Q6_K)
constexpr int kLanes = 8;  // sub-blocks searched at once

#define WQ_LANES_INLINE inline __attribute__((always_inline))

template <typename Vec>
WQ_LANES_INLINE IntOf<Vec> bits_of(Vec v) {
  IntOf<Vec> b;
  std::memcpy(&b, &v, sizeof b);
  return b;
}

// codec::ggml::nearest_int() in every lane: the same addition, the same bits.
template <typename Vec>
WQ_LANES_INLINE IntOf<Vec> nearest_int(Vec f) { return (bits_of(f + 12582912.0f) & 0x007fffff) - 0x00400000; }

// Spelled so that GCC emits vpmaxsd/vpminsd: `v < lo ? lo : v` gives a compare and a blend.
template <typename VecI>
WQ_LANES_INLINE VecI clamp(VecI v, int lo, int hi) {
  const VecI low = VecI{} + lo, high = VecI{} + hi;
  v = v > low ? v : low;
  return v < high ? v : high;
}

template <typename VecI>
WQ_LANES_INLINE FloatOf<VecI> to_float(VecI v) { return __builtin_convertvector(v, FloatOf<VecI>); }

template <typename Vec>
WQ_LANES_INLINE Vec abs_of(Vec v) {
  const IntOf<Vec> magnitude = bits_of(v) & 0x7fffffff;  // abs_f32: the sign bit cleared
  Vec out;
  std::memcpy(&out, &magnitude, sizeof out);
  return out;
}

// Eight rows of eight lanes transposed in place (m[i] lane j = row j's lane i): the unpack,
// shuffle and 128-bit permute steps of the usual AVX 8x8 transpose, spelled as shuffles that
// GCC maps to those instructions. Only data moves, so it serves codes (as bits) too.
WQ_LANES_INLINE void transpose8(V* m) {
  V t[8], s[8];
  for (int k = 0; k < 4; ++k) {
    t[2 * k] = __builtin_shufflevector(m[2 * k], m[2 * k + 1], 0, 8, 1, 9, 4, 12, 5, 13);
    t[2 * k + 1] = __builtin_shufflevector(m[2 * k], m[2 * k + 1], 2, 10, 3, 11, 6, 14, 7, 15);
  }
  for (int k = 0; k < 2; ++k) {
    s[4 * k] = __builtin_shufflevector(t[4 * k], t[4 * k + 2], 0, 1, 8, 9, 4, 5, 12, 13);
    s[4 * k + 1] = __builtin_shufflevector(t[4 * k], t[4 * k + 2], 2, 3, 10, 11, 6, 7, 14, 15);
    s[4 * k + 2] = __builtin_shufflevector(t[4 * k + 1], t[4 * k + 3], 0, 1, 8, 9, 4, 5, 12, 13);
    s[4 * k + 3] = __builtin_shufflevector(t[4 * k + 1], t[4 * k + 3], 2, 3, 10, 11, 6, 7, 14, 15);
  }
  for (int k = 0; k < 4; ++k) {
    m[k] = __builtin_shufflevector(s[k], s[k + 4], 0, 1, 2, 3, 8, 9, 10, 11);
    m[k + 4] = __builtin_shufflevector(s[k], s[k + 4], 4, 5, 6, 7, 12, 13, 14, 15);
  }
}

// V read from any float address: the loads below as one instruction each.
typedef float UnalignedV __attribute__((vector_size(32), aligned(4), may_alias));

// Eight sub-blocks of n elements (sub-block j at x + stride * j) into n lanes registers: X[i]
// lane j = sub-block j's element i. Eight scalar moves per register otherwise. (The rows are
// read as UnalignedV, not by memcpy: GCC 12 copied those into a stack buffer in 16-byte halves
// that the transpose then read whole, a failed store-to-load forward per row, a tenth of Q3_K's
// time.)
template <int n>
WQ_LANES_INLINE void load_sub_blocks(const float* x, int stride, V* X) {
  static_assert(n % kLanes == 0);
  for (int c = 0; c < n; c += kLanes) {
    V m[kLanes];
    for (int j = 0; j < kLanes; ++j) m[j] = *reinterpret_cast<const UnalignedV*>(x + stride * j + c);
    transpose8(m);
    for (int i = 0; i < kLanes; ++i) X[c + i] = m[i];
  }
}

// The searches' candidate codes as floats, without the integer round trip. nearest_int(t) reads
// the low bits of t + 1.5 * 2^23; for |t| < 2^22 that sum lies in [2^23, 2^24), where binary32
// holds exactly the integers, so (t + 1.5 * 2^23) - 1.5 * 2^23 is the same integer, already a
// float, and clamping it with float comparisons gives to_float(clamp(nearest_int(t))). That
// saves the mask, the integer subtraction, the conversion and the integer clamp per element and
// candidate. Outside that range (a step of infinity on a constant or subnormal sub-block) the
// searches take the integer path; grid_is_small() decides per candidate, for all lanes at once,
// from a bound that is exact: rounding is monotonic, so |iscale * (x - min)| computed for any
// element is at most |iscale| * (the largest |x - min|) computed the same way.
constexpr float kRoundingShift = 12582912.0f;  // 1.5 * 2^23
constexpr float kSmallGrid = 4194304.0f;       // 2^22

// The bounds of rounded_code(), made opaque to the optimiser. The clamp is spelled
// `low > l ? low : l`, which is vmaxps's own definition (a NaN in l gives l), and GCC 12 emits
// one vmaxps for it, and vminps for `high < l ? high : l`; but once the bounds are known
// constants it rewrites the comparisons and emits a compare and a blend for each, which cost
// Q6_K's candidates 2 of their 12 operations per element. The empty asm hides the constant.
template <typename Vec = V>
struct CodeRange {
  Vec low, high;
};

WQ_LANES_INLINE float opaque(float value) {
  asm("" : "+x"(value));
  return value;
}

template <typename Vec = V>
WQ_LANES_INLINE CodeRange<Vec> code_range(float lo, float hi) {
  return {Vec{} + opaque(lo), Vec{} + opaque(hi)};
}

WQ_LANES_INLINE bool all_lanes(VI mask) {
  bool all = true;
  for (int j = 0; j < kLanes; ++j) all = all && mask[j] != 0;
  return all;
}

WQ_LANES_INLINE bool all_lanes(VI16 mask) {
  return all_lanes(VI(__builtin_shufflevector(mask, mask, 0, 1, 2, 3, 4, 5, 6, 7) &
                      __builtin_shufflevector(mask, mask, 8, 9, 10, 11, 12, 13, 14, 15)));
}

WQ_LANES_INLINE bool any_lane(VI mask) {
  bool any = false;
  for (int j = 0; j < kLanes; ++j) any = any || mask[j] != 0;
  return any;
}

WQ_LANES_INLINE bool any_lane(VI16 mask) {
  return any_lane(VI(__builtin_shufflevector(mask, mask, 0, 1, 2, 3, 4, 5, 6, 7) |
                     __builtin_shufflevector(mask, mask, 8, 9, 10, 11, 12, 13, 14, 15)));
}

// The rounding of rounded_code(), per instruction set: the baseline adds and subtracts
// 1.5 * 2^23; AVX2 has it in one instruction, vroundps to nearest even, which is the same
// integer for |t| < 2^22 (both round the exact value to nearest, ties to even, since 1.5 * 2^23
// is even). The one difference is the sign of a zero: vroundps(-0.3) is -0.0 where the sum
// gives +0.0. The searches only multiply the codes and add the products to sums that start at
// +0.0, where -0.0 and +0.0 give the same values (x * -0.0 is a zero, and s + -0.0 = s, for
// s = +0.0 too), so the bytes are the same; the backend suites hold both paths to the codec.
struct BaselineRounding {
  static constexpr bool kWide = false;
  template <typename Vec>
  WQ_LANES_INLINE static Vec nearest(Vec t) {
    return (t + kRoundingShift) - kRoundingShift;
  }
};
// Spelled as asm: the intrinsic needs the AVX target on every function it is inlined through,
// and GCC inlines the searches into each other before it inlines them into the AVX2 clone. Only
// quantize_avx2() instantiates this; GCC compiles the asm there. Clang checks the asm's operand
// sizes in the generic function first and refuses it, so a Clang build (the fuzzers') rounds as
// the baseline does: the same values, a little slower.
struct Avx2Rounding {
  static constexpr bool kWide = false;
  WQ_LANES_INLINE static V nearest(V t) {
#if defined(__clang__)
    return BaselineRounding::nearest(t);
#else
    V l;
    asm("vroundps $8, %1, %0" : "=x"(l) : "x"(t));  // to nearest even, no exceptions
    return l;
#endif
  }
};

// kLow / kHigh: whether the candidate's grid can round an element past that end of the codes
// (clamps_needed()); a clamp that cannot change a code is left out.
template <typename Rounding, bool kLow, bool kHigh, typename Vec>
WQ_LANES_INLINE Vec rounded_code(Vec t, const CodeRange<Vec>& range) {
  Vec l = Rounding::nearest(t);
  if constexpr (kLow) l = range.low > l ? range.low : l;
  if constexpr (kHigh) l = range.high < l ? range.high : l;
  return l;
}

// Which clamps a grid needs, from bounds on its t in each lane (lanes in `ignored` aside): bit 0
// when some t_min may round below range.low, bit 1 when some t_max may round above range.high.
// Rounding is monotonic, so an element's t lies within bounds computed the same way from the
// extreme elements. Both bits for NaN.
enum : int { kClampLow = 1, kClampHigh = 2 };
template <typename Vec>
WQ_LANES_INLINE int clamps_needed(Vec t_min, Vec t_max, const CodeRange<Vec>& range, IntOf<Vec> ignored) {
  const IntOf<Vec> low_ok = ignored | (t_min > range.low - 0.5f);
  const IntOf<Vec> high_ok = ignored | (t_max < range.high + 0.5f);
  return (all_lanes(low_ok) ? 0 : kClampLow) | (all_lanes(high_ok) ? 0 : kClampHigh);
}

// Whether every lane that is not `ignored` has bound < 2^22 (false for NaN).
template <typename Vec>
WQ_LANES_INLINE IntOf<Vec> small_lanes(Vec bound, IntOf<Vec> ignored) {
  return ignored | (bound < kSmallGrid);
}


// codec::ggml::error_term(): squared or absolute.
template <bool kAbsolute, typename Vec>
WQ_LANES_INLINE Vec error_term(Vec diff) {
  if constexpr (kAbsolute) {
    return abs_of(diff);
  } else {
    return diff * diff;
  }
}

// fit_scale_and_offset() (ggml's make_qkx2_quants) over N elements, lane j of round r on one
// sub-block: X[r][i], W[r][i] hold element i and its weight of every sub-block of round r.
// Returns each lane's scale in scale[r], -min in neg_offset[r], and the grid its codes come
// from: iscale in grid[r] (0 for an all-zero sub-block, whose codes are 0) and the offset it was
// computed from in grid_min[r]. The codes themselves are left to the finish, which computes
// nearly every sub-block's again from its stored step (LaneGridCodes). Each candidate step is a
// chain (sums in element order, a division, the error in element order, the choice) that the
// next step's offset depends on, so with R > 1 the rounds' registers go through every step
// together and the core interleaves their chains.
//
// The codes of a candidate are never kept: a lane that takes one records its grid, and the codes
// of the grid kept last are computed from it where needed, by the same operations
// (codec::ggml::offset_grid_code()), so they are the same codes.
// A candidate grid's codes, in float: rounded_code() with the clamps it needs.
template <typename Rounding, bool kLow, bool kHigh, int N, int R, typename Vec>
WQ_LANES_INLINE void offset_codes(const Vec (*X)[N], const Vec* iscale, const Vec* min, const CodeRange<Vec>& range,
                                  Vec (*codes)[N]) {
  for (int i = 0; i < N; ++i) {
    for (int r = 0; r < R; ++r) codes[r][i] = rounded_code<Rounding, kLow, kHigh>(iscale[r] * (X[r][i] - min[r]), range);
  }
}

template <typename Rounding, int N, int R, bool kAbsolute, typename Vec>
WQ_LANES_INLINE void fit_lanes(const Vec (*X)[N], const Vec (*W)[N], int nmax, kquant_ggml::OffsetSearch search,
                               Vec* grid, Vec* grid_min, Vec* scale_out, Vec* neg_offset) {
  using VecI = IntOf<Vec>;
  Vec min[R], max[R], low[R], sum_w[R], sum_x[R], scale[R], best[R], code_iscale[R], code_min[R];
  VecI flat[R];
  const Vec fnmax = Vec{} + static_cast<float>(nmax);
  for (int r = 0; r < R; ++r) {
    low[r] = X[r][0];
    max[r] = X[r][0];
    sum_w[r] = W[r][0];
    sum_x[r] = sum_w[r] * X[r][0];
    for (int i = 1; i < N; ++i) {
      low[r] = X[r][i] < low[r] ? X[r][i] : low[r];
      max[r] = X[r][i] > max[r] ? X[r][i] : max[r];
      sum_w[r] = sum_w[r] + W[r][i];
      sum_x[r] = sum_x[r] + W[r][i] * X[r][i];
    }
    min[r] = low[r] > 0.0f ? Vec{} : low[r];
    flat[r] = max[r] == min[r];  // the scalar search returns here: codes 0, scale 0
    const Vec iscale = fnmax / (max[r] - min[r]);
    scale[r] = 1.0f / iscale;
    best[r] = Vec{};
    for (int i = 0; i < N; ++i) {
      const Vec l = to_float(clamp(nearest_int(iscale * (X[r][i] - min[r])), 0, nmax));
      const Vec diff = scale[r] * l + min[r] - X[r][i];
      best[r] = best[r] + W[r][i] * error_term<kAbsolute>(diff);
    }
    code_iscale[r] = iscale;
    code_min[r] = min[r];
  }
  Vec candidate_f[R][N];  // the candidate's codes, as floats
  const CodeRange<Vec> range = code_range<Vec>(0.0f, static_cast<float>(nmax));
  for (int step = 0; step <= search.steps; ++step) {
    const float shift = search.rmin + search.rdelta * static_cast<float>(step);
    Vec iscale[R], sum_l[R], sum_l2[R], sum_xl[R];
    VecI small = VecI{} - 1;
    int clamps = 0;
    for (int r = 0; r < R; ++r) {
      // `min` is each lane's latest accepted offset, as in ggml's loop.
      iscale[r] = (shift + fnmax) / (max[r] - min[r]);
      const Vec above = abs_of(max[r] - min[r]), below = abs_of(low[r] - min[r]);
      small &= small_lanes(abs_of(iscale[r]) * (above > below ? above : below), flat[r]);
      // t = iscale * (x - min) is monotonic in x, so its extremes are at x = low and x = max.
      const Vec t_low = iscale[r] * (low[r] - min[r]), t_max = iscale[r] * (max[r] - min[r]);
      clamps |= clamps_needed(t_low < t_max ? t_low : t_max, t_low < t_max ? t_max : t_low, range, flat[r]);
      sum_l[r] = Vec{};
      sum_l2[r] = Vec{};
      sum_xl[r] = Vec{};
    }
    if (all_lanes(small)) {
      // Leaving out the clamps that cannot change a code: 1.1x on Q4_K and Q5_K (sub-blocks of
      // 32), where many grids need neither; 0.9x on Q2_K (16), whose shorter loops pay more
      // for the branch than they save.
      if constexpr (N != 32) clamps = kClampLow | kClampHigh;
      switch (clamps) {
        case 0: offset_codes<Rounding, false, false, N, R>(X, iscale, min, range, candidate_f); break;
        case kClampLow: offset_codes<Rounding, true, false, N, R>(X, iscale, min, range, candidate_f); break;
        case kClampHigh: offset_codes<Rounding, false, true, N, R>(X, iscale, min, range, candidate_f); break;
        default: offset_codes<Rounding, true, true, N, R>(X, iscale, min, range, candidate_f); break;
      }
    } else {
      for (int i = 0; i < N; ++i) {
        for (int r = 0; r < R; ++r) {
          candidate_f[r][i] = to_float(clamp(nearest_int(iscale[r] * (X[r][i] - min[r])), 0, nmax));
        }
      }
    }
    for (int i = 0; i < N; ++i) {
      for (int r = 0; r < R; ++r) {
        const Vec l = candidate_f[r][i];
        const Vec wl = W[r][i] * l;
        sum_l[r] = sum_l[r] + wl;
        sum_l2[r] = sum_l2[r] + wl * l;
        sum_xl[r] = sum_xl[r] + wl * X[r][i];
      }
    }
    Vec this_scale[R], this_min[R], det[R], error[R];
    for (int r = 0; r < R; ++r) {
      det[r] = sum_w[r] * sum_l2[r] - sum_l[r] * sum_l[r];
      this_scale[r] = (sum_w[r] * sum_xl[r] - sum_x[r] * sum_l[r]) / det[r];
      this_min[r] = (sum_l2[r] * sum_x[r] - sum_l[r] * sum_xl[r]) / det[r];
      const VecI positive_min = this_min[r] > 0.0f;
      this_min[r] = positive_min ? Vec{} : this_min[r];
      this_scale[r] = positive_min ? sum_xl[r] / sum_l2[r] : this_scale[r];
      error[r] = Vec{};
    }
    for (int i = 0; i < N; ++i) {
      for (int r = 0; r < R; ++r) {
        const Vec diff = this_scale[r] * candidate_f[r][i] + this_min[r] - X[r][i];
        error[r] = error[r] + W[r][i] * error_term<kAbsolute>(diff);
      }
    }
    for (int r = 0; r < R; ++r) {
      // Lanes where the scalar search would not have taken this candidate keep what they have
      // (the values computed for them here, from a det <= 0, are discarded unread).
      const VecI better = (det[r] > 0.0f) & (error[r] < best[r]) & ~flat[r];
      code_iscale[r] = better ? iscale[r] : code_iscale[r];
      code_min[r] = better ? min[r] : code_min[r];  // the offset the candidate was computed from
      best[r] = better ? error[r] : best[r];
      scale[r] = better ? this_scale[r] : scale[r];
      min[r] = better ? this_min[r] : min[r];
    }
  }
  for (int r = 0; r < R; ++r) {
    grid[r] = flat[r] ? Vec{} : code_iscale[r];  // 0 * (x - min) = 0: codes 0, as ggml's flat ones
    grid_min[r] = code_min[r];
    neg_offset[r] = -min[r];
    scale_out[r] = flat[r] ? Vec{} : scale[r];
  }
}

// Q4_K's and Q5_K's eight sub-blocks of 32 of the super-block at x in lanes (X[i] lane j =
// sub-block j's element i), and their weights as search_scale_min_sub_blocks() computes them:
// av_x + |x| with av_x = sqrt(mean of x^2), correctly rounded (__builtin_sqrtf: sqrtss, as
// sqrt_rn; std::sqrt would be a shared inline function).
WQ_LANES_INLINE void load_scale_min_sub_blocks(const float* x, V* X, V* W) {
  constexpr int n = 32;
  load_sub_blocks<n>(x, n, X);
  V sum_x2 = V{};
  for (int i = 0; i < n; ++i) sum_x2 = sum_x2 + X[i] * X[i];
  const V mean = sum_x2 / 32.0f;
  V av_x;
  for (int j = 0; j < kLanes; ++j) av_x[j] = __builtin_sqrtf(mean[j]);
  for (int i = 0; i < n; ++i) W[i] = av_x + abs_of(X[i]);
}

// V16 read from any float address, as one instruction.
typedef float UnalignedV16 __attribute__((vector_size(64), aligned(4), may_alias));

// Sixteen rows of sixteen lanes transposed (X[i] lane j = row j's lane i), for the AVX-512
// unit: within each 128-bit block the unpacks of the 8x8 transpose (two stages), then the
// blocks put in place by two stages of 128-bit block shuffles (vshuff32x4), 64 shuffles in all.
// Built from two 8x8 transposes and a join it was 112 shuffles (Q3_K 1.01-1.03x in cache with
// this one, Zen 5: the loads, not the shuffles, were most of that line's samples). Only data
// moves.
WQ_LANES_INLINE void transpose16(const V16* m, V16* X) {
  V16 t[16], s[16];
  for (int k = 0; k < 8; ++k) {
    t[2 * k] = __builtin_shufflevector(m[2 * k], m[2 * k + 1], 0, 16, 1, 17, 4, 20, 5, 21, 8, 24, 9, 25, 12, 28, 13,
                                       29);
    t[2 * k + 1] = __builtin_shufflevector(m[2 * k], m[2 * k + 1], 2, 18, 3, 19, 6, 22, 7, 23, 10, 26, 11, 27, 14,
                                           30, 15, 31);
  }
  // s[4k + c], block b: rows 4k..4k+3 of column 4b + c.
  for (int k = 0; k < 4; ++k) {
    for (int h = 0; h < 2; ++h) {
      const V16 a = t[4 * k + h], b = t[4 * k + h + 2];
      s[4 * k + 2 * h] = __builtin_shufflevector(a, b, 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29);
      s[4 * k + 2 * h + 1] = __builtin_shufflevector(a, b, 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30,
                                                     31);
    }
  }
  // The row-quarter k of column 4b + c is block b of s[4k + c]; gather the four quarters.
  for (int c = 0; c < 4; ++c) {
    const V16 a = s[c], b = s[4 + c], cc = s[8 + c], d = s[12 + c];
    const V16 p = __builtin_shufflevector(a, b, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27);
    const V16 q = __builtin_shufflevector(a, b, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
    const V16 r = __builtin_shufflevector(cc, d, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27);
    const V16 u = __builtin_shufflevector(cc, d, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
    X[c] = __builtin_shufflevector(p, r, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27);
    X[8 + c] = __builtin_shufflevector(p, r, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
    X[4 + c] = __builtin_shufflevector(q, u, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27);
    X[12 + c] = __builtin_shufflevector(q, u, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
  }
}

// Sixteen sub-blocks of 16 elements, consecutive from x, into sixteen-lane registers (X[i] lane
// j = sub-block j's element i): Q2_K's, Q3_K's and Q6_K's super-block layout.
WQ_LANES_INLINE void load_sub_blocks16(const float* x, V16* X) {
  V16 m[16];
  for (int j = 0; j < 16; ++j) m[j] = *reinterpret_cast<const UnalignedV16*>(x + 16 * j);
  transpose16(m, X);
}

// Two registers of eight lanes side by side in one of sixteen (a's lanes first).
WQ_LANES_INLINE V16 join_lanes(V a, V b) {
  return __builtin_shufflevector(a, b, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}

// signed_extreme() in every lane, spelled as the codec's loop: the element of largest magnitude
// with its sign (the first of equal magnitudes), and that magnitude. NaNs never win.
template <typename Vec>
WQ_LANES_INLINE Vec signed_extreme_scan_lanes(const Vec* X, int n, Vec* amax_out) {
  Vec amax = Vec{}, max = Vec{};
  for (int i = 0; i < n; ++i) {
    const Vec ax = abs_of(X[i]);
    const IntOf<Vec> larger = ax > amax;
    amax = larger ? ax : amax;
    max = larger ? X[i] : max;
  }
  *amax_out = amax;
  return max;
}

// The same from the largest and the smallest element (each from +0, NaNs skipped as the loop
// skips them): the largest magnitude is one of the two, and the loop's answer is the one that
// attains it, unless both do (+a and -a), where only the order tells which came first; a
// register with such a lane is scanned again by the loop. The loop's answer is a chain of a
// compare and two blends per element, and the search waits on it before it can start: for Q3_K,
// whose sub-block fits start with it, this spelling was 1.08-1.16x (Q6_K 1.03-1.06x in cache;
// Zen 5).
// (A lane of zeros and NaNs: high = -low = +0, and the loop's +0 is high.)
template <typename Vec>
WQ_LANES_INLINE Vec signed_extreme_lanes(const Vec* X, int n, Vec* amax_out) {
  Vec high = Vec{}, low = Vec{};
  for (int i = 0; i < n; ++i) {
    high = X[i] > high ? X[i] : high;
    low = X[i] < low ? X[i] : low;
  }
  const Vec negated = Vec{} - low;
  if (any_lane((negated == high) & (high != 0.0f))) return signed_extreme_scan_lanes(X, n, amax_out);
  const IntOf<Vec> negative = negated > high;
  *amax_out = negative ? negated : high;
  return negative ? low : high;
}

// The sums of one candidate grid of fit_symmetric_x2_lanes(), with the clamps it may need.
template <typename Rounding, bool kLow, bool kHigh, int R, typename Vec>
WQ_LANES_INLINE void symmetric_grid_sums(const Vec (*X)[16], const Vec (*w)[16], const Vec (*wx)[16], const Vec* iscale,
                                         const CodeRange<Vec>& range, Vec* sumlx, Vec* suml2) {
  for (int i = 0; i < 16; ++i) {
    for (int r = 0; r < R; ++r) {
      const Vec l = rounded_code<Rounding, kLow, kHigh>(iscale[r] * X[r][i], range);
      sumlx[r] = sumlx[r] + wx[r][i] * l;
      suml2[r] = suml2[r] + w[r][i] * l * l;
    }
  }
}

// Which clamps Q6_K's grid `is` can need (nmax 32: codes -32..31; is = -10 stands for the first
// grid, c = 32), known before the data. With c = 32 + 0.1 is, |iscale| <= c / |max| (1 + u) and
// every |t| = |iscale * x| <= c (1 + u)^2, u = 2^-24, since |x| <= |max| and each product rounds
// once. Rounding to nearest even gives -32 or more while t >= -32.5, and 31 or less while
// t < 31.5. So the low clamp can act only where c > 32.4 (is >= 5: c = 32.5 may reach -32.5 and
// round past it), the high one only where c > 31.4 (is >= -5: c = 31.5 rounds to 32; and the
// first grid). Fourteen of the twenty grids skip a clamp, four of them both: 1.13-1.2x on Q6_K.
// Lanes that are not all `small` take the integer path, which always clamps.
constexpr int q6_k_grid_clamps(int is) {
  return (is >= 5 ? kClampLow : 0) | (is >= -5 || is == -10 ? kClampHigh : 0);
}

// fit_symmetric_x2() (ggml's make_qx_quants, rmse_type 1) over 16 elements with nmax 32, lane j
// of round r on one sub-block, both rounds together (see fit_lanes): the scales to scale[r], and
// the grid (iscale) that the codes come from to grid[r], 0 for an all-zero sub-block. The codes
// themselves are not computed: Q6_K's finish codes nearly every sub-block again from its
// stored step, and computes the grid's codes only for the others (LaneGridCodes).
template <typename Rounding, int R, typename Vec>
WQ_LANES_INLINE void fit_symmetric_x2_lanes(const Vec (*X)[16], Vec* grid, Vec* scale_out) {
  using VecI = IntOf<Vec>;
  constexpr int n = 16, nmax = 32;
  Vec max[R], amax[R], scale[R] = {}, best[R] = {}, code_iscale[R] = {};
  VecI flat[R];
  Vec w[R][n], wx[R][n];  // x^2 and x^3 as the sums compute them, (x * x) * x
  Vec sumlx[R], suml2[R];
  const CodeRange<Vec> range = code_range<Vec>(static_cast<float>(-nmax), static_cast<float>(nmax - 1));
  for (int r = 0; r < R; ++r) {
    max[r] = signed_extreme_lanes(X[r], n, &amax[r]);
    flat[r] = amax[r] < kquant_ggml::kGroupMaxEps;
    for (int i = 0; i < n; ++i) {
      w[r][i] = X[r][i] * X[r][i];
      wx[r][i] = w[r][i] * X[r][i];
    }
  }
  for (int is = -10; is <= 9; ++is) {  // -10: the first grid, nmax itself; then the search
    if (is == 0) continue;
    Vec iscale[R];
    VecI small = VecI{} - 1;
    for (int r = 0; r < R; ++r) {
      iscale[r] = is == -10 ? static_cast<float>(-nmax) / max[r]
                            : -(static_cast<float>(nmax) + 0.1f * static_cast<float>(is)) / max[r];
      small &= small_lanes(abs_of(iscale[r]) * amax[r], flat[r]);
      sumlx[r] = Vec{};
      suml2[r] = Vec{};
    }
    if (all_lanes(small)) {
      switch (q6_k_grid_clamps(is)) {  // the same sequence for every sub-block: predicted
        case 0: symmetric_grid_sums<Rounding, false, false, R>(X, w, wx, iscale, range, sumlx, suml2); break;
        case kClampHigh: symmetric_grid_sums<Rounding, false, true, R>(X, w, wx, iscale, range, sumlx, suml2); break;
        default: symmetric_grid_sums<Rounding, true, true, R>(X, w, wx, iscale, range, sumlx, suml2); break;
      }
    } else {
      for (int i = 0; i < n; ++i) {
        for (int r = 0; r < R; ++r) {
          const Vec l = to_float(clamp(nearest_int(iscale[r] * X[r][i]), -nmax, nmax - 1));
          sumlx[r] = sumlx[r] + wx[r][i] * l;
          suml2[r] = suml2[r] + w[r][i] * l * l;
        }
      }
    }
    for (int r = 0; r < R; ++r) {
      if (is == -10) {
        code_iscale[r] = iscale[r];
        scale[r] = suml2[r] != 0.0f ? sumlx[r] / suml2[r] : Vec{};
        best[r] = scale[r] * sumlx[r];
        continue;
      }
      const VecI take = (suml2[r] > 0.0f) & (sumlx[r] * sumlx[r] > best[r] * suml2[r]) & ~flat[r];
      code_iscale[r] = take ? iscale[r] : code_iscale[r];
      scale[r] = take ? sumlx[r] / suml2[r] : scale[r];
      best[r] = take ? scale[r] * sumlx[r] : best[r];
    }
  }
  for (int r = 0; r < R; ++r) {
    grid[r] = flat[r] ? Vec{} : code_iscale[r];  // a grid of a sub-block that is not flat is not 0
    scale_out[r] = flat[r] ? Vec{} : scale[r];
  }
}

}  // namespace
}  // namespace wq::detail
