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

// The search reads its group 15 times: a group of F16/BF16/F64 is widened to binary32 once,
// into a buffer that stays in L1 for group-sized runs.
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

// The search's loops are the codec's, compiled twice like every CPU kernel: for the baseline
// and, through `flatten`, inside an AVX2+FMA function (the lane loop of codec::mse_pass keeps
// its 8 binary64 lanes in vector registers, and fma is one instruction instead of a libm call).
// Both give the same parameters: the operations and their order are the codec's.
struct F32Load {
  const float* x;
  float operator()(std::uint64_t i) const { return x[i]; }
};

// codec::mse_pass() on 8 lanes at once (AVX2 + FMA): the codec's 8 binary64 lanes are two
// 4-double vectors, element i of each block of 8 in lane i, each operation the codec's with the
// same single rounding (vfmadd is one rounding, as fma_rn; products and sums are separate
// instructions, -ffp-contract=off). The tail goes through the codec's scalar fit_add() into the
// same lanes, so the sums are mse_pass()'s bit for bit: the backend suites compare every mse
// encoding with codec::mse_params() over the scalar pass, on this path and with
// WQ_CPU_BASELINE=1 on the scalar one. Why: the scalar pass measured 4x slower (0.07 against
// 0.18 GB/s at 4-bit groups of 64; its lanes of 5 sums do not vectorise).
// The codes are avx2::codes_by_vector_division(), the CPU's 8-lane spelling of
// codec::affine_code_value() that the minmax kernels already use (held to the codec there, on
// values placed at the half-integers).
// C candidates at once (mse_search() passes all live ones): x is loaded and widened once, and
// the candidates' independent sums overlap. Sq and Sqq are sums of integers, exact in binary64
// in any order, so they are kept in binary32 lanes (exact below 2^24: flushed every 256 steps)
// and only widened at the flush; err, Sx and Sqx keep the codec's binary64 lane order.
// ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)) of lanes 0-3 in `low` and 4-7 in `high`:
// vhaddpd gives (l0+l1, l4+l5, l2+l3, l6+l7), adding its halves the two inner sums.
__attribute__((target("avx2,fma"), always_inline)) inline double combine_lanes_avx2(__m256d low, __m256d high) {
  const __m256d pairs = _mm256_hadd_pd(low, high);
  const __m128d halves = _mm_add_pd(_mm256_castpd256_pd128(pairs), _mm256_extractf128_pd(pairs, 1));
  return _mm_cvtsd_f64(_mm_add_sd(halves, _mm_unpackhi_pd(halves, halves)));
}

