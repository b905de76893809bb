// The `mse` range of docs/container-format.md §4.1: per group, a least-squared-error search over
// (scale, min) that starts from min-max and keeps it unless something is strictly better.
//
// Every backend runs these functions, so the choice between candidates is made by one
// definition of the error. Its binary64 sums have a fixed order (element i in lane i mod 8,
// each lane in index order, lanes combined pairwise) that a SIMD loop keeps on the CPU and one
// thread per group keeps on a GPU: the same parameters, bit for bit, everywhere.
#pragma once

#include <cstdint>

#include "wq/codec/affine.h"
#include "wq/codec/config.h"
#include "wq/codec/half.h"

namespace wq::codec {

/// Lanes of the pass sums; the order of operations of the search depends on it.
inline constexpr int kMseLanes = 8;
/// Passes per candidate, with a least-squares refit between two passes.
inline constexpr int kMsePasses = 5;

/// One pass's binary64 sums over a group: squared error, and the terms of the least-squares
/// fit of (scale, min) to the pass's codes q.
struct FitSums {
  double err = 0, q = 0, qq = 0, x = 0, qx = 0;
};

/// Adds one element to a lane: its code under `p` (scale > 0), the decoded value, the error.
WQ_HD inline void fit_add(FitSums* lane, float x, AffineParams p, float max_code) {
  const float q = affine_code_value(x, p.scale, p.min, max_code);
  const double e = sub_rn(static_cast<double>(x), static_cast<double>(fma_rn(p.scale, q, p.min)));
  const double qd = q, xd = x;
  lane->err = add_rn(lane->err, mul_rn(e, e));
  lane->q = add_rn(lane->q, qd);
  lane->qq = add_rn(lane->qq, mul_rn(qd, qd));
  lane->x = add_rn(lane->x, xd);
  lane->qx = add_rn(lane->qx, mul_rn(qd, xd));
}

WQ_HD inline double combine_lanes(double l0, double l1, double l2, double l3, double l4, double l5, double l6,
                                  double l7) {
  return add_rn(add_rn(add_rn(l0, l1), add_rn(l2, l3)), add_rn(add_rn(l4, l5), add_rn(l6, l7)));
}

/// The lanes' sums combined pairwise, field by field.
WQ_HD inline FitSums combine_fit_lanes(const FitSums (&lane)[kMseLanes]) {
  FitSums total;
#define WQ_COMBINE(field)                                                                              \
  total.field = combine_lanes(lane[0].field, lane[1].field, lane[2].field, lane[3].field, lane[4].field, \
                              lane[5].field, lane[6].field, lane[7].field)
  WQ_COMBINE(err);
  WQ_COMBINE(q);
  WQ_COMBINE(qq);
  WQ_COMBINE(x);
  WQ_COMBINE(qx);
#undef WQ_COMBINE
  return total;
}

/// The pass of §4.1 step 3 over elements load(0) .. load(n - 1) under `p` (scale > 0). Load is
/// `float(std::uint64_t)`. The loop is written in blocks of kMseLanes so that a compiler can
/// keep the lanes in vector registers: each lane still adds its elements in index order.
template <typename Load>
WQ_HD inline FitSums mse_pass(const Load& load, std::uint64_t n, AffineParams p, float max_code) {
  FitSums lane[kMseLanes];
  std::uint64_t i = 0;
  for (; i + kMseLanes <= n; i += kMseLanes) {
    for (int j = 0; j < kMseLanes; ++j) fit_add(&lane[j], load(i + j), p, max_code);
  }
  for (int j = 0; i + j < n; ++j) fit_add(&lane[j], load(i + j), p, max_code);
  return combine_fit_lanes(lane);
}

/// R of §4: rounds a candidate's binary32 scale and min to the stored dtype. False when the
/// candidate must be dropped: a scale that is not > 0, a value that is not finite or has no
/// finite binary16.
WQ_HD inline bool usable_candidate(float scale, float min, bool f16_params, AffineParams* out) {
  if (!is_finite(scale) || !is_finite(min)) return false;
  if (f16_params) {
    if (f16_overflows(scale) || f16_overflows(min)) return false;
    scale = round_through_f16(scale);
    min = round_through_f16(min);
  }
  if (!(scale > 0.0f)) return false;
  *out = AffineParams{scale, min};
  return true;
}

/// The least-squares refit of §4.1 step 4 from a pass's sums over n elements; false when the
/// candidate stops.
WQ_HD inline bool mse_refit(const FitSums& s, std::uint64_t n, bool f16_params, AffineParams* out) {
  const double count = static_cast<double>(n);
  const double det = sub_rn(mul_rn(count, s.qq), mul_rn(s.q, s.q));
  if (!(det > 0.0)) return false;
  const double scale = div_rn(sub_rn(mul_rn(count, s.qx), mul_rn(s.q, s.x)), det);
  const double min = div_rn(sub_rn(s.x, mul_rn(scale, s.q)), count);
  return usable_candidate(narrow_rn(scale), narrow_rn(min), f16_params, out);
}

/// The candidates of §4.1 steps 1-2 after min-max `p0` (scale > 0) of the finite range
/// [lo, hi]: the range grown (b >= 2) and shrunk by one level. Returns how many were kept.
WQ_HD inline int mse_candidates(float lo, float hi, AffineParams p0, int bits, bool f16_params,
                                AffineParams out[2]) {
  const float levels = static_cast<float>(max_code(bits));
  const float zero = 0.0f;
  const float mid = add_rn(mul_rn(add_rn(lo, zero), 0.5f), mul_rn(add_rn(hi, zero), 0.5f));
  const float span = mul_rn(p0.scale, levels);
  int count = 0;
  for (int grow = 1; grow >= 0; --grow) {
    if (grow && bits < 2) continue;
    const float scale = div_rn(span, grow ? levels - 1.0f : levels + 1.0f);
    float rounded_scale = scale;
    if (f16_params) {
      if (!is_finite(scale) || f16_overflows(scale)) continue;
      rounded_scale = round_through_f16(scale);
    }
    const float min = sub_rn(mid, mul_rn(rounded_scale, mul_rn(levels, 0.5f)));
    if (usable_candidate(rounded_scale, min, f16_params, &out[count])) ++count;
  }
  return count;
}

/// The whole search of §4.1 for a group of n finite elements with finite range [lo, hi]:
/// writes the chosen parameters into *out. The status is min-max's (a range wider than
/// binary32, or F16 parameters out of range, fail exactly as they do for min-max). With a NaN
/// element every error is NaN, nothing compares less, and min-max is kept (the coder reports
/// the NaN).
///
/// `pass(ps, count, max_code, sums)` fills sums[k] with mse_pass() over the group under ps[k]
/// for k < count (count <= 3). The candidates' chains of passes are independent, so they run
/// round by round, all live candidates in one call (a backend reads the group once for all of
/// them, and their latencies overlap); the choice is then replayed in the order of §4.1 step 3
/// (candidate by candidate, pass by pass, strictly less), which gives the same parameters as
/// running the candidates one after the other.
template <typename Pass>
WQ_HD inline ParamsStatus mse_search(const Pass& pass, std::uint64_t n, float lo, float hi, int bits,
                                     bool f16_params, AffineParams* out) {
  AffineParams p[3];
  const ParamsStatus status = affine_params(lo, hi, bits, f16_params, &p[0]);
  if (status != ParamsStatus::kOk) return status;
  *out = p[0];
  if (p[0].scale == 0.0f) return ParamsStatus::kOk;
  const int candidates = 1 + mse_candidates(lo, hi, p[0], bits, f16_params, p + 1);
  const float levels = static_cast<float>(max_code(bits));
  AffineParams tried[3][kMsePasses];
  double err[3][kMsePasses];
  int rounds[3] = {0, 0, 0};
  bool live[3] = {true, candidates > 1, candidates > 2};
  for (int round = 0; round < kMsePasses; ++round) {
    AffineParams now[3];
    int which[3], count = 0;
    for (int c = 0; c < candidates; ++c) {
      if (live[c]) {
        now[count] = p[c];
        which[count++] = c;
      }
    }
    if (count == 0) break;
    FitSums sums[3];
    pass(now, count, levels, sums);
    for (int k = 0; k < count; ++k) {
      const int c = which[k];
      tried[c][round] = p[c];
      err[c][round] = sums[k].err;
      rounds[c] = round + 1;
      if (round + 1 == kMsePasses || !mse_refit(sums[k], n, f16_params, &p[c])) live[c] = false;
    }
  }
  double best = err[0][0];  // min-max's first pass sets the first best
  for (int c = 0; c < candidates; ++c) {
    for (int round = 0; round < rounds[c]; ++round) {
      if (err[c][round] < best) {
        best = err[c][round];
        *out = tried[c][round];
      }
    }
  }
  return ParamsStatus::kOk;
}

/// The codec's own pass as mse_search() calls it.
template <typename Load>
struct CodecPass {
  const Load& load;
  std::uint64_t n;
  WQ_HD void operator()(const AffineParams* ps, int count, float max_code, FitSums* sums) const {
    for (int k = 0; k < count; ++k) sums[k] = mse_pass(load, n, ps[k], max_code);
  }
};

/// mse_search() with the codec's own pass over elements load(0) .. load(n - 1).
template <typename Load>
WQ_HD inline ParamsStatus mse_params(const Load& load, std::uint64_t n, float lo, float hi, int bits,
                                     bool f16_params, AffineParams* out) {
  return mse_search(CodecPass<Load>{load, n}, n, lo, hi, bits, f16_params, out);
}

}  // namespace wq::codec
