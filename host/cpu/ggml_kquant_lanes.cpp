#include "cpu/ggml_kquant_lanes.h"

#include <cmath>
#include <cstdint>
#include <cstring>

#include "cpu/cpu_features.h"
#include "wq/codec/ggml_kquants.h"

namespace wq::detail {
namespace {

namespace ggml = codec::ggml;

// Eight lanes: sub-block j of the super-block in lane j. GCC/Clang vector extensions, compiled
// twice below (AVX2, and the baseline target as pairs of SSE registers). No fast-math and
// -ffp-contract=off: each operation rounds on its own, as the codec's mul_rn/add_rn do.
typedef float V __attribute__((vector_size(32)));
typedef std::int32_t VI __attribute__((vector_size(32)));

constexpr int kSub = 32;  // elements per sub-block of Q4_K/Q5_K (16 for Q2_K and Q6_K)
constexpr int kLanes = 8;  // sub-blocks searched at once

#define WQ_LANES_INLINE inline __attribute__((always_inline))

WQ_LANES_INLINE VI bits_of(V v) {
  VI b;
  std::memcpy(&b, &v, sizeof b);
  return b;
}

// codec::ggml::nearest_int() in every lane: the same addition, the same bits.
WQ_LANES_INLINE VI nearest_int(V f) { return (bits_of(f + 12582912.0f) & 0x007fffff) - 0x00400000; }

WQ_LANES_INLINE VI clamp(VI v, int lo, int hi) {
  v = v < lo ? VI{} + lo : v;
  return v > hi ? VI{} + hi : v;
}

WQ_LANES_INLINE V to_float(VI v) { return __builtin_convertvector(v, V); }

WQ_LANES_INLINE V abs_of(V v) {
  const VI magnitude = bits_of(v) & 0x7fffffff;  // abs_f32: the sign bit cleared
  V out;
  std::memcpy(&out, &magnitude, sizeof out);
  return out;
}

// codec::ggml::error_term(): squared or absolute.
template <bool kAbsolute>
WQ_LANES_INLINE V error_term(V diff) {
  if constexpr (kAbsolute) {
    return abs_of(diff);
  } else {
    return diff * diff;
  }
}

// fit_scale_and_offset() (ggml's make_qkx2_quants) over N elements, lane j on sub-block j: X[i],
// W[i] hold element i and its weight of every sub-block. Writes the codes to L[i] and returns
// each lane's scale, and -min in *neg_offset.
template <int N, bool kAbsolute>
WQ_LANES_INLINE V fit_lanes(const V* X, const V* W, int nmax, ggml::OffsetSearch search, VI* L, V* neg_offset) {
  V min = X[0], max = X[0];
  V sum_w = W[0];
  V sum_x = sum_w * X[0];
  for (int i = 1; i < N; ++i) {
    min = X[i] < min ? X[i] : min;
    max = X[i] > max ? X[i] : max;
    sum_w = sum_w + W[i];
    sum_x = sum_x + W[i] * X[i];
  }
  min = min > 0.0f ? V{} : min;
  const VI flat = max == min;  // the scalar search returns here: codes 0, scale 0
  const V fnmax = V{} + static_cast<float>(nmax);
  V iscale = fnmax / (max - min);
  V scale = 1.0f / iscale;
  V best = V{};
  for (int i = 0; i < N; ++i) {
    L[i] = clamp(nearest_int(iscale * (X[i] - min)), 0, nmax);
    const V diff = scale * to_float(L[i]) + min - X[i];
    best = best + W[i] * error_term<kAbsolute>(diff);
  }
  VI candidate[N];
  V candidate_f[N];  // the same codes as floats, converted once per step
  for (int step = 0; step <= search.steps; ++step) {
    // `min` is each lane's latest accepted offset, as in ggml's loop.
    iscale = (search.rmin + search.rdelta * static_cast<float>(step) + fnmax) / (max - min);
    V sum_l = V{}, sum_l2 = V{}, sum_xl = V{};
    for (int i = 0; i < N; ++i) {
      candidate[i] = clamp(nearest_int(iscale * (X[i] - min)), 0, nmax);
      const V l = to_float(candidate[i]);
      candidate_f[i] = l;
      const V wl = W[i] * l;
      sum_l = sum_l + wl;
      sum_l2 = sum_l2 + wl * l;
      sum_xl = sum_xl + wl * X[i];
    }
    const V det = sum_w * sum_l2 - sum_l * sum_l;
    V this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
    V this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
    const VI positive_min = this_min > 0.0f;
    this_min = positive_min ? V{} : this_min;
    this_scale = positive_min ? sum_xl / sum_l2 : this_scale;
    V error = V{};
    for (int i = 0; i < N; ++i) {
      const V diff = this_scale * candidate_f[i] + this_min - X[i];
      error = error + W[i] * error_term<kAbsolute>(diff);
    }
    // Lanes where the scalar search would not have taken this candidate keep what they have
    // (the values computed for them here, from a det <= 0, are discarded unread).
    const VI better = (det > 0.0f) & (error < best) & ~flat;
    for (int i = 0; i < N; ++i) L[i] = better ? candidate[i] : L[i];
    best = better ? error : best;
    scale = better ? this_scale : scale;
    min = better ? this_min : min;
  }
  for (int i = 0; i < N; ++i) L[i] = flat ? VI{} : L[i];
  *neg_offset = -min;
  return flat ? V{} : scale;
}

// search_scale_min_sub_blocks() with the eight searches in lanes.
WQ_LANES_INLINE void search_lanes(const float* x, int nmax, ggml::OffsetSearch search, float* scales, float* mins,
                                  std::uint8_t* codes) {
  V X[kSub], W[kSub];
  for (int i = 0; i < kSub; ++i) {
    for (int j = 0; j < kLanes; ++j) X[i][j] = x[kSub * j + i];
  }
  V sum_x2 = V{};
  for (int i = 0; i < kSub; ++i) sum_x2 = sum_x2 + X[i] * X[i];
  const V mean = sum_x2 / 32.0f;
  V av_x;
  for (int j = 0; j < kLanes; ++j) av_x[j] = std::sqrt(mean[j]);  // correctly rounded, as sqrt_rn
  for (int i = 0; i < kSub; ++i) W[i] = av_x + abs_of(X[i]);
  VI L[kSub];
  V neg_offset;
  const V scale = fit_lanes<kSub, false>(X, W, nmax, search, L, &neg_offset);
  for (int j = 0; j < kLanes; ++j) {
    scales[j] = scale[j];
    mins[j] = neg_offset[j];
    for (int i = 0; i < kSub; ++i) codes[kSub * j + i] = static_cast<std::uint8_t>(L[i][j]);
  }
}

// Sixteen sub-blocks of 16 in two rounds of eight lanes (round r's lane j is sub-block 8r + j):
// `fit(X, L, &neg_offset)` fits the lanes and returns their scales; `mins` may be null. The fits
// are structs with always-inline calls, not lambdas: a lambda is its own function, compiled
// without the caller's AVX2 target, and 32-byte vectors would cross that call in different
// registers on each side.
template <typename Code, typename Fit>
WQ_LANES_INLINE void search_sixteen_sub_blocks(const float* x, const Fit& fit, float* scales, float* mins,
                                               Code* codes) {
  constexpr int n = 16;
  for (int round = 0; round < 2; ++round) {
    const float* xr = x + n * kLanes * round;
    V X[n];
    for (int i = 0; i < n; ++i) {
      for (int j = 0; j < kLanes; ++j) X[i][j] = xr[n * j + i];
    }
    VI L[n];
    V neg_offset{};
    const V scale = fit(X, L, &neg_offset);
    for (int j = 0; j < kLanes; ++j) {
      scales[kLanes * round + j] = scale[j];
      if (mins != nullptr) mins[kLanes * round + j] = neg_offset[j];
      for (int i = 0; i < n; ++i) codes[n * (kLanes * round + j) + i] = static_cast<Code>(L[i][j]);
    }
  }
}

// search_q2_k_sub_blocks(): weights |x|, absolute error.
struct FitQ2K {
  WQ_LANES_INLINE V operator()(const V* X, VI* L, V* neg_offset) const {
    V W[16];
    for (int i = 0; i < 16; ++i) W[i] = abs_of(X[i]);
    return fit_lanes<16, true>(X, W, 3, ggml::q2_k_search(), L, neg_offset);
  }
};

WQ_LANES_INLINE void search_q2_k_lanes(const float* x, float* scales, float* mins, std::uint8_t* codes) {
  search_sixteen_sub_blocks(x, FitQ2K{}, scales, mins, codes);
}

// signed_extreme() in every lane: the element of largest magnitude with its sign (the first of
// equal magnitudes), and that magnitude.
WQ_LANES_INLINE V signed_extreme_lanes(const V* X, int n, V* amax_out) {
  V amax = V{}, max = V{};
  for (int i = 0; i < n; ++i) {
    const V ax = abs_of(X[i]);
    const VI larger = ax > amax;
    amax = larger ? ax : amax;
    max = larger ? X[i] : max;
  }
  *amax_out = amax;
  return max;
}

// The codes of one candidate grid (l - nmax, clamped) and its sums with weights x^2. (A function,
// not a lambda: see search_sixteen_sub_blocks.)
template <int n, int nmax>
WQ_LANES_INLINE void x2_grid_sums(const V* X, V iscale, VI* codes, V* sumlx, V* suml2) {
  *sumlx = V{};
  *suml2 = V{};
  for (int i = 0; i < n; ++i) {
    codes[i] = clamp(nearest_int(iscale * X[i]), -nmax, nmax - 1);
    const V l = to_float(codes[i]);
    const V w = X[i] * X[i];
    *sumlx = *sumlx + w * X[i] * l;
    *suml2 = *suml2 + w * l * l;
  }
}

// fit_symmetric_x2() (ggml's make_qx_quants, rmse_type 1) over 16 elements with nmax 32, lane j
// on sub-block j: codes 0..63 to L[i]; returns the scales.
WQ_LANES_INLINE V fit_symmetric_x2_lanes(const V* X, VI* L) {
  constexpr int n = 16, nmax = 32;
  V amax;
  const V max = signed_extreme_lanes(X, n, &amax);
  const VI flat = amax < ggml::kGroupMaxEps;
  VI codes[n];
  V sumlx, suml2;
  x2_grid_sums<n, nmax>(X, static_cast<float>(-nmax) / max, codes, &sumlx, &suml2);
  for (int i = 0; i < n; ++i) L[i] = codes[i] + nmax;
  V scale = suml2 != 0.0f ? sumlx / suml2 : V{};
  V best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    x2_grid_sums<n, nmax>(X, -(static_cast<float>(nmax) + 0.1f * static_cast<float>(is)) / max, codes, &sumlx, &suml2);
    const VI take = (suml2 > 0.0f) & (sumlx * sumlx > best * suml2) & ~flat;
    for (int i = 0; i < n; ++i) L[i] = take ? codes[i] + nmax : L[i];
    scale = take ? sumlx / suml2 : scale;
    best = take ? scale * sumlx : best;
  }
  for (int i = 0; i < n; ++i) L[i] = flat ? VI{} : L[i];
  return flat ? V{} : scale;
}

// search_q6_k_sub_blocks().
struct FitQ6K {
  WQ_LANES_INLINE V operator()(const V* X, VI* L, V*) const { return fit_symmetric_x2_lanes(X, L); }
};

WQ_LANES_INLINE void search_q6_k_lanes(const float* x, float* scales, std::int8_t* codes) {
  search_sixteen_sub_blocks(x, FitQ6K{}, scales, static_cast<float*>(nullptr), codes);
}

// fit_symmetric_refined() (ggml's make_q3_quants with its rmse refinement) over 16 elements with
// nmax 4, lane j on sub-block j: codes 0..7 to L[i]; returns the scales. The refinement walks
// the elements in order and each accepted change moves the sums the next element sees; every
// lane does that on its own. A lane whose pass changed nothing would change nothing in another
// (its state is the same), so lanes run passes until none changes, at most five, as ggml does.
WQ_LANES_INLINE V fit_symmetric_refined_lanes(const V* X, VI* L) {
  constexpr int n = 16, nmax = 4;
  V amax;
  const V max = signed_extreme_lanes(X, n, &amax);
  const VI flat = amax < ggml::kGroupMaxEps;
  const V iscale = static_cast<float>(-nmax) / max;
  V sumlx = V{}, suml2 = V{};
  for (int i = 0; i < n; ++i) {
    L[i] = clamp(nearest_int(iscale * X[i]), -nmax, nmax - 1);
    const V l = to_float(L[i]);
    const V w = X[i] * X[i];
    sumlx = sumlx + w * X[i] * l;
    suml2 = suml2 + w * l * l;
  }
  for (int pass = 0; pass < 5; ++pass) {
    VI changed = VI{};
    for (int i = 0; i < n; ++i) {
      const V w = X[i] * X[i];
      const V li = to_float(L[i]);
      V slx = sumlx - w * X[i] * li;
      const VI positive = slx > 0.0f;
      V sl2 = suml2 - w * li * li;
      const VI new_l = clamp(nearest_int(X[i] * sl2 / slx), -nmax, nmax - 1);
      const V nl = to_float(new_l);
      slx = slx + w * X[i] * nl;
      sl2 = sl2 + w * nl * nl;
      const VI take = positive & (new_l != L[i]) & (sl2 > 0.0f) & (slx * slx * suml2 > sumlx * sumlx * sl2) & ~flat;
      L[i] = take ? new_l : L[i];
      sumlx = take ? slx : sumlx;
      suml2 = take ? sl2 : suml2;
      changed |= take;
    }
    bool any = false;
    for (int j = 0; j < kLanes; ++j) any = any || changed[j] != 0;
    if (!any) break;
  }
  for (int i = 0; i < n; ++i) L[i] = flat ? VI{} : L[i] + nmax;
  return flat ? V{} : (suml2 > 0.0f ? sumlx / suml2 : V{});
}

// search_q3_k_sub_blocks().
struct FitQ3K {
  WQ_LANES_INLINE V operator()(const V* X, VI* L, V*) const { return fit_symmetric_refined_lanes(X, L); }
};

WQ_LANES_INLINE void search_q3_k_lanes(const float* x, float* scales, std::int8_t* codes) {
  search_sixteen_sub_blocks(x, FitQ3K{}, scales, static_cast<float*>(nullptr), codes);
}

WQ_LANES_INLINE void quantize_lanes(const float* x, ggml::BlockQ3_K* y) {
  std::int8_t L[ggml::kSuperBlock];
  float scales[16];
  search_q3_k_lanes(x, scales, L);
  ggml::finish_q3_k(x, scales, L, y);
}

WQ_LANES_INLINE void quantize_lanes(const float* x, ggml::BlockQ2_K* y) {
  std::uint8_t L[ggml::kSuperBlock];
  float scales[16], mins[16];
  search_q2_k_lanes(x, scales, mins, L);
  ggml::finish_q2_k(x, scales, mins, L, y);
}

WQ_LANES_INLINE void quantize_lanes(const float* x, ggml::BlockQ6_K* y) {
  std::int8_t L[ggml::kSuperBlock];
  float scales[16];
  search_q6_k_lanes(x, scales, L);
  ggml::finish_q6_k(x, scales, L, y);
}

template <typename Block>
WQ_LANES_INLINE void quantize_lanes(const float* x, Block* y) {
  constexpr bool q4 = sizeof(Block) == sizeof(ggml::BlockQ4_K);
  constexpr int nmax = q4 ? ggml::kQ4KMax : ggml::kQ5KMax;
  std::uint8_t L[ggml::kSuperBlock];
  float scales[kLanes], mins[kLanes];
  search_lanes(x, nmax, q4 ? ggml::q4_k_search() : ggml::q5_k_search(), scales, mins, L);
  ggml::finish_scale_min_super_block(x, nmax, scales, mins, &y->d, &y->dmin, y->scales, L);
  if constexpr (q4) {
    ggml::pack_q4_k_codes(L, y);
  } else {
    ggml::pack_q5_k_codes(L, y);
  }
}

template <typename Block>
__attribute__((target("avx2"))) void quantize_avx2(const float* x, Block* y) {
  quantize_lanes(x, y);
}

template <typename Block>
void quantize_baseline(const float* x, Block* y) {
  quantize_lanes(x, y);
}

}  // namespace

void quantize_q4_k_lanes(const float* x, ggml::BlockQ4_K* y) {
  use_avx2() ? quantize_avx2(x, y) : quantize_baseline(x, y);
}

void quantize_q5_k_lanes(const float* x, ggml::BlockQ5_K* y) {
  use_avx2() ? quantize_avx2(x, y) : quantize_baseline(x, y);
}

void quantize_q2_k_lanes(const float* x, ggml::BlockQ2_K* y) {
  use_avx2() ? quantize_avx2(x, y) : quantize_baseline(x, y);
}

void quantize_q6_k_lanes(const float* x, ggml::BlockQ6_K* y) {
  use_avx2() ? quantize_avx2(x, y) : quantize_baseline(x, y);
}

void quantize_q3_k_lanes(const float* x, ggml::BlockQ3_K* y) {
  use_avx2() ? quantize_avx2(x, y) : quantize_baseline(x, y);
}

}  // namespace wq::detail
