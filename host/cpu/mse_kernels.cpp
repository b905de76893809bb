#include "cpu/mse_kernels.h"

#include <immintrin.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <vector>

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
using F8 = FloatLanes<8>;
using D4 = double __attribute__((vector_size(32)));

__attribute__((target("avx2,fma"))) inline D4 widen(F8 v, int half) {
  const __m256 a = std::bit_cast<__m256>(v);
  return std::bit_cast<D4>(_mm256_cvtps_pd(half == 0 ? _mm256_castps256_ps128(a) : _mm256_extractf128_ps(a, 1)));
}

__attribute__((target("avx2,fma"))) codec::FitSums pass_f32_avx2(const float* x, std::uint64_t n, codec::AffineParams p,
                                                                 float max_code) {
  const F8 zero{};
  const F8 scale = zero + p.scale, min = zero + p.min, top = zero + max_code;
  D4 err[2] = {}, q[2] = {}, qq[2] = {}, sx[2] = {}, qx[2] = {};
  std::uint64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    F8 xv;
    std::memcpy(&xv, x + i, sizeof xv);
    const F8 qv = codec::affine_code_value(xv, scale, min, top);
    const F8 decoded = std::bit_cast<F8>(_mm256_fmadd_ps(std::bit_cast<__m256>(scale), std::bit_cast<__m256>(qv),
                                                         std::bit_cast<__m256>(min)));
    for (int h = 0; h < 2; ++h) {
      const D4 xd = widen(xv, h), qd = widen(qv, h);
      const D4 e = xd - widen(decoded, h);
      err[h] = err[h] + e * e;
      q[h] = q[h] + qd;
      qq[h] = qq[h] + qd * qd;
      sx[h] = sx[h] + xd;
      qx[h] = qx[h] + qd * xd;
    }
  }
  codec::FitSums lane[codec::kMseLanes];
  for (int j = 0; j < codec::kMseLanes; ++j) {
    lane[j] = codec::FitSums{err[j / 4][j % 4], q[j / 4][j % 4], qq[j / 4][j % 4], sx[j / 4][j % 4], qx[j / 4][j % 4]};
  }
  for (int j = 0; i + j < n; ++j) codec::fit_add(&lane[j], x[i + j], p, max_code);
  return codec::combine_fit_lanes(lane);
}

struct F32PassAvx2 {
  const float* x;
  std::uint64_t n;
  codec::FitSums operator()(codec::AffineParams p, float max_code) const { return pass_f32_avx2(x, n, p, max_code); }
};

template <DType D, bool Avx2>
WQ_INLINE codec::ParamsStatus search(const std::byte* src, std::uint64_t begin, std::uint64_t n, float lo, float hi,
                                     const codec::Recipe& recipe, codec::AffineParams* out) {
  const float* x = as_f32<D>(src, begin, n);
  if constexpr (Avx2) return codec::mse_search(F32PassAvx2{x, n}, n, lo, hi, recipe.bits, recipe.f16_params, out);
  return codec::mse_params(F32Load{x}, n, lo, hi, recipe.bits, recipe.f16_params, out);
}

template <DType D, bool Avx2>
WQ_INLINE GroupFailure groups_impl(const std::byte* src, const GroupGeometry& g, const codec::Recipe& recipe,
                                   std::uint64_t first, std::uint64_t last, codec::AffineParams* params) {
  for (std::uint64_t k = first; k < last; ++k) {
    const std::uint64_t row = k / g.groups_per_row, j = k % g.groups_per_row;
    const std::uint64_t begin = row * g.cols + j * g.group_size;
    const std::uint64_t n = std::min(g.group_size, g.cols - j * g.group_size);
    float lo = std::numeric_limits<float>::infinity(), hi = -lo;
    for (std::uint64_t i = 0; i < n; ++i) {  // NaN is skipped; the coder reports it
      const float x = load_f32<D>(src, begin + i);
      lo = x < lo ? x : lo;
      hi = x > hi ? x : hi;
    }
    GroupFailure failure{true, !codec::is_finite(lo) || !codec::is_finite(hi), codec::ParamsStatus::kOk,
                         k, begin, begin + n, lo, hi};
    if (failure.nonfinite) return failure;
    failure.status = search<D, Avx2>(src, begin, n, lo, hi, recipe, &params[k]);
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
  return search<D, false>(src, 0, n, lo, hi, recipe, out);
}
template <DType D>
__attribute__((target("avx2,fma"), flatten)) codec::ParamsStatus span_avx2(const std::byte* src, std::uint64_t n,
                                                                           float lo, float hi,
                                                                           const codec::Recipe& recipe,
                                                                           codec::AffineParams* out) {
  return search<D, false>(src, 0, n, lo, hi, recipe, out);
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
