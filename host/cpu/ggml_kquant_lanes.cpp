#include "cpu/ggml_kquant_lanes.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

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

// fit_scale_and_offset() (ggml's make_qkx2_quants) over N elements, lane j of round r on one
// sub-block: X[r][i], W[r][i] hold element i and its weight of every sub-block of round r.
// Writes the codes to L[r][i] and returns each lane's scale in scale[r], and -min in
// neg_offset[r]. Each candidate step is a chain (sums in element order, a division, the error
// in element order, the choice) that the next step's offset depends on, so with R > 1 the
// rounds' registers go through every step together and the core interleaves their chains.
template <int N, int R, bool kAbsolute>
WQ_LANES_INLINE void fit_lanes(const V (*X)[N], const V (*W)[N], int nmax, ggml::OffsetSearch search, VI (*L)[N],
                               V* scale_out, V* neg_offset) {
  V min[R], max[R], sum_w[R], sum_x[R], scale[R], best[R];
  VI flat[R];
  const V fnmax = V{} + static_cast<float>(nmax);
  for (int r = 0; r < R; ++r) {
    min[r] = X[r][0];
    max[r] = X[r][0];
    sum_w[r] = W[r][0];
    sum_x[r] = sum_w[r] * X[r][0];
    for (int i = 1; i < N; ++i) {
      min[r] = X[r][i] < min[r] ? X[r][i] : min[r];
      max[r] = X[r][i] > max[r] ? X[r][i] : max[r];
      sum_w[r] = sum_w[r] + W[r][i];
      sum_x[r] = sum_x[r] + W[r][i] * X[r][i];
    }
    min[r] = min[r] > 0.0f ? V{} : min[r];
    flat[r] = max[r] == min[r];  // the scalar search returns here: codes 0, scale 0
    const V iscale = fnmax / (max[r] - min[r]);
    scale[r] = 1.0f / iscale;
    best[r] = V{};
    for (int i = 0; i < N; ++i) {
      L[r][i] = clamp(nearest_int(iscale * (X[r][i] - min[r])), 0, nmax);
      const V diff = scale[r] * to_float(L[r][i]) + min[r] - X[r][i];
      best[r] = best[r] + W[r][i] * error_term<kAbsolute>(diff);
    }
  }
  VI candidate[R][N];
  V candidate_f[R][N];  // the same codes as floats, converted once per step
  for (int step = 0; step <= search.steps; ++step) {
    const float shift = search.rmin + search.rdelta * static_cast<float>(step);
    V iscale[R], sum_l[R], sum_l2[R], sum_xl[R];
    for (int r = 0; r < R; ++r) {
      // `min` is each lane's latest accepted offset, as in ggml's loop.
      iscale[r] = (shift + fnmax) / (max[r] - min[r]);
      sum_l[r] = V{};
      sum_l2[r] = V{};
      sum_xl[r] = V{};
    }
    for (int i = 0; i < N; ++i) {
      for (int r = 0; r < R; ++r) {
        candidate[r][i] = clamp(nearest_int(iscale[r] * (X[r][i] - min[r])), 0, nmax);
        const V l = to_float(candidate[r][i]);
        candidate_f[r][i] = l;
        const V wl = W[r][i] * l;
        sum_l[r] = sum_l[r] + wl;
        sum_l2[r] = sum_l2[r] + wl * l;
        sum_xl[r] = sum_xl[r] + wl * X[r][i];
      }
    }
    V this_scale[R], this_min[R], det[R], error[R];
    for (int r = 0; r < R; ++r) {
      det[r] = sum_w[r] * sum_l2[r] - sum_l[r] * sum_l[r];
      this_scale[r] = (sum_w[r] * sum_xl[r] - sum_x[r] * sum_l[r]) / det[r];
      this_min[r] = (sum_l2[r] * sum_x[r] - sum_l[r] * sum_xl[r]) / det[r];
      const VI positive_min = this_min[r] > 0.0f;
      this_min[r] = positive_min ? V{} : this_min[r];
      this_scale[r] = positive_min ? sum_xl[r] / sum_l2[r] : this_scale[r];
      error[r] = V{};
    }
    for (int i = 0; i < N; ++i) {
      for (int r = 0; r < R; ++r) {
        const V diff = this_scale[r] * candidate_f[r][i] + this_min[r] - X[r][i];
        error[r] = error[r] + W[r][i] * error_term<kAbsolute>(diff);
      }
    }
    for (int r = 0; r < R; ++r) {
      // Lanes where the scalar search would not have taken this candidate keep what they have
      // (the values computed for them here, from a det <= 0, are discarded unread).
      const VI better = (det[r] > 0.0f) & (error[r] < best[r]) & ~flat[r];
      for (int i = 0; i < N; ++i) L[r][i] = better ? candidate[r][i] : L[r][i];
      best[r] = better ? error[r] : best[r];
      scale[r] = better ? this_scale[r] : scale[r];
      min[r] = better ? this_min[r] : min[r];
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int i = 0; i < N; ++i) L[r][i] = flat[r] ? VI{} : L[r][i];
    neg_offset[r] = -min[r];
    scale_out[r] = flat[r] ? V{} : scale[r];
  }
}

