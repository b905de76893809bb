// The per-sub-block searches of ggml's k-quant reference quantizers, for host and device:
// `make_qkx2_quants` (Q2_K, Q4_K, Q5_K: scale and a non-positive offset by weighted least
// squares over a sweep of candidate grids), `make_qx_quants` (Q6_K: a symmetric scale, x^2
// weights, 18 candidate grids) and `make_q3_quants` (Q3_K: symmetric, greedy per-element
// refinement).
//
// These decide the bytes that `llama-quantize` writes, so every binary32 operation below is
// ggml's, in ggml's order (each sum accumulated in element order; `w*l*l` is (w*l)*l). Names
// are ours; the arithmetic is the published algorithm of ggml-quants.c (docs/ggml-types.md).
#pragma once

#include <cstdint>

#include "wq/codec/config.h"
#include "wq/codec/ggml_rounding.h"

namespace wq::codec::ggml {

/// Below this |x| a sub-block counts as all zero (ggml's GROUP_MAX_EPS).
inline constexpr float kGroupMaxEps = 1e-15f;

WQ_HD inline int clamp_int(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

/// One code of a symmetric grid (make_qx_quants, make_q3_quants): nearest_int(iscale * x)
/// clamped to -nmax..nmax-1.
WQ_HD inline int grid_code(float x, float iscale, int nmax) {
  return clamp_int(nearest_int(mul_rn(iscale, x)), -nmax, nmax - 1);
}

/// One code of a grid with an offset (make_qkx2_quants): nearest_int(iscale * (x - min)) clamped
/// to 0..nmax.
WQ_HD inline int offset_grid_code(float x, float iscale, float min, int nmax) {
  return clamp_int(nearest_int(mul_rn(iscale, sub_rn(x, min))), 0, nmax);
}

/// The candidate sweep of make_qkx2_quants: iscale = (rmin + rdelta*step + nmax)/(max - min)
/// for step = 0..steps, and the error measure (absolute or squared).
struct OffsetSearch {
  float rmin;
  float rdelta;
  int steps;
  bool absolute_error;
};

WQ_HD inline float error_term(float diff, bool absolute) { return absolute ? abs_f32(diff) : mul_rn(diff, diff); }

/// Fits x ~ scale * L + offset (offset <= 0) over n elements with weights, L in 0..nmax.
/// Writes the codes to L and -offset to *neg_offset; returns the scale. `scratch` holds n codes.
WQ_HD inline float fit_scale_and_offset(int n, int nmax, const float* x, const float* weights, std::uint8_t* L,
                                        float* neg_offset, std::uint8_t* scratch, OffsetSearch search) {
  float min = x[0];
  float max = x[0];
  float sum_w = weights[0];
  float sum_x = mul_rn(sum_w, x[0]);
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    const float w = weights[i];
    sum_w = add_rn(sum_w, w);
    sum_x = add_rn(sum_x, mul_rn(w, x[i]));
  }
  if (min > 0) min = 0;
  if (max == min) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    *neg_offset = -min;
    return 0.0f;
  }
  float iscale = div_rn(static_cast<float>(nmax), sub_rn(max, min));
  float scale = div_rn(1.0f, iscale);
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    L[i] = static_cast<std::uint8_t>(offset_grid_code(x[i], iscale, min, nmax));
    const float diff = sub_rn(add_rn(mul_rn(scale, static_cast<float>(L[i])), min), x[i]);
    best_error = add_rn(best_error, mul_rn(weights[i], error_term(diff, search.absolute_error)));
  }
  if (search.steps < 1) {
    *neg_offset = -min;
    return scale;
  }
  // `min` moves to each better candidate's offset, and later candidates are measured from it
  // (ggml's loop reads the updated value; the sweep is not over one fixed range).
  for (int step = 0; step <= search.steps; ++step) {
    iscale = div_rn(add_rn(add_rn(search.rmin, mul_rn(search.rdelta, static_cast<float>(step))), static_cast<float>(nmax)),
                    sub_rn(max, min));
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      const int l = offset_grid_code(x[i], iscale, min, nmax);
      scratch[i] = static_cast<std::uint8_t>(l);
      const float w = weights[i];
      const float wl = mul_rn(w, static_cast<float>(l));
      sum_l = add_rn(sum_l, wl);
      sum_l2 = add_rn(sum_l2, mul_rn(wl, static_cast<float>(l)));
      sum_xl = add_rn(sum_xl, mul_rn(wl, x[i]));
    }
    const float det = sub_rn(mul_rn(sum_w, sum_l2), mul_rn(sum_l, sum_l));
    if (det > 0) {
      float this_scale = div_rn(sub_rn(mul_rn(sum_w, sum_xl), mul_rn(sum_x, sum_l)), det);
      float this_min = div_rn(sub_rn(mul_rn(sum_l2, sum_x), mul_rn(sum_l, sum_xl)), det);
      if (this_min > 0) {
        this_min = 0;
        this_scale = div_rn(sum_xl, sum_l2);
      }
      float error = 0;
      for (int i = 0; i < n; ++i) {
        const float diff = sub_rn(add_rn(mul_rn(this_scale, static_cast<float>(scratch[i])), this_min), x[i]);
        error = add_rn(error, mul_rn(weights[i], error_term(diff, search.absolute_error)));
      }
      if (error < best_error) {
        for (int i = 0; i < n; ++i) L[i] = scratch[i];
        best_error = error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *neg_offset = -min;
  return scale;
}

/// The element of largest magnitude, sign kept (first on ties), and that magnitude.
WQ_HD inline float signed_extreme(const float* x, int n, float* amax_out) {
  float max = 0;
  float amax = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = abs_f32(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  *amax_out = amax;
  return max;
}

/// Q6_K's symmetric fit (make_qx_quants with x^2 weights): codes L in 0..2*nmax-1 stand for
/// L - nmax; returns the scale.
WQ_HD inline float fit_symmetric_x2(int n, int nmax, const float* x, std::int8_t* L) {
  float amax;
  const float max = signed_extreme(x, n, &amax);
  if (amax < kGroupMaxEps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.0f;
  }
  const float fnmax = static_cast<float>(nmax);
  float iscale = div_rn(static_cast<float>(-nmax), max);
  float sumlx = 0;
  float suml2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = grid_code(x[i], iscale, nmax);
    L[i] = static_cast<std::int8_t>(l + nmax);
    const float w = mul_rn(x[i], x[i]);
    sumlx = add_rn(sumlx, mul_rn(mul_rn(w, x[i]), static_cast<float>(l)));
    suml2 = add_rn(suml2, mul_rn(mul_rn(w, static_cast<float>(l)), static_cast<float>(l)));
  }
  float scale = suml2 != 0 ? div_rn(sumlx, suml2) : 0.0f;
  float best = mul_rn(scale, sumlx);
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = div_rn(-add_rn(fnmax, mul_rn(0.1f, static_cast<float>(is))), max);
    sumlx = 0;
    suml2 = 0;
    for (int i = 0; i < n; ++i) {
      const int l = grid_code(x[i], iscale, nmax);
      const float w = mul_rn(x[i], x[i]);
      sumlx = add_rn(sumlx, mul_rn(mul_rn(w, x[i]), static_cast<float>(l)));
      suml2 = add_rn(suml2, mul_rn(mul_rn(w, static_cast<float>(l)), static_cast<float>(l)));
    }
    if (suml2 > 0 && mul_rn(sumlx, sumlx) > mul_rn(best, suml2)) {
      for (int i = 0; i < n; ++i) {
        L[i] = static_cast<std::int8_t>(nmax + grid_code(x[i], iscale, nmax));
      }
      scale = div_rn(sumlx, suml2);
      best = mul_rn(scale, sumlx);
    }
  }
  return scale;
}

