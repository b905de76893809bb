// The `mse` range of docs/container-format.md §4.1: per group, a least-squared-error search over
// (scale, min) that starts from min-max and keeps it unless something is strictly better.
//
// Every backend runs these functions, so the choice between candidates is made by one
// definition of the error. Its sums have a fixed order (element i in lane i mod 8 of block
// i / 2048, binary32 within a lane's block, binary64 totals combined pairwise) that a SIMD loop
// keeps on the CPU and one thread per group keeps on a GPU: the same parameters, bit for bit,
// everywhere.
#pragma once

#include <cstdint>

#include "wq/codec/affine.h"
#include "wq/codec/config.h"
#include "wq/codec/half.h"

namespace wq::codec {

/// Lanes of the pass sums; the order of operations of the search depends on it.
inline constexpr int kMseLanes = 8;
/// Elements per block of the binary32 sums (256 per lane): each lane's binary32 accumulators
/// are added to its binary64 totals at the end of a block, which bounds their rounding error.
/// (A lane's Sq and Sqq over a block are integers below 2^24, 256 * 255^2: exact in binary32
/// too, which a SIMD spelling may use.)
inline constexpr std::uint64_t kMseBlock = 2048;
/// Passes per candidate, with a least-squares refit between two passes.
inline constexpr int kMsePasses = 5;

/// One pass's sums over a group, in binary64: squared error, and the terms of the
/// least-squares fit of (scale, min) to the pass's codes q. (No default initialisers: arrays
/// of them sit in the search's inner loops; `FitSums s{}` is all zeros.)
struct FitSums {
  double err, q, qq, x, qx;
};

/// One lane's binary32 accumulators within a block (§4.1 step 3).
struct BlockLane {
  float err = 0, qx = 0;
};

/// Adds one element to a lane of a block: its code under `p` (scale > 0) and decoded value,
/// then e*e and q*x, each fused into the lane's binary32 sum with one rounding. Returns the
/// code, for the exact integer sums.
WQ_HD inline float block_lane_add(BlockLane* lane, float x, AffineParams p, float max_code) {
  const float q = affine_code_value(x, p.scale, p.min, max_code);
  const float e = sub_rn(x, fma_rn(p.scale, q, p.min));
  lane->err = fma_rn(e, e, lane->err);
  lane->qx = fma_rn(q, x, lane->qx);
  return q;
}

WQ_HD inline double combine_lanes(double l0, double l1, double l2, double l3, double l4, double l5, double l6,
                                  double l7) {
  return add_rn(add_rn(add_rn(l0, l1), add_rn(l2, l3)), add_rn(add_rn(l4, l5), add_rn(l6, l7)));
}

WQ_HD inline double combine_lanes(const double (&l)[kMseLanes]) {
  return combine_lanes(l[0], l[1], l[2], l[3], l[4], l[5], l[6], l[7]);
}

/// Sx of §4.1 over elements load(0) .. load(n - 1): binary64 lanes, each in index order,
/// combined pairwise. The same in every pass of a group.
template <typename Load>
WQ_HD inline double mse_sum_x(const Load& load, std::uint64_t n) {
  double lane[kMseLanes] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (std::uint64_t i = 0; i < n; ++i) lane[i % kMseLanes] = add_rn(lane[i % kMseLanes], static_cast<double>(load(i)));
  return combine_lanes(lane);
}

/// The pass of §4.1 step 3 over elements load(0) .. load(n - 1) under `p` (scale > 0), with
/// `sum_x` = mse_sum_x() of the same elements. Load is `float(std::uint64_t)`.
template <typename Load>
WQ_HD inline FitSums mse_pass(const Load& load, std::uint64_t n, AffineParams p, float max_code, double sum_x) {
  double err[kMseLanes] = {0, 0, 0, 0, 0, 0, 0, 0}, qx[kMseLanes] = {0, 0, 0, 0, 0, 0, 0, 0};
  FitSums sums{};
  for (std::uint64_t begin = 0; begin < n; begin += kMseBlock) {
    const std::uint64_t end = n - begin < kMseBlock ? n : begin + kMseBlock;
    BlockLane lane[kMseLanes];
    for (std::uint64_t i = begin; i < end; ++i) {
      const double code = block_lane_add(&lane[i % kMseLanes], load(i), p, max_code);
      sums.q = add_rn(sums.q, code);  // integers below 2^53: exact
      sums.qq = add_rn(sums.qq, mul_rn(code, code));
    }
    for (int j = 0; j < kMseLanes; ++j) {
      err[j] = add_rn(err[j], static_cast<double>(lane[j].err));
      qx[j] = add_rn(qx[j], static_cast<double>(lane[j].qx));
    }
  }
  sums.err = combine_lanes(err);
  sums.qx = combine_lanes(qx);
  sums.x = sum_x;
  return sums;
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
  // Dividing by a power of two n is multiplying by 1/n, which is exact: the same real number
  // rounded the same way, bit for bit, overflow and underflow included. Groups of 32, 64, 128
  // are, and the refit sits on the search's critical path, where a division costs several
  // multiplications.
  const double difference = sub_rn(s.x, mul_rn(scale, s.q));
  const double min = (n & (n - 1)) == 0 ? mul_rn(difference, div_rn(1.0, count)) : div_rn(difference, count);
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

/// The search of §4.1 over one group as a state machine: round after round, round() gives the
/// live candidates' parameters, the backend runs their passes (mse_pass() or a spelling of it
/// that gives the same sums) and hands the sums to take(), until round() gives none. So every
/// backend runs its passes its own way while the choice between candidates is made here.
///
/// The candidates run round-major (every live candidate's pass r, then every pass r + 1: a
/// backend reads the group once for all of them) where step 3 reads candidate by candidate;
/// take() keeps the same best: step 3's "strictly less, in candidate order" chooses the least
/// err, and among equal ones the first in candidate order, which is what take() compares.
///
/// Its members have no initialisers: nothing but start() may be called first.
class MseSearch {
 public:
  /// Starts the search of a group of n finite elements with finite range [lo, hi]. The status
  /// is min-max's (a range wider than binary32, or F16 parameters out of range, fail exactly as
  /// they do for min-max); when it is not kOk there is nothing to search. With a NaN element
  /// every err is NaN, nothing compares less, and min-max is kept (the coder reports the NaN).
  WQ_HD ParamsStatus start(std::uint64_t n, float lo, float hi, int bits, bool f16_params) {
    n_ = n;
    f16_params_ = f16_params;
    levels_ = static_cast<float>(max_code(bits));
    round_ = 0;
    live_[0] = live_[1] = live_[2] = false;
    const ParamsStatus status = affine_params(lo, hi, bits, f16_params, &p_[0]);
    if (status != ParamsStatus::kOk) return status;
    best_ = p_[0];
    if (p_[0].scale == 0.0f) return ParamsStatus::kOk;  // a constant group: nothing to search
    const int more = mse_candidates(lo, hi, p_[0], bits, f16_params, p_ + 1);
    live_[0] = true;
    live_[1] = more > 0;
    live_[2] = more > 1;
    return ParamsStatus::kOk;
  }

  /// The live candidates' parameters of this round, in candidate order, into ps; how many
  /// (0: the search is over, best() is the result).
  WQ_HD int round(AffineParams ps[3]) const {
    int count = 0;
    for (int c = 0; c < 3; ++c) {
      if (live_[c]) ps[count++] = p_[c];
    }
    return count;
  }

  /// The pass sums of round()'s parameters, in its order: the best so far is updated and each
  /// candidate refitted (mse_refit()) or stopped.
  WQ_HD void take(const FitSums* sums) {
    int k = 0;
    for (int c = 0; c < 3; ++c) {
      if (!live_[c]) continue;
      const double err = sums[k].err;
      const int key = c * kMsePasses + round_;
      if (key == 0 || err < best_err_ || (err == best_err_ && key < best_key_)) {
        best_ = p_[c];  // min-max's first pass sets the first best, whatever its err
        best_err_ = err;
        best_key_ = key;
      }
      AffineParams refit;
      if (round_ + 1 == kMsePasses || !mse_refit(sums[k], n_, f16_params_, &refit)) {
        live_[c] = false;
      } else if (float_bits(refit.scale) == float_bits(p_[c].scale) && float_bits(refit.min) == float_bits(p_[c].min)) {
        // A fixed point: the remaining passes would repeat this one (same codes, same sums,
        // same refit), and an equal err later in candidate order is never chosen. Stopping
        // here changes nothing but the time.
        live_[c] = false;
      } else {
        p_[c] = refit;
      }
      ++k;
    }
    ++round_;
  }

  WQ_HD AffineParams best() const { return best_; }
  /// The largest code, max_code(bits) as a float, for the passes.
  WQ_HD float levels() const { return levels_; }

 private:
  std::uint64_t n_;
  bool f16_params_;
  float levels_;
  int round_;
  bool live_[3];
  AffineParams p_[3];
  AffineParams best_;
  double best_err_;
  int best_key_;
};

/// The whole search of §4.1 over elements load(0) .. load(n - 1) (finite range [lo, hi]) with
/// the codec's own pass, one round after another: writes the chosen parameters into *out.
/// The status is MseSearch::start()'s.
template <typename Load>
WQ_HD inline ParamsStatus mse_params(const Load& load, std::uint64_t n, float lo, float hi, int bits,
                                     bool f16_params, AffineParams* out) {
  MseSearch search;
  const ParamsStatus status = search.start(n, lo, hi, bits, f16_params);
  if (status != ParamsStatus::kOk) return status;
  const double sum_x = mse_sum_x(load, n);
  AffineParams ps[3];
  for (int count; (count = search.round(ps)) > 0;) {
    FitSums sums[3];
    for (int k = 0; k < count; ++k) sums[k] = mse_pass(load, n, ps[k], search.levels(), sum_x);
    search.take(sums);
  }
  *out = search.best();
  return ParamsStatus::kOk;
}

}  // namespace wq::codec