// search_scale_min_sub_blocks() of R consecutive super-blocks, fitted together: round r's lane j
// is sub-block j of super-block r.
template <int R>
WQ_LANES_INLINE void search_lanes(const float* x, int nmax, ggml::OffsetSearch search, float* scales, float* mins,
                                  std::uint8_t* codes) {
  V X[R][kSub], W[R][kSub];
  for (int r = 0; r < R; ++r) {
    for (int i = 0; i < kSub; ++i) {
      for (int j = 0; j < kLanes; ++j) X[r][i][j] = x[ggml::kSuperBlock * r + kSub * j + i];
    }
    V sum_x2 = V{};
    for (int i = 0; i < kSub; ++i) sum_x2 = sum_x2 + X[r][i] * X[r][i];
    const V mean = sum_x2 / 32.0f;
    V av_x;
    for (int j = 0; j < kLanes; ++j) av_x[j] = std::sqrt(mean[j]);  // correctly rounded, as sqrt_rn
    for (int i = 0; i < kSub; ++i) W[r][i] = av_x + abs_of(X[r][i]);
  }
  VI L[R][kSub];
  V scale[R], neg_offset[R];
  fit_lanes<kSub, R, false>(X, W, nmax, search, L, scale, neg_offset);
  for (int r = 0; r < R; ++r) {
    for (int j = 0; j < kLanes; ++j) {
      scales[kLanes * r + j] = scale[r][j];
      mins[kLanes * r + j] = neg_offset[r][j];
      for (int i = 0; i < kSub; ++i) codes[ggml::kSuperBlock * r + kSub * j + i] = static_cast<std::uint8_t>(L[r][i][j]);
    }
  }
}

// Sixteen sub-blocks of 16 in two rounds of eight lanes (round r's lane j is sub-block 8r + j),
// fitted together: `fit(X, L, scale, neg_offset)` fits both rounds' lanes; `mins` may be null.
// The fits are structs with always-inline calls, not lambdas: a lambda is its own function,
// compiled without the caller's AVX2 target, and 32-byte vectors would cross that call in
// different registers on each side.
template <typename Code, typename Fit>
WQ_LANES_INLINE void search_sixteen_sub_blocks(const float* x, const Fit& fit, float* scales, float* mins,
                                               Code* codes) {
  constexpr int n = 16;
  V X[2][n];
  for (int r = 0; r < 2; ++r) {
    for (int i = 0; i < n; ++i) {
      for (int j = 0; j < kLanes; ++j) X[r][i][j] = x[n * (kLanes * r + j) + i];
    }
  }
  VI L[2][n];
  V scale[2], neg_offset[2] = {};
  fit(X, L, scale, neg_offset);
  for (int r = 0; r < 2; ++r) {
    for (int j = 0; j < kLanes; ++j) {
      scales[kLanes * r + j] = scale[r][j];
      if (mins != nullptr) mins[kLanes * r + j] = neg_offset[r][j];
      for (int i = 0; i < n; ++i) codes[n * (kLanes * r + j) + i] = static_cast<Code>(L[r][i][j]);
    }
  }
}