/// Q3_K's symmetric fit (make_q3_quants with the rmse refinement): codes L in 0..2*nmax-1
/// stand for L - nmax; an all-zero sub-block leaves codes 0 (not nmax), as ggml does.
WQ_HD inline float fit_symmetric_refined(int n, int nmax, const float* x, std::int8_t* L) {
  float amax;
  const float max = signed_extreme(x, n, &amax);
  if (amax < kGroupMaxEps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.0f;
  }
  const float iscale = div_rn(static_cast<float>(-nmax), max);
  float sumlx = 0;
  float suml2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = grid_code(x[i], iscale, nmax);
    L[i] = static_cast<std::int8_t>(l);
    const float w = mul_rn(x[i], x[i]);
    sumlx = add_rn(sumlx, mul_rn(mul_rn(w, x[i]), static_cast<float>(l)));
    suml2 = add_rn(suml2, mul_rn(mul_rn(w, static_cast<float>(l)), static_cast<float>(l)));
  }
  for (int pass = 0; pass < 5; ++pass) {
    int changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = mul_rn(x[i], x[i]);
      const float li = static_cast<float>(L[i]);
      float slx = sub_rn(sumlx, mul_rn(mul_rn(w, x[i]), li));
      if (slx > 0) {
        float sl2 = sub_rn(suml2, mul_rn(mul_rn(w, li), li));
        const int new_l = clamp_int(nearest_int(div_rn(mul_rn(x[i], sl2), slx)), -nmax, nmax - 1);
        if (new_l != L[i]) {
          const float nl = static_cast<float>(new_l);
          slx = add_rn(slx, mul_rn(mul_rn(w, x[i]), nl));
          sl2 = add_rn(sl2, mul_rn(mul_rn(w, nl), nl));
          if (sl2 > 0 && mul_rn(mul_rn(slx, slx), suml2) > mul_rn(mul_rn(sumlx, sumlx), sl2)) {
            L[i] = static_cast<std::int8_t>(new_l);
            sumlx = slx;
            suml2 = sl2;
            ++changed;
          }
        }
      }
    }
    if (changed == 0) break;
  }
  for (int i = 0; i < n; ++i) L[i] = static_cast<std::int8_t>(L[i] + nmax);
  return suml2 > 0.0f ? div_rn(sumlx, suml2) : 0.0f;
}

}  // namespace wq::codec::ggml
