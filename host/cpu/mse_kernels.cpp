#include "cpu/mse_kernels.h"

#include <immintrin.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <vector>

#include "cpu/avx2_codes.h"
#include "cpu/cpu_features.h"
#include "cpu/element_io.h"
#include "cpu/lanes.h"
#include "wq/codec/mse.h"

namespace wq::detail {
namespace {

// The search reads its group up to 17 times: a group of F16/BF16/F64 is widened to binary32
// once, into a buffer that stays in L1 for group-sized runs.
thread_local std::vector<float> t_widened;

template <DType D>
const float* as_f32(const std::byte* src, std::uint64_t begin, std::uint64_t n) {
  if constexpr (D == DType::kF32) {
    return reinterpret_cast<const float*>(src) + begin;
  } else {
    if (t_widened.size() < n) t_widened.resize(n);
    for (std::uint64_t i = 0; i < n; ++i) t_widened[i] = load_f32<D>(src, begin + i);
    return t_widened.data();
  }
}

struct F32Load {
  const float* x;
  float operator()(std::uint64_t i) const { return x[i]; }
};

// The passes are the codec's (codec::mse_pass, codec::mse_sum_x) on the baseline target, and
// their AVX2+FMA spellings below, which keep the codec's operations and order bit for bit: the
// backend suites compare every mse encoding with codec::mse_params() on this path and, with
// WQ_CPU_BASELINE=1, on the codec's own.

// ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)) of lanes 0-3 in `low` and 4-7 in `high`:
// vhaddpd gives (l0+l1, l4+l5, l2+l3, l6+l7), adding its halves the two inner sums.
__attribute__((target("avx2,fma"), always_inline)) inline double combine_lanes_avx2(__m256d low, __m256d high) {
  const __m256d pairs = _mm256_hadd_pd(low, high);
  const __m128d halves = _mm_add_pd(_mm256_castpd256_pd128(pairs), _mm256_extractf128_pd(pairs, 1));
  return _mm_cvtsd_f64(_mm_add_sd(halves, _mm_unpackhi_pd(halves, halves)));
}

// Adds the 8 binary32 lanes of `v`, widened exactly, to the binary64 lane totals `t`.
__attribute__((target("avx2,fma"), always_inline)) inline void widen_into(__m256d t[2], __m256 v) {
  t[0] = _mm256_add_pd(t[0], _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
  t[1] = _mm256_add_pd(t[1], _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
}

// The first `count` lanes set (count < 8), for the last, partial vector of a group.
__attribute__((target("avx2,fma"), always_inline)) inline __m256i first_lanes(std::uint64_t count) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// codec::mse_sum_x(): element i of each 8 in binary64 lane i, lanes 0-3 in one vector and 4-7
// in the other. The partial vector's missing lanes add +0.0, which changes no lane (a lane
// that starts at +0.0 and adds binary32 values is never -0.0).
__attribute__((target("avx2,fma"))) double sum_x_avx2(const float* x, std::uint64_t n) {
  __m256d t[2] = {_mm256_setzero_pd(), _mm256_setzero_pd()};
  std::uint64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    t[0] = _mm256_add_pd(t[0], _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
    t[1] = _mm256_add_pd(t[1], _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
  }
  if (i < n) {
    const __m256 v = _mm256_maskload_ps(x + i, first_lanes(n - i));
    t[0] = _mm256_add_pd(t[0], _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
    t[1] = _mm256_add_pd(t[1], _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
  }
  return combine_lanes_avx2(t[0], t[1]);
}

// One candidate's accumulators of codec::mse_pass() in a block: the 8 lanes of err and Sqx
// (binary32, as the codec's), and of Sq and Sqq, whose lane sums within a block are integers
// below 2^24 and so exact in binary32 in any order.
struct BlockAccumulators {
  __m256 err, qx, q, qq;
};

// codec::block_lane_add() on 8 lanes: the same operations with the same single roundings
// (vfmadd is one rounding, as fma_rn; -ffp-contract=off keeps the rest separate). The codes
// are avx2::codes_by_vector_division(), the 8-lane spelling of codec::affine_code_value()
// that the minmax kernels use too. `keep` zeroes the code and the error of the lanes past the
// end of the group, so that they add exactly nothing: fma(0, 0, acc) is acc, and these
// accumulators are never -0.0.
template <bool Partial>
__attribute__((target("avx2,fma"), always_inline)) inline void add_lanes(BlockAccumulators* a, __m256 x, __m256 scale,
                                                                         __m256 min, const avx2::CodeConstants& c,
                                                                         __m256 keep) {
  __m256 q = avx2::codes_by_vector_division(x, min, scale, c);
  __m256 e = _mm256_sub_ps(x, _mm256_fmadd_ps(scale, q, min));
  if constexpr (Partial) {
    q = _mm256_and_ps(q, keep);
    e = _mm256_and_ps(e, keep);
  }
  a->err = _mm256_fmadd_ps(e, e, a->err);
  a->qx = _mm256_fmadd_ps(q, x, a->qx);
  a->q = _mm256_add_ps(a->q, q);
  a->qq = _mm256_fmadd_ps(q, q, a->qq);
}

// Elements [begin, end) of one block into C candidates' zeroed accumulators.
template <int C>
__attribute__((target("avx2,fma"), always_inline)) inline void accumulate_block(const float* x, std::uint64_t begin,
                                                                                std::uint64_t end, const __m256* scale,
                                                                                const __m256* min,
                                                                                const avx2::CodeConstants& c,
                                                                                BlockAccumulators* a) {
  if constexpr (C == 3) {
    // Two candidates, then the third: three at once need 18 vector registers (12 accumulators,
    // the constants, x) and GCC 12 kept two accumulators on the stack, a store and a reload on
    // their chains every 8 elements. Each candidate's sums are its own, so the order of their
    // additions, and the sums, are the same (mse 4-bit g64 0.74 -> 0.77 GB/s, bench/RESULTS.md).
    accumulate_block<2>(x, begin, end, scale, min, c, a);
    accumulate_block<1>(x, begin, end, scale + 2, min + 2, c, a + 2);
    return;
  }
  for (int k = 0; k < C; ++k) a[k] = BlockAccumulators{_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  std::uint64_t i = begin;
  for (; i + 8 <= end; i += 8) {
    const __m256 xv = _mm256_loadu_ps(x + i);
    for (int k = 0; k < C; ++k) add_lanes<false>(&a[k], xv, scale[k], min[k], c, xv);
  }
  if (i < end) {
    const __m256i mask = first_lanes(end - i);
    const __m256 xv = _mm256_maskload_ps(x + i, mask);
    for (int k = 0; k < C; ++k) add_lanes<true>(&a[k], xv, scale[k], min[k], c, _mm256_castsi256_ps(mask));
  }
}

// codec::mse_pass() for C candidates over the same group: x is loaded once for all of them,
// and their independent sums overlap. Why a spelling of its own: the codec's scalar loop does
// not vectorise (its lanes sit in arrays of structs); this runs eight lanes in one register.
template <int C>
__attribute__((target("avx2,fma"), flatten)) void pass_f32_avx2(const float* x, std::uint64_t n,
                                                                const codec::AffineParams* ps, float max_code,
                                                                double sum_x, codec::FitSums* sums) {
  const avx2::CodeConstants c = avx2::code_constants(max_code);
  __m256 scale[C], min[C];
  __m256d err[C][2], qx[C][2], q[C][2], qq[C][2];
  for (int k = 0; k < C; ++k) {
    scale[k] = _mm256_set1_ps(ps[k].scale);
    min[k] = _mm256_set1_ps(ps[k].min);
    for (int h = 0; h < 2; ++h) err[k][h] = qx[k][h] = q[k][h] = qq[k][h] = _mm256_setzero_pd();
  }
  for (std::uint64_t begin = 0; begin < n; begin += codec::kMseBlock) {
    const std::uint64_t end = n - begin < codec::kMseBlock ? n : begin + codec::kMseBlock;
    BlockAccumulators a[C];
    accumulate_block<C>(x, begin, end, scale, min, c, a);
    for (int k = 0; k < C; ++k) {
      widen_into(err[k], a[k].err);
      widen_into(qx[k], a[k].qx);
      widen_into(q[k], a[k].q);
      widen_into(qq[k], a[k].qq);
    }
  }
  for (int k = 0; k < C; ++k) {
    sums[k] = codec::FitSums{combine_lanes_avx2(err[k][0], err[k][1]), combine_lanes_avx2(q[k][0], q[k][1]),
                             combine_lanes_avx2(qq[k][0], qq[k][1]), sum_x, combine_lanes_avx2(qx[k][0], qx[k][1])};
  }
}

// The lanes of binary32 `v` widened and combined as codec::combine_lanes() combines binary64
// lane totals that start at +0.0 and receive one block: +0.0 + t is t for every t that is not
// -0.0, and these accumulators never are.
__attribute__((target("avx2,fma"), always_inline)) inline double combine_one_block(__m256 v) {
  return combine_lanes_avx2(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
}

// The sum of the 8 lanes of integer-valued `v` whose total is below 2^24: exact in binary32,
// in any order.
__attribute__((target("avx2,fma"), always_inline)) inline double exact_lane_total(__m256 v) {
  const __m128 four = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 two = _mm_add_ps(four, _mm_movehl_ps(four, four));
  return _mm_cvtss_f32(_mm_add_ss(two, _mm_movehdup_ps(two)));
}

// pass_f32_avx2() for a group of at most 256 elements, the common case (groups of 32-256):
// one block, so the binary64 totals are the widened block sums, and Sq and Sqq (at most 256 *
// 255^2 < 2^24) are exact in binary32. The same sums, with less work between two rounds.
template <int C>
__attribute__((target("avx2,fma"), flatten)) void short_pass_f32_avx2(const float* x, std::uint64_t n,
                                                                      const codec::AffineParams* ps, float max_code,
                                                                      double sum_x, codec::FitSums* sums) {
  const avx2::CodeConstants c = avx2::code_constants(max_code);
  __m256 scale[C], min[C];
  for (int k = 0; k < C; ++k) {
    scale[k] = _mm256_set1_ps(ps[k].scale);
    min[k] = _mm256_set1_ps(ps[k].min);
  }
  BlockAccumulators a[C];
  accumulate_block<C>(x, 0, n, scale, min, c, a);
  for (int k = 0; k < C; ++k) {
    sums[k] = codec::FitSums{combine_one_block(a[k].err), exact_lane_total(a[k].q), exact_lane_total(a[k].qq), sum_x,
                             combine_one_block(a[k].qx)};
  }
}

// A group's elements and its search.
struct GroupSearch {
  const float* x;
  std::uint64_t n;
  double sum_x;
  codec::MseSearch search;
};

template <bool Avx2>
WQ_INLINE void run_passes(const GroupSearch& g, const codec::AffineParams* ps, int count, codec::FitSums* sums) {
  if constexpr (Avx2) {
    if (g.n <= 256) {
      switch (count) {
        case 1: return short_pass_f32_avx2<1>(g.x, g.n, ps, g.search.levels(), g.sum_x, sums);
        case 2: return short_pass_f32_avx2<2>(g.x, g.n, ps, g.search.levels(), g.sum_x, sums);
        default: return short_pass_f32_avx2<3>(g.x, g.n, ps, g.search.levels(), g.sum_x, sums);
      }
    }
    switch (count) {
      case 1: return pass_f32_avx2<1>(g.x, g.n, ps, g.search.levels(), g.sum_x, sums);
      case 2: return pass_f32_avx2<2>(g.x, g.n, ps, g.search.levels(), g.sum_x, sums);
      default: return pass_f32_avx2<3>(g.x, g.n, ps, g.search.levels(), g.sum_x, sums);
    }
  }
  for (int k = 0; k < count; ++k) sums[k] = codec::mse_pass(F32Load{g.x}, g.n, ps[k], g.search.levels(), g.sum_x);
}

// Runs a started search round by round: the passes of the live candidates, then their refits.
template <bool Avx2>
WQ_INLINE void run_search(GroupSearch* group) {
  codec::AffineParams ps[3];
  for (int live; (live = group->search.round(ps)) > 0;) {
    codec::FitSums sums[3];
    run_passes<Avx2>(*group, ps, live, sums);
    group->search.take(sums);
  }
}

template <bool Avx2>
WQ_INLINE double sum_x(const float* x, std::uint64_t n) {
  if constexpr (Avx2) return sum_x_avx2(x, n);
  return codec::mse_sum_x(F32Load{x}, n);
}

// The min and max of n floats, NaN skipped (vminps returns its second operand when the first is
// NaN, as `x < lo ? x : lo` does). Which zero a lane keeps may differ from the scalar loop's;
// every rule adds +0.0 to its range ends first, so the parameters do not.
__attribute__((target("avx2,fma"))) void range_f32_avx2(const float* x, std::uint64_t n, float* lo,
                                                                              float* hi) {
  __m256 l = _mm256_set1_ps(*lo), h = _mm256_set1_ps(*hi);
  std::uint64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    l = _mm256_min_ps(v, l);
    h = _mm256_max_ps(v, h);
  }
  alignas(32) float ls[8], hs[8];
  _mm256_store_ps(ls, l);
  _mm256_store_ps(hs, h);
  float a = ls[0], b = hs[0];
  for (int k = 1; k < 8; ++k) {
    a = ls[k] < a ? ls[k] : a;
    b = hs[k] > b ? hs[k] : b;
  }
  for (; i < n; ++i) {
    a = x[i] < a ? x[i] : a;
    b = x[i] > b ? x[i] : b;
  }
  *lo = a;
  *hi = b;
}

template <DType D, bool Avx2>
WQ_INLINE GroupFailure groups_impl(const std::byte* src, const GroupGeometry& g, const codec::Recipe& recipe,
                                   std::uint64_t first, std::uint64_t last, codec::AffineParams* params) {
  for (std::uint64_t k = first; k < last; ++k) {
    const std::uint64_t row = k / g.groups_per_row, j = k % g.groups_per_row;
    const std::uint64_t begin = row * g.cols + j * g.group_size;
    const std::uint64_t n = std::min(g.group_size, g.cols - j * g.group_size);
    const float* x = as_f32<D>(src, begin, n);
    float lo = std::numeric_limits<float>::infinity(), hi = -lo;
    if constexpr (Avx2) {
      range_f32_avx2(x, n, &lo, &hi);
    } else {
      for (std::uint64_t i = 0; i < n; ++i) {  // NaN is skipped; the coder reports it
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
      }
    }
    GroupFailure failure{true, !codec::is_finite(lo) || !codec::is_finite(hi), codec::ParamsStatus::kOk,
                         k, begin, begin + n, lo, hi};
    if (failure.nonfinite) return failure;
    GroupSearch group;
    failure.status = group.search.start(n, lo, hi, recipe.bits, recipe.f16_params);
    if (failure.status != codec::ParamsStatus::kOk) return failure;
    group.x = x;
    group.n = n;
    group.sum_x = sum_x<Avx2>(x, n);
    run_search<Avx2>(&group);
    params[k] = group.search.best();
  }
  return GroupFailure{};
}

template <DType D, bool Avx2>
WQ_INLINE codec::ParamsStatus span_impl(const std::byte* src, std::uint64_t n, float lo, float hi,
                                        const codec::Recipe& recipe, codec::AffineParams* out) {
  GroupSearch group;
  const codec::ParamsStatus status = group.search.start(n, lo, hi, recipe.bits, recipe.f16_params);
  if (status != codec::ParamsStatus::kOk) return status;
  group.x = as_f32<D>(src, 0, n);
  group.n = n;
  group.sum_x = sum_x<Avx2>(group.x, n);
  run_search<Avx2>(&group);
  *out = group.search.best();
  return codec::ParamsStatus::kOk;
}

template <DType D>
GroupFailure groups_base(const std::byte* src, const GroupGeometry& g, const codec::Recipe& recipe,
                         std::uint64_t first, std::uint64_t last, codec::AffineParams* params) {
  return groups_impl<D, false>(src, g, recipe, first, last, params);
}
template <DType D>
__attribute__((target("avx2,fma"), flatten)) GroupFailure groups_avx2(const std::byte* src, const GroupGeometry& g,
                                                                      const codec::Recipe& recipe, std::uint64_t first,
                                                                      std::uint64_t last, codec::AffineParams* params) {
  return groups_impl<D, true>(src, g, recipe, first, last, params);
}

template <DType D>
codec::ParamsStatus span_base(const std::byte* src, std::uint64_t n, float lo, float hi, const codec::Recipe& recipe,
                              codec::AffineParams* out) {
  return span_impl<D, false>(src, n, lo, hi, recipe, out);
}
template <DType D>
__attribute__((target("avx2,fma"), flatten)) codec::ParamsStatus span_avx2(const std::byte* src, std::uint64_t n,
                                                                           float lo, float hi,
                                                                           const codec::Recipe& recipe,
                                                                           codec::AffineParams* out) {
  return span_impl<D, true>(src, n, lo, hi, recipe, out);
}

}  // namespace

GroupFailure mse_group_params(DType dtype, const std::byte* src, const GroupGeometry& geometry,
                              const codec::Recipe& recipe, std::uint64_t first_group, std::uint64_t last_group,
                              codec::AffineParams* params) {
  return dispatch_floating(dtype, [&]<DType D>() {
    return (use_avx2() ? groups_avx2<D> : groups_base<D>)(src, geometry, recipe, first_group, last_group, params);
  });
}

codec::ParamsStatus mse_span_params(DType dtype, const std::byte* src, std::uint64_t n, float lo, float hi,
                                    const codec::Recipe& recipe, codec::AffineParams* params) {
  return dispatch_floating(dtype, [&]<DType D>() {
    return (use_avx2() ? span_avx2<D> : span_base<D>)(src, n, lo, hi, recipe, params);
  });
}

}  // namespace wq::detail