// search_q2_k_sub_blocks(): weights |x|, absolute error.
struct FitQ2K {
  WQ_LANES_INLINE void operator()(const V (*X)[16], VI (*L)[16], V* scale, V* neg_offset) const {
    V W[2][16];
    for (int r = 0; r < 2; ++r) {
      for (int i = 0; i < 16; ++i) W[r][i] = abs_of(X[r][i]);
    }
    fit_lanes<16, 2, true>(X, W, 3, ggml::q2_k_search(), L, scale, neg_offset);
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

// fit_symmetric_x2() (ggml's make_qx_quants, rmse_type 1) over 16 elements with nmax 32, lane j
// of round r on one sub-block, both rounds together (see fit_lanes): codes 0..63 to L[r][i];
// the scales to scale[r].
WQ_LANES_INLINE void fit_symmetric_x2_lanes(const V (*X)[16], VI (*L)[16], V* scale_out) {
  constexpr int n = 16, nmax = 32, R = 2;
  V max[R], scale[R] = {}, best[R] = {};
  VI flat[R];
  VI codes[R][n];
  V sumlx[R], suml2[R];
  for (int r = 0; r < R; ++r) {
    V amax;
    max[r] = signed_extreme_lanes(X[r], n, &amax);
    flat[r] = amax < ggml::kGroupMaxEps;
  }
  for (int is = -10; is <= 9; ++is) {  // -10: the first grid, nmax itself; then the search
    if (is == 0) continue;
    for (int r = 0; r < R; ++r) {
      const V iscale = is == -10 ? static_cast<float>(-nmax) / max[r]
                                 : -(static_cast<float>(nmax) + 0.1f * static_cast<float>(is)) / max[r];
      sumlx[r] = V{};
      suml2[r] = V{};
      for (int i = 0; i < n; ++i) {
        codes[r][i] = clamp(nearest_int(iscale * X[r][i]), -nmax, nmax - 1);
        const V l = to_float(codes[r][i]);
        const V w = X[r][i] * X[r][i];
        sumlx[r] = sumlx[r] + w * X[r][i] * l;
        suml2[r] = suml2[r] + w * l * l;
      }
    }
    for (int r = 0; r < R; ++r) {
      if (is == -10) {
        for (int i = 0; i < n; ++i) L[r][i] = codes[r][i] + nmax;
        scale[r] = suml2[r] != 0.0f ? sumlx[r] / suml2[r] : V{};
        best[r] = scale[r] * sumlx[r];
        continue;
      }
      const VI take = (suml2[r] > 0.0f) & (sumlx[r] * sumlx[r] > best[r] * suml2[r]) & ~flat[r];
      for (int i = 0; i < n; ++i) L[r][i] = take ? codes[r][i] + nmax : L[r][i];
      scale[r] = take ? sumlx[r] / suml2[r] : scale[r];
      best[r] = take ? scale[r] * sumlx[r] : best[r];
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int i = 0; i < n; ++i) L[r][i] = flat[r] ? VI{} : L[r][i];
    scale_out[r] = flat[r] ? V{} : scale[r];
  }
}

// search_q6_k_sub_blocks().
struct FitQ6K {
  WQ_LANES_INLINE void operator()(const V (*X)[16], VI (*L)[16], V* scale, V*) const {
    fit_symmetric_x2_lanes(X, L, scale);
  }
};

WQ_LANES_INLINE void search_q6_k_lanes(const float* x, float* scales, std::int8_t* codes) {
  search_sixteen_sub_blocks(x, FitQ6K{}, scales, static_cast<float*>(nullptr), codes);
}

// fit_symmetric_refined() (ggml's make_q3_quants with its rmse refinement) over 16 elements with
// nmax 4, lane j of round r on sub-block 8r + j, both rounds of a super-block at once: codes 0..7
// to L[r][i]; returns the scales in scale[r]. The refinement walks the elements in order and each
// accepted change moves the sums the next element sees; every lane does that on its own. That
// makes each element's step a chain of dependent operations (a division among them) that one
// register of lanes waits on, so the two rounds' registers go through each step together and
// the core interleaves them (measured: 1.3x). A lane whose pass changed nothing would change
// nothing in another (its state is the same), so lanes run passes until none changes, at most
// five, as ggml does.
WQ_LANES_INLINE void fit_symmetric_refined_lanes(const V (*X)[16], VI (*L)[16], V* scale) {
  constexpr int n = 16, nmax = 4, kRounds = 2;
  VI flat[kRounds];
  V sumlx[kRounds], suml2[kRounds];
  for (int r = 0; r < kRounds; ++r) {
    V amax;
    const V max = signed_extreme_lanes(X[r], n, &amax);
    flat[r] = amax < ggml::kGroupMaxEps;
    const V iscale = static_cast<float>(-nmax) / max;
    sumlx[r] = V{};
    suml2[r] = V{};
    for (int i = 0; i < n; ++i) {
      L[r][i] = clamp(nearest_int(iscale * X[r][i]), -nmax, nmax - 1);
      const V l = to_float(L[r][i]);
      const V w = X[r][i] * X[r][i];
      sumlx[r] = sumlx[r] + w * X[r][i] * l;
      suml2[r] = suml2[r] + w * l * l;
    }
  }
  for (int pass = 0; pass < 5; ++pass) {
    VI changed = VI{};
    for (int i = 0; i < n; ++i) {
      for (int r = 0; r < kRounds; ++r) {
        const V x = X[r][i];
        const V w = x * x;
        const V li = to_float(L[r][i]);
        V slx = sumlx[r] - w * x * li;
        const VI positive = slx > 0.0f;
        V sl2 = suml2[r] - w * li * li;
        const VI new_l = clamp(nearest_int(x * sl2 / slx), -nmax, nmax - 1);
        const V nl = to_float(new_l);
        slx = slx + w * x * nl;
        sl2 = sl2 + w * nl * nl;
        const VI take = positive & (new_l != L[r][i]) & (sl2 > 0.0f) &
                        (slx * slx * suml2[r] > sumlx[r] * sumlx[r] * sl2) & ~flat[r];
        L[r][i] = take ? new_l : L[r][i];
        sumlx[r] = take ? slx : sumlx[r];
        suml2[r] = take ? sl2 : suml2[r];
        changed |= take;
      }
    }
    bool any = false;
    for (int j = 0; j < kLanes; ++j) any = any || changed[j] != 0;
    if (!any) break;
  }
  for (int r = 0; r < kRounds; ++r) {
    for (int i = 0; i < n; ++i) L[r][i] = flat[r] ? VI{} : L[r][i] + nmax;
    scale[r] = flat[r] ? V{} : (suml2[r] > 0.0f ? sumlx[r] / suml2[r] : V{});
  }
}

// search_q3_k_sub_blocks().
struct FitQ3K {
  WQ_LANES_INLINE void operator()(const V (*X)[16], VI (*L)[16], V* scale, V*) const {
    fit_symmetric_refined_lanes(X, L, scale);
  }
};

WQ_LANES_INLINE void search_q3_k_lanes(const float* x, float* scales, std::int8_t* codes) {
  search_sixteen_sub_blocks(x, FitQ3K{}, scales, static_cast<float*>(nullptr), codes);
}

// The final codes of one sub-block (`count` elements, a multiple of 8) eight at a time, as the
// codec's code_with_offset() (kOffset) or symmetric_code() gives each: the same addition, the
// same division (vdivps rounds as divss does), the same nearest_int and clamp. Each type's
// quantize_lanes() below is its codec finish_*() with these loops in place of the scalar ones;
// the scalar division per element was a fifth of a block's time.
typedef std::int8_t B8 __attribute__((vector_size(8)));

template <bool kOffset>
WQ_LANES_INLINE void final_codes(const float* x, int count, float d, float dm, int lo, int hi, int bias, void* out) {
  for (int i = 0; i < count; i += kLanes) {
    V v;
    std::memcpy(&v, x + i, sizeof v);
    if constexpr (kOffset) v = v + dm;
    const VI code = clamp(nearest_int(v / d), lo, hi) + bias;
    const B8 bytes = __builtin_convertvector(code, B8);
    std::memcpy(static_cast<std::uint8_t*>(out) + i, &bytes, sizeof bytes);
  }
}

WQ_LANES_INLINE void quantize_lanes(const float* x, ggml::BlockQ3_K* y) {
  std::int8_t L[ggml::kSuperBlock];
  float scales[16];
  search_q3_k_lanes(x, scales, L);
  ggml::quantize_q3_k_scales(scales, y);
  for (int j = 0; j < 16; ++j) {
    const float d = ggml::q3_k_step(*y, j);
    if (d != 0.0f) final_codes<false>(x + 16 * j, 16, d, 0.0f, -4, 3, 4, L + 16 * j);
  }
  ggml::pack_q3_k_codes(L, y);
}

WQ_LANES_INLINE void quantize_lanes(const float* x, ggml::BlockQ2_K* y) {
  std::uint8_t L[ggml::kSuperBlock];
  float scales[16], mins[16];
  search_q2_k_lanes(x, scales, mins, L);
  ggml::quantize_q2_k_scales(scales, mins, y);
  for (int j = 0; j < 16; ++j) {
    float d, dm;
    ggml::q2_k_step(*y, j, &d, &dm);
    if (d != 0.0f) final_codes<true>(x + 16 * j, 16, d, dm, 0, 3, 0, L + 16 * j);
  }
  ggml::pack_two_bit_planes(L, y->qs);
}

WQ_LANES_INLINE void quantize_lanes(const float* x, ggml::BlockQ6_K* y) {
  std::int8_t L[ggml::kSuperBlock];
  float scales[16];
  search_q6_k_lanes(x, scales, L);
  if (!ggml::quantize_q6_k_scales(scales, y)) return;  // an all-zero block, written
  for (int j = 0; j < 16; ++j) {
    const float d = ggml::q6_k_step(*y, j);
    if (d != 0.0f) final_codes<false>(x + 16 * j, 16, d, 0.0f, -32, 31, 32, L + 16 * j);
  }
  ggml::pack_q6_k_codes(L, y);
}

// Q4_K and Q5_K: R consecutive super-blocks searched together, then each finished.
template <int R, typename Block>
WQ_LANES_INLINE void quantize_scale_min_lanes(const float* x, Block* y) {
  constexpr bool q4 = sizeof(Block) == sizeof(ggml::BlockQ4_K);
  constexpr int nmax = q4 ? ggml::kQ4KMax : ggml::kQ5KMax;
  std::uint8_t L[R * ggml::kSuperBlock];
  float scales[R * kLanes], mins[R * kLanes];
  search_lanes<R>(x, nmax, q4 ? ggml::q4_k_search() : ggml::q5_k_search(), scales, mins, L);
  for (int r = 0; r < R; ++r) {
    Block* const b = y + r;
    const float* const xb = x + ggml::kSuperBlock * r;
    std::uint8_t* const Lb = L + ggml::kSuperBlock * r;
    ggml::quantize_scale_min_bytes(scales + kLanes * r, mins + kLanes * r, &b->d, &b->dmin, b->scales);
    for (int j = 0; j < kLanes; ++j) {
      float d, dm;
      ggml::scale_min_step(b->d, b->dmin, b->scales, j, &d, &dm);
      if (d != 0.0f) final_codes<true>(xb + kSub * j, kSub, d, dm, 0, nmax, 0, Lb + kSub * j);
    }
    if constexpr (q4) {
      ggml::pack_q4_k_codes(Lb, b);
    } else {
      ggml::pack_q5_k_codes(Lb, b);
    }
  }
}

template <typename Block>
WQ_LANES_INLINE void quantize_lanes(const float* x, Block* y) {
  quantize_scale_min_lanes<1>(x, y);
}

// `blocks` super-blocks from x into out (unaligned), one by one, or for Q4_K and Q5_K (one
// round of lanes per super-block) two at a time, whose searches then interleave.
template <typename Block>
WQ_LANES_INLINE void quantize_run(const float* x, std::uint64_t blocks, std::uint8_t* out) {
  constexpr bool kPairs = std::is_same_v<Block, ggml::BlockQ4_K> || std::is_same_v<Block, ggml::BlockQ5_K>;
  std::uint64_t b = 0;
  if constexpr (kPairs) {
    for (; b + 2 <= blocks; b += 2) {
      Block y[2];  // built aligned, then copied
      quantize_scale_min_lanes<2>(x + b * ggml::kSuperBlock, y);
      std::memcpy(out + b * sizeof(Block), y, sizeof y);
    }
  }
  for (; b < blocks; ++b) {
    Block y;
    quantize_lanes(x + b * ggml::kSuperBlock, &y);
    std::memcpy(out + b * sizeof(Block), &y, sizeof y);
  }
}

template <typename Block>
__attribute__((target("avx2"))) void quantize_avx2(const float* x, std::uint64_t blocks, std::uint8_t* out) {
  quantize_run<Block>(x, blocks, out);
}

template <typename Block>
void quantize_baseline(const float* x, std::uint64_t blocks, std::uint8_t* out) {
  quantize_run<Block>(x, blocks, out);
}

template <bool kOffset>
__attribute__((target("avx2"))) void final_codes_avx2(const float* x, int count, float d, float dm, int lo, int hi,
                                                      int bias, std::uint8_t* out) {
  final_codes<kOffset>(x, count, d, dm, lo, hi, bias, out);
}

template <bool kOffset>
void final_codes_baseline(const float* x, int count, float d, float dm, int lo, int hi, int bias, std::uint8_t* out) {
  final_codes<kOffset>(x, count, d, dm, lo, hi, bias, out);
}

template <typename Block>
void quantize_blocks(const float* x, std::uint64_t blocks, std::uint8_t* out) {
  use_avx2() ? quantize_avx2<Block>(x, blocks, out) : quantize_baseline<Block>(x, blocks, out);
}

}  // namespace

void quantize_q4_k_lanes(const float* x, std::uint64_t blocks, std::uint8_t* out) {
  quantize_blocks<ggml::BlockQ4_K>(x, blocks, out);
}

void quantize_q5_k_lanes(const float* x, std::uint64_t blocks, std::uint8_t* out) {
  quantize_blocks<ggml::BlockQ5_K>(x, blocks, out);
}

void quantize_q2_k_lanes(const float* x, std::uint64_t blocks, std::uint8_t* out) {
  quantize_blocks<ggml::BlockQ2_K>(x, blocks, out);
}

void quantize_q6_k_lanes(const float* x, std::uint64_t blocks, std::uint8_t* out) {
  quantize_blocks<ggml::BlockQ6_K>(x, blocks, out);
}

void quantize_q3_k_lanes(const float* x, std::uint64_t blocks, std::uint8_t* out) {
  quantize_blocks<ggml::BlockQ3_K>(x, blocks, out);
}

void kquant_final_codes(const float* x, int count, float d, float dm, bool offset, int lo, int hi, std::uint8_t* out) {
  const int bias = offset ? 0 : -lo;
  if (offset) {
    use_avx2() ? final_codes_avx2<true>(x, count, d, dm, lo, hi, bias, out)
               : final_codes_baseline<true>(x, count, d, dm, lo, hi, bias, out);
  } else {
    use_avx2() ? final_codes_avx2<false>(x, count, d, dm, lo, hi, bias, out)
               : final_codes_baseline<false>(x, count, d, dm, lo, hi, bias, out);
  }
}

}  // namespace wq::detail