template <int C>
__attribute__((target("avx2,fma"), flatten)) void pass_f32_avx2(const float* x, std::uint64_t n,
                                                                const codec::AffineParams* ps, float max_code,
                                                                codec::FitSums* sums) {
  const avx2::CodeConstants c = avx2::code_constants(max_code);
  __m256 scale[C], min[C], q32[C], qq32[C];
  __m256d err[C][2], qx[C][2], q64[C][2], qq64[C][2], sx[2] = {_mm256_setzero_pd(), _mm256_setzero_pd()};
  for (int k = 0; k < C; ++k) {
    scale[k] = _mm256_set1_ps(ps[k].scale);
    min[k] = _mm256_set1_ps(ps[k].min);
    q32[k] = qq32[k] = _mm256_setzero_ps();
    for (int h = 0; h < 2; ++h) err[k][h] = qx[k][h] = q64[k][h] = qq64[k][h] = _mm256_setzero_pd();
  }
  // (No lambda for the flush: it would be compiled for the baseline target.)
  std::uint64_t i = 0;
  for (unsigned steps = 0;; i += 8) {
    if (steps == 256 || i + 8 > n) {
      for (int k = 0; k < C; ++k) {
        q64[k][0] = _mm256_add_pd(q64[k][0], _mm256_cvtps_pd(_mm256_castps256_ps128(q32[k])));
        q64[k][1] = _mm256_add_pd(q64[k][1], _mm256_cvtps_pd(_mm256_extractf128_ps(q32[k], 1)));
        qq64[k][0] = _mm256_add_pd(qq64[k][0], _mm256_cvtps_pd(_mm256_castps256_ps128(qq32[k])));
        qq64[k][1] = _mm256_add_pd(qq64[k][1], _mm256_cvtps_pd(_mm256_extractf128_ps(qq32[k], 1)));
        q32[k] = qq32[k] = _mm256_setzero_ps();
      }
      steps = 0;
      if (i + 8 > n) break;
    }
    ++steps;
    const __m256 xv = _mm256_loadu_ps(x + i);
    const __m256d x0 = _mm256_cvtps_pd(_mm256_castps256_ps128(xv)), x1 = _mm256_cvtps_pd(_mm256_extractf128_ps(xv, 1));
    sx[0] = _mm256_add_pd(sx[0], x0);
    sx[1] = _mm256_add_pd(sx[1], x1);
    for (int k = 0; k < C; ++k) {
      // The division, not the minmax kernels' reciprocal with its proof: with the proof's check
      // and fallback in this loop the pass measured slower (0.25 against 0.29 GB/s).
      const __m256 qv = avx2::codes_by_vector_division(xv, min[k], scale[k], c);
      const __m256 decoded = _mm256_fmadd_ps(scale[k], qv, min[k]);  // one rounding, as codec::fma_rn
      q32[k] = _mm256_add_ps(q32[k], qv);
      qq32[k] = _mm256_fmadd_ps(qv, qv, qq32[k]);  // integers below 2^24: exact, fused or not
      const __m256d q0 = _mm256_cvtps_pd(_mm256_castps256_ps128(qv)), q1 = _mm256_cvtps_pd(_mm256_extractf128_ps(qv, 1));
      const __m256d e0 = _mm256_sub_pd(x0, _mm256_cvtps_pd(_mm256_castps256_ps128(decoded)));
      const __m256d e1 = _mm256_sub_pd(x1, _mm256_cvtps_pd(_mm256_extractf128_ps(decoded, 1)));
      err[k][0] = _mm256_add_pd(err[k][0], _mm256_mul_pd(e0, e0));
      err[k][1] = _mm256_add_pd(err[k][1], _mm256_mul_pd(e1, e1));
      qx[k][0] = _mm256_add_pd(qx[k][0], _mm256_mul_pd(q0, x0));
      qx[k][1] = _mm256_add_pd(qx[k][1], _mm256_mul_pd(q1, x1));
    }
  }
  if (i == n) {  // no tail: the lanes combined in registers, in codec::combine_lanes()'s tree
    const double total_x = combine_lanes_avx2(sx[0], sx[1]);
    for (int k = 0; k < C; ++k) {
      sums[k] = codec::FitSums{combine_lanes_avx2(err[k][0], err[k][1]), combine_lanes_avx2(q64[k][0], q64[k][1]),
                               combine_lanes_avx2(qq64[k][0], qq64[k][1]), total_x,
                               combine_lanes_avx2(qx[k][0], qx[k][1])};
    }
    return;
  }
  alignas(32) double lanes[4][codec::kMseLanes], xs[codec::kMseLanes];
  _mm256_store_pd(xs, sx[0]);
  _mm256_store_pd(xs + 4, sx[1]);
  for (int k = 0; k < C; ++k) {
    for (int h = 0; h < 2; ++h) {
      _mm256_store_pd(&lanes[0][4 * h], err[k][h]);
      _mm256_store_pd(&lanes[1][4 * h], q64[k][h]);
      _mm256_store_pd(&lanes[2][4 * h], qq64[k][h]);
      _mm256_store_pd(&lanes[3][4 * h], qx[k][h]);
    }
    codec::FitSums lane[codec::kMseLanes];
    for (int j = 0; j < codec::kMseLanes; ++j) lane[j] = codec::FitSums{lanes[0][j], lanes[1][j], lanes[2][j], xs[j], lanes[3][j]};
    for (int j = 0; i + j < n; ++j) codec::fit_add(&lane[j], x[i + j], ps[k], max_code);
    sums[k] = codec::combine_fit_lanes(lane);
  }
}

struct F32PassAvx2 {
  const float* x;
  std::uint64_t n;
  void operator()(const codec::AffineParams* ps, int count, float max_code, codec::FitSums* sums) const {
    switch (count) {
      case 1: return pass_f32_avx2<1>(x, n, ps, max_code, sums);
      case 2: return pass_f32_avx2<2>(x, n, ps, max_code, sums);
      default: return pass_f32_avx2<3>(x, n, ps, max_code, sums);
    }
  }
};

template <bool Avx2>
WQ_INLINE codec::ParamsStatus search(const float* x, std::uint64_t n, float lo, float hi, const codec::Recipe& recipe,
                                     codec::AffineParams* out) {
  if constexpr (Avx2) return codec::mse_search(F32PassAvx2{x, n}, n, lo, hi, recipe.bits, recipe.f16_params, out);
  return codec::mse_params(F32Load{x}, n, lo, hi, recipe.bits, recipe.f16_params, out);
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
    failure.status = search<Avx2>(x, n, lo, hi, recipe, &params[k]);
    if (failure.status != codec::ParamsStatus::kOk) return failure;
  }
  return GroupFailure{};
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
  return search<false>(as_f32<D>(src, 0, n), n, lo, hi, recipe, out);
}
template <DType D>
__attribute__((target("avx2,fma"), flatten)) codec::ParamsStatus span_avx2(const std::byte* src, std::uint64_t n,
                                                                           float lo, float hi,
                                                                           const codec::Recipe& recipe,
                                                                           codec::AffineParams* out) {
  return search<true>(as_f32<D>(src, 0, n), n, lo, hi, recipe, out);
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
