#include "cpu/affine_kernels.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "cpu/bit_packing.h"
#include "cpu/cpu_features.h"
#include "cpu/dequantize_f32_avx2.h"
#include "cpu/element_io.h"
#include "cpu/lanes.h"
#include "cpu/quantize_f32_avx2.h"
#include "cpu/quantize_groups_avx2.h"
#include "cpu/reciprocal_code.h"
#include "wq/error.h"

namespace wq::detail {
namespace {

// Work is done in blocks of codes that stay in L1; a multiple of 8 so blocks pack to whole
// bytes.
constexpr std::uint64_t kBlock = 4096;

// The codes of one chunk of groups, packed once at its end (chunks are sized to fit in L2).
thread_local std::vector<std::uint8_t> t_chunk_codes;

// Each kernel below is written once for L lanes and compiled twice: L = 4 for the baseline
// target and L = 8 inside target("avx2,fma") entry points, picked at run time. No lambdas in
// the hot paths: a lambda would be compiled for the baseline target even when called from an
// AVX2 function. -ffp-contract=off applies to both, so neither fuses a multiply and an add
// and both give the same bytes (the tests run both).

// NaN never wins a comparison, so it is skipped here; the quantize pass reports it.
template <DType D, int L>
WQ_INLINE void minmax_run(const std::byte* src, std::uint64_t begin, std::uint64_t end, float* lo_out,
                          float* hi_out) {
  const FloatLanes<L> inf = FloatLanes<L>{} + std::numeric_limits<float>::infinity();
  FloatLanes<L> lo0 = inf, lo1 = inf, hi0 = -inf, hi1 = -inf;
  std::uint64_t i = begin;
  for (; i + 2 * L <= end; i += 2 * L) {
    const FloatLanes<L> a = load_lanes<D, L>(src, i), b = load_lanes<D, L>(src, i + L);
    lo0 = a < lo0 ? a : lo0;
    hi0 = a > hi0 ? a : hi0;
    lo1 = b < lo1 ? b : lo1;
    hi1 = b > hi1 ? b : hi1;
  }
  lo0 = lo1 < lo0 ? lo1 : lo0;
  hi0 = hi1 > hi0 ? hi1 : hi0;
  float lo = *lo_out, hi = *hi_out;
  const float lo_lanes = min_of_lanes(lo0), hi_lanes = max_of_lanes(hi0);
  lo = lo_lanes < lo ? lo_lanes : lo;
  hi = hi_lanes > hi ? hi_lanes : hi;
  for (; i < end; ++i) {
    const float x = load_f32<D>(src, i);
    lo = x < lo ? x : lo;
    hi = x > hi ? x : hi;
  }
  *lo_out = lo;
  *hi_out = hi;
}

// L elements: the codec's code expression evaluated lane-wise; the integer-valued float
// result is both stored as the code and used for the error.
template <int L>
WQ_INLINE void store_codes(FloatLanes<L> q, std::uint8_t* codes) {
  const ByteLanes<L> bytes = low_bytes(__builtin_convertvector(q, IntLanes<L>));
  std::memcpy(codes, &bytes, L);
}

template <DType D, int L>
WQ_INLINE void quantize_lanes(const std::byte* src, std::uint64_t i, FloatLanes<L> scale, FloatLanes<L> min,
                              FloatLanes<L> top, std::uint8_t* codes, LaneStats<L>& stats) {
  const FloatLanes<L> x = load_lanes<D, L>(src, i);
  const FloatLanes<L> q = codec::affine_code_value(x, scale, min, top);
  store_codes<L>(q, codes);
  stats.add(x, scale * q + min);
}

// L elements through the reciprocal (reciprocal_code.h); a vector with a lane the proof does
// not cover is recomputed with the codec's division. One vector at a time: with two, the
// temporaries and the constants no longer fit in 16 registers and the accumulators spill.
template <DType D, int L>
WQ_INLINE void quantize_lanes_reciprocal(const std::byte* src, std::uint64_t i, FloatLanes<L> scale,
                                         FloatLanes<L> min, FloatLanes<L> r, FloatLanes<L> top, std::uint8_t* codes,
                                         LaneStats<L>& stats) {
  const FloatLanes<L> x = load_lanes<D, L>(src, i);
  const FloatLanes<L> d = x - min;
  IntLanes<L> bad;
  FloatLanes<L> q = reciprocal_code_value<L>(d, r, top, &bad);
  if (__builtin_expect(any_lane(bad), 0)) q = codec::affine_code_value(x, scale, min, top);
  store_codes<L>(q, codes);
  stats.add_error(x, d - scale * q);
}

// How far ahead quantize_run() fetches: one batch of groups (see quantize_groups_impl), so that
// the next batch's range pass finds its data in cache.
constexpr std::uint64_t kPrefetchElements = 2048;

// One run of one group: codes into `codes`, error into `stats`.
template <DType D, int L>
WQ_INLINE void quantize_run(const std::byte* src, std::uint64_t begin, std::uint64_t end, codec::AffineParams p,
                            float reciprocal, float max_code, std::uint8_t* codes, LaneStats<L>& stats) {
  const std::uint64_t n = end - begin;
  if (p.scale == 0.0f) {  // a constant group: every code is 0, every decoded value is min
    std::memset(codes, 0, n);
    for (std::uint64_t i = 0; i < n; ++i) stats.add_one(load_f32<D>(src, begin + i), p.min);
    return;
  }
  const FloatLanes<L> zero{};
  const FloatLanes<L> scale = zero + p.scale, min = zero + p.min, top = zero + max_code;
  // Local accumulators, two to hide the adds' latency: the caller's may be aliased by the
  // byte stores of the codes, which would keep them in memory across the loop.
  LaneStats<L> first = stats, second;
  std::uint64_t i = 0;
  if (reciprocal_is_exact_enough(p.scale)) {
    const FloatLanes<L> r = zero + reciprocal;
    // The next batch's range pass would wait on memory while this loop only reads the cache:
    // fetch ahead, one line per iteration (F32), a batch or a row (channels) ahead.
    const std::byte* ahead = src + kElementBytes<D> * (begin + std::max<std::uint64_t>(n, kPrefetchElements));
    if constexpr (D == DType::kF32 && L == 8) {  // only ever compiled into the AVX2 entry points
      const F32Run run{begin, end, p, reciprocal};
      quantize_runs_f32_avx2(src, &run, 1, max_code, codes, begin, 4 * std::max<std::uint64_t>(n, kPrefetchElements),
                             lane_data(&first.signal), lane_data(&first.error), lane_data(&first.max_error), &i);
    }
    for (; i + 2 * L <= n; i += 2 * L) {
      __builtin_prefetch(ahead + kElementBytes<D> * i);
      quantize_lanes_reciprocal<D, L>(src, begin + i, scale, min, r, top, codes + i, first);
      quantize_lanes_reciprocal<D, L>(src, begin + i + L, scale, min, r, top, codes + i + L, second);
    }
  } else {
    for (; i + 2 * L <= n; i += 2 * L) {
      quantize_lanes<D, L>(src, begin + i, scale, min, top, codes + i, first);
      quantize_lanes<D, L>(src, begin + i + L, scale, min, top, codes + i + L, second);
    }
  }
  for (; i + L <= n; i += L) quantize_lanes<D, L>(src, begin + i, scale, min, top, codes + i, first);
  for (; i < n; ++i) {
    const float x = load_f32<D>(src, begin + i);
    const std::uint32_t q = codec::affine_code(x, p, max_code);
    codes[i] = static_cast<std::uint8_t>(q);
    first.add_one(x, approx_decoded(static_cast<float>(q), p));
  }
  first.merge(second);
  stats = first;
}

}  // namespace


namespace {

// S() of design.md §3 for F16 scales on four lanes with F16C: vcvtps2ph rounds to nearest even
// exactly as codec::f32_to_f16_bits does for finite values (the cast tests compare the two on
// random bit patterns). Returns false, leaving *scale and *min alone, when a lane has no finite
// binary16 (codec::f16_overflows): the scalar loop then reports it.
__attribute__((target("avx2,f16c"))) bool round_through_f16_f16c(FloatLanes<4>* scale, FloatLanes<4>* min) {
  __m128 sv, mv;
  std::memcpy(&sv, scale, sizeof sv);
  std::memcpy(&mv, min, sizeof mv);
  const __m128i sh = _mm_cvtps_ph(sv, _MM_FROUND_TO_NEAREST_INT), mh = _mm_cvtps_ph(mv, _MM_FROUND_TO_NEAREST_INT);
  const __m128i magnitude = _mm_and_si128(_mm_unpacklo_epi64(sh, mh), _mm_set1_epi16(0x7fff));
  if (_mm_movemask_epi8(_mm_cmpeq_epi16(magnitude, _mm_set1_epi16(0x7c00))) != 0) return false;
  sv = _mm_cvtph_ps(sh);
  mv = _mm_cvtph_ps(mh);
  std::memcpy(scale, &sv, sizeof sv);
  std::memcpy(min, &mv, sizeof mv);
  return true;
}

// Four groups' parameters, interleaved as AffineParams, and their coverage (Coverage is one
// byte, 1 where every element lies inside): two shuffles and byte stores, where storing lane by
// lane spilled the vectors and read each lane back (this function was 15 % of the samples of
// symmetric 2-bit groups of 32 in perf, 11 % now).
static_assert(sizeof(codec::AffineParams) == 2 * sizeof(float) && sizeof(codec::Coverage) == 1);
WQ_INLINE void store_params(FloatLanes<4> scale, FloatLanes<4> min, codec::AffineParams* out) {
  const FloatLanes<4> pairs[2] = {__builtin_shufflevector(scale, min, 0, 4, 1, 5),
                                  __builtin_shufflevector(scale, min, 2, 6, 3, 7)};
  std::memcpy(out, pairs, sizeof pairs);
}
WQ_INLINE void store_coverage(FloatLanes<4> lo, FloatLanes<4> hi, FloatLanes<4> min, FloatLanes<4> r, float max_code,
                              codec::Coverage* out) {
  const IntLanes<4> inside = codec::reciprocal_ends_inside(lo, hi, min, r, FloatLanes<4>{} + max_code);
  const ByteLanes<4> bytes = low_bytes(inside & 1);
  std::memcpy(out, &bytes, sizeof bytes);
}

}  // namespace

int params_of_ranges(const float* lo, const float* hi, int count, const codec::Recipe& recipe,
                     codec::AffineParams* params, float* reciprocal, UniformGroupsResult* result,
                     codec::Coverage* coverage) {
  const int bits = recipe.bits;
  const bool f16_params = recipe.f16_params;
  const codec::RangeRule rule = recipe.rule;
  // Four groups at a time with the codec's own expression, so that the two divisions of each
  // group run four to an instruction; a block with a range that is not finite is left to the
  // scalar loop below, which finds the first failing group and why.
  using V = FloatLanes<4>;
  const float max_code_f = static_cast<float>(codec::max_code(bits));
  const V max_code = V{} + max_code_f;
  const V one = V{} + 1.0f, smallest = V{} + 0x1p-126f, largest = V{} + 0x1p126f;
  int b = 0;
  const bool vector = !f16_params || use_f16c();
  if (rule == codec::RangeRule::kSymmetric) {
    // codec::symmetric_params() four groups at a time, spelled lane-wise here (its scalar form
    // is one function with a branch per F16 check); the backend suites hold both to the codec.
    // The scalar loop below takes a block with a non-finite range.
    const V zero{}, k = V{} + -static_cast<float>(1u << (bits - 1)), inverse_k = V{} + 1.0f / k[0];
    for (; vector && b + 4 <= count; b += 4) {
      V l, h;
      std::memcpy(&l, lo + b, sizeof l);
      std::memcpy(&h, hi + b, sizeof h);
      if (any_lane((((IntLanes<4>)l & 0x7f800000) == 0x7f800000) | (((IntLanes<4>)h & 0x7f800000) == 0x7f800000))) break;
      l = l + zero;
      h = h + zero;
      const V m = h >= -l ? h : l;
      // m / k as m * (1 / k): k is a power of two, so both are the same real number rounded once.
      V scale = m * inverse_k, unused = zero;
      if (f16_params && !round_through_f16_f16c(&scale, &unused)) break;
      const V min = k * scale;
      const V magnitude = (V)((IntLanes<4>)scale & 0x7fffffff);
      const V r = ((magnitude >= smallest) & (magnitude <= largest)) ? one / scale : V{};  // reciprocal_is_exact_enough
      std::memcpy(reciprocal + b, &r, sizeof r);
      store_params(scale, min, params + b);
      if (coverage != nullptr) store_coverage(l, h, min, r, max_code_f, coverage + b);
    }
  }
  for (; rule == codec::RangeRule::kMinMax && vector && b + 4 <= count; b += 4) {
    V l, h, range, scale, min;
    std::memcpy(&l, lo + b, sizeof l);
    std::memcpy(&h, hi + b, sizeof h);
    codec::affine_unrounded_params(l, h, max_code, &range, &scale, &min);
    // A finite range means finite lo and hi too (inf or NaN in either makes it inf or NaN).
    if (any_lane(((IntLanes<4>)range & 0x7f800000) == 0x7f800000)) break;
    if (f16_params && !round_through_f16_f16c(&scale, &min)) break;
    const V r = ((scale >= smallest) & (scale <= largest)) ? one / scale : V{};  // reciprocal_is_exact_enough
    std::memcpy(reciprocal + b, &r, sizeof r);
    store_params(scale, min, params + b);
    if (coverage != nullptr) store_coverage(l, h, min, r, max_code_f, coverage + b);
  }
  for (; b < count; ++b) {
    const codec::ParamsStatus status =
        codec::is_finite(lo[b]) && codec::is_finite(hi[b]) ? codec::rule_params(lo[b], hi[b], recipe, &params[b])
                                                           : codec::ParamsStatus::kOk;
    if (!codec::is_finite(lo[b]) || !codec::is_finite(hi[b]) || status != codec::ParamsStatus::kOk) {
      result->nonfinite = status == codec::ParamsStatus::kOk;
      result->status = status;
      result->lo = lo[b];
      result->hi = hi[b];
      return b;
    }
    const float s = params[b].scale;
    reciprocal[b] = s != 0.0f && reciprocal_is_exact_enough(s) ? codec::div_rn(1.0f, s) : 0.0f;
    if (coverage != nullptr) coverage[b] = codec::reciprocal_coverage(lo[b], hi[b], params[b], reciprocal[b], max_code_f);
  }
  return count;
}

namespace {

std::string describe_value(float x) {
  if (std::isnan(x)) return "NaN";
  return x > 0 ? "+infinity" : "-infinity";
}

template <DType D>
[[noreturn]] void report_nonfinite(const std::byte* src, std::uint64_t begin, std::uint64_t end,
                                   std::string_view tensor) {
  for (std::uint64_t i = begin; i < end; ++i) {
    const float x = load_f32<D>(src, i);
    if (!codec::is_finite(x)) {
      throw Error(ErrorCode::kBadData,
                  "tensor '" + std::string(tensor) + "': element " + std::to_string(i) + " is " + describe_value(x),
                  {{"keep_nonfinite", ""}});
    }
  }
  throw Error(ErrorCode::kBadData, "tensor '" + std::string(tensor) +
                                       "': quantization error is not finite (values too large?)");
}

// NaN in the input makes the binary32 error sums NaN (min/max skip NaN; its code is 0);
// infinities never get here (the range check refuses them). A sum that is +infinity only
// overflowed binary32 (|x| beyond ~1e19): the statistics are then recomputed in binary64.
template <DType D>
void check_and_fix_stats(const std::byte* src, const GroupGeometry& g, const codec::AffineParams* params,
                         int bits, std::uint64_t begin, std::uint64_t end, ErrorStats* local,
                         std::string_view tensor) {
  if (std::isnan(local->error_energy) || std::isnan(local->signal_energy)) report_nonfinite<D>(src, begin, end, tensor);
  if (std::isfinite(local->error_energy) && std::isfinite(local->signal_energy)) return;
  ErrorStats exact;
  exact.count = end - begin;
  const float max_code = static_cast<float>(codec::max_code(bits));
  for_each_group_run(g, begin, end, [&](std::uint64_t s, std::uint64_t t, std::uint64_t k) {
    for (std::uint64_t i = s; i < t; ++i) {
      const double x = load_f32<D>(src, i);
      const double e = x - codec::affine_value(codec::affine_code(static_cast<float>(x), params[k], max_code), params[k]);
      exact.signal_energy += x * x;
      exact.error_energy += e * e;
      exact.max_abs_error = std::max(exact.max_abs_error, std::fabs(e));
    }
  });
  *local = exact;
}

template <DType D, int L>
WQ_INLINE void quantize_elements_impl(const std::byte* src, const GroupGeometry& g, const codec::AffineParams* params,
                                      int bits, std::uint64_t begin, std::uint64_t end, std::uint8_t* codes,
                                      ErrorStats* local) {
  alignas(64) std::uint8_t block[kBlock];
  const float max_code = static_cast<float>(codec::max_code(bits));
  LaneStats<L> stats;
  // One division per distinct scale (per-tensor: one); NaN: no scale yet (a scale may be negative).
  float last_scale = std::numeric_limits<float>::quiet_NaN(), reciprocal = 0.0f;
  for (std::uint64_t b0 = begin; b0 < end; b0 += kBlock) {
    const std::uint64_t b1 = std::min(end, b0 + kBlock);
    // 8-bit codes are their own packed stream: written in place, not copied from the block.
    std::uint8_t* out = bits == 8 ? codes + b0 : block;
    for (std::uint64_t s = b0; s < b1;) {  // runs of one group (for_each_group_run, unrolled by hand)
      const std::uint64_t row = s / g.cols;
      const std::uint64_t j = (s - row * g.cols) / g.group_size;
      const std::uint64_t t = std::min(b1, row * g.cols + std::min((j + 1) * g.group_size, g.cols));
      const codec::AffineParams p = params[row * g.groups_per_row + j];
      if (p.scale != last_scale && p.scale != 0.0f) {
        last_scale = p.scale;
        reciprocal = codec::div_rn(1.0f, p.scale);
      }
      quantize_run<D, L>(src, s, t, p, reciprocal, max_code, out + (s - b0), stats);
      s = t;
    }
    stats.fold_into(local, b1 - b0);
    if (bits != 8) pack_block(block, b1 - b0, bits, codes + b0 / 8 * bits);
  }
}

// Groups are handled in batches: the ranges of a few groups first, then their parameters, then
// their codes. The parameters cost two dependent divisions per group (scale, then its
// reciprocal); a batch makes them independent of each other, so they overlap instead of
// stalling every group. A batch stays in L1.
constexpr int kBatchGroups = 16;
constexpr std::uint64_t kBatchElements = kPrefetchElements;

template <DType D, int L>
WQ_INLINE GroupFailure quantize_groups_impl(const std::byte* src, const GroupGeometry& g, const codec::Recipe& recipe,
                                            std::uint64_t first_group, std::uint64_t last_group, std::uint64_t begin,
                                            codec::AffineParams* params, std::uint8_t* chunk_codes, ErrorStats* local) {
  const int bits = recipe.bits;
  const float max_code = static_cast<float>(codec::max_code(bits));
  LaneStats<L> stats;
  std::uint64_t unfolded = 0;
  std::uint64_t row = first_group / g.groups_per_row;
  std::uint64_t j = first_group % g.groups_per_row;
  std::uint64_t starts[kBatchGroups], ends[kBatchGroups];
  float lo[kBatchGroups], hi[kBatchGroups], reciprocal[kBatchGroups];
  for (std::uint64_t k = first_group; k < last_group;) {
    int count = 0;
    for (std::uint64_t elements = 0; count < kBatchGroups && k + count < last_group && elements < kBatchElements; ++count) {
      const std::uint64_t offset = j * g.group_size;
      starts[count] = row * g.cols + offset;
      ends[count] = starts[count] + std::min(g.group_size, g.cols - offset);
      lo[count] = std::numeric_limits<float>::infinity();
      hi[count] = -lo[count];
      minmax_run<D, L>(src, starts[count], ends[count], &lo[count], &hi[count]);
      elements += ends[count] - starts[count];
      if (++j == g.groups_per_row) {
        j = 0;
        ++row;
      }
    }
    for (int b = 0; b < count; ++b) {  // the first failing group in order, as one at a time would find
      GroupFailure failure{true, !codec::is_finite(lo[b]) || !codec::is_finite(hi[b]), codec::ParamsStatus::kOk,
                           k + b, starts[b], ends[b], lo[b], hi[b]};
      if (failure.nonfinite) return failure;
      failure.status = codec::rule_params(lo[b], hi[b], recipe, &params[k + b]);
      if (failure.status != codec::ParamsStatus::kOk) return failure;
      reciprocal[b] = params[k + b].scale != 0.0f ? codec::div_rn(1.0f, params[k + b].scale) : 0.0f;
    }
    std::uint64_t done[kBatchGroups] = {};
    if constexpr (D == DType::kF32 && L == 8) {  // the whole batch in one AVX2 call (only in AVX2 entry points)
      F32Run runs[kBatchGroups];
      for (int b = 0; b < count; ++b) runs[b] = F32Run{starts[b], ends[b], params[k + b], reciprocal[b]};
      const std::uint64_t span = ends[count - 1] - starts[0];
      quantize_runs_f32_avx2(src, runs, count, max_code, chunk_codes, begin,
                             4 * std::max<std::uint64_t>(span, kPrefetchElements), lane_data(&stats.signal), lane_data(&stats.error),
                             lane_data(&stats.max_error), done);
    }
    for (int b = 0; b < count; ++b) {  // what the batch call left: short tails, unusual scales, other dtypes
      const std::uint64_t s = starts[b] + done[b];
      if (s < ends[b]) {
        quantize_run<D, L>(src, s, ends[b], params[k + b], reciprocal[b], max_code, chunk_codes + (s - begin), stats);
      }
      unfolded += ends[b] - starts[b];
    }
    if (unfolded >= kBlock) {
      stats.fold_into(local, unfolded);
      unfolded = 0;
    }
    k += static_cast<std::uint64_t>(count);
  }
  stats.fold_into(local, unfolded);
  return GroupFailure{};
}

// Whole groups of one size (F32, BF16 or F16 input) through quantize_uniform_groups_avx2,
// a few thousand elements per call so that its binary32 sums are folded into binary64 often.
// `out` is where the packed codes of first_group begin.
GroupFailure quantize_uniform_groups(DType dtype, const std::byte* src, const GroupGeometry& g,
                                     const codec::Recipe& recipe, std::uint64_t first_group,
                                     std::uint64_t last_group, codec::AffineParams* params, std::uint8_t* out,
                                     ErrorStats* local) {
  const std::uint64_t size = g.group_size;
  const std::uint64_t step = std::max<std::uint64_t>(1, kBlock / size);
  const std::uint64_t element_bytes = dtype_size(dtype);
  LaneStats<8> stats;
  for (std::uint64_t k = first_group; k < last_group; k += step) {
    const std::uint64_t n = std::min(step, last_group - k);
    const UniformGroupsResult r = quantize_uniform_groups_avx2(
        dtype, src + element_bytes * k * size, n, size, recipe, params + k, out + (k - first_group) * size / 8 * recipe.bits, lane_data(&stats.signal),
        lane_data(&stats.error), lane_data(&stats.max_error));
    stats.fold_into(local, r.done * size);
    if (r.done < n) {
      const std::uint64_t failed = k + r.done;
      return GroupFailure{true, r.nonfinite, r.status, failed, failed * size, (failed + 1) * size, r.lo, r.hi};
    }
  }
  return GroupFailure{};
}

// --- ISA entry points: the same kernels, compiled for the baseline and for AVX2. The AVX2 ones
// are `flatten`: AVX2-only helpers (any_lane) are inlined into them through generic code. ----

template <DType D>
void minmax_base(const std::byte* src, std::uint64_t b, std::uint64_t e, float* lo, float* hi) {
  minmax_run<D, 4>(src, b, e, lo, hi);
}
template <DType D>
__attribute__((target("avx2,fma"), flatten)) void minmax_avx2(const std::byte* src, std::uint64_t b, std::uint64_t e,
                                                     float* lo, float* hi) {
  minmax_run<D, 8>(src, b, e, lo, hi);
}

template <DType D>
void quantize_elements_base(const std::byte* src, const GroupGeometry& g, const codec::AffineParams* p, int bits,
                            std::uint64_t b, std::uint64_t e, std::uint8_t* codes, ErrorStats* local) {
  quantize_elements_impl<D, 4>(src, g, p, bits, b, e, codes, local);
}
template <DType D>
__attribute__((target("avx2,fma"), flatten)) void quantize_elements_avx2(const std::byte* src, const GroupGeometry& g,
                                                                const codec::AffineParams* p, int bits,
                                                                std::uint64_t b, std::uint64_t e,
                                                                std::uint8_t* codes, ErrorStats* local) {
  quantize_elements_impl<D, 8>(src, g, p, bits, b, e, codes, local);
}

template <DType D>
GroupFailure quantize_groups_base(const std::byte* src, const GroupGeometry& g, const codec::Recipe& recipe, std::uint64_t k0,
                                  std::uint64_t k1, std::uint64_t b, codec::AffineParams* p, std::uint8_t* codes,
                                  ErrorStats* local) {
  return quantize_groups_impl<D, 4>(src, g, recipe, k0, k1, b, p, codes, local);
}
template <DType D>
__attribute__((target("avx2,fma"), flatten)) GroupFailure quantize_groups_avx2(const std::byte* src, const GroupGeometry& g,
                                                                               const codec::Recipe& recipe, std::uint64_t k0,
                                                                               std::uint64_t k1, std::uint64_t b,
                                                                               codec::AffineParams* p, std::uint8_t* codes,
                                                                               ErrorStats* local) {
  return quantize_groups_impl<D, 8>(src, g, recipe, k0, k1, b, p, codes, local);
}

// fma(scale, q, min) is one instruction with FMA and a libm call per element without it; both
// compute the same correctly rounded fma.
template <DType D>
WQ_INLINE void dequantize_run(std::byte* dst, std::uint64_t s, std::uint64_t t, const std::uint8_t* codes,
                              codec::AffineParams p) {
  for (std::uint64_t i = s; i < t; ++i) store_f32<D>(dst, i, codec::affine_value(codes[i - s], p));
}
template <DType D>
void dequantize_run_base(std::byte* dst, std::uint64_t s, std::uint64_t t, const std::uint8_t* codes,
                         codec::AffineParams p) {
  dequantize_run<D>(dst, s, t, codes, p);
}
template <DType D>
__attribute__((target("avx2,fma"))) void dequantize_run_avx2(std::byte* dst, std::uint64_t s, std::uint64_t t,
                                                             const std::uint8_t* codes, codec::AffineParams p) {
  dequantize_run<D>(dst, s, t, codes, p);
}

}  // namespace

void minmax_elements(DType dtype, const std::byte* src, std::uint64_t begin, std::uint64_t end, float* lo,
                     float* hi) {
  dispatch_floating(dtype, [&]<DType D>() {
    (use_avx2() ? minmax_avx2<D> : minmax_base<D>)(src, begin, end, lo, hi);
  });
}

void quantize_elements(DType dtype, const std::byte* src, const GroupGeometry& geometry,
                       const codec::AffineParams* params, int bits, codec::Coverage coverage, std::uint64_t begin,
                       std::uint64_t end, std::uint8_t* codes, ErrorStats* stats, std::string_view tensor) {
  dispatch_floating(dtype, [&]<DType D>() {
    ErrorStats local;
    // One range over the whole tensor: the whole-group kernel's codes pass, 16 elements at a
    // time (clamped unless `coverage` says the range contains every element); the generic kernels
    // (which always clamp) do the rest.
    const bool span = geometry.groups == 1 && avx2_takes(D);
    std::uint64_t done = begin;
    if (span) {
      const float s = params[0].scale;
      const float reciprocal = s != 0.0f && reciprocal_is_exact_enough(s) ? codec::div_rn(1.0f, s) : 0.0f;
      const std::uint64_t span_end = begin + (end - begin) / 16 * 16;
      LaneStats<8> lanes;
      for (; done < span_end;) {  // binary32 sums folded into binary64 every kBlock elements
        const std::uint64_t n = std::min<std::uint64_t>(span_end - done, kBlock);
        quantize_span_avx2(D, src + kElementBytes<D> * done, n, params[0], reciprocal, coverage, bits,
                           codes + done / 8 * static_cast<std::uint64_t>(bits), lane_data(&lanes.signal), lane_data(&lanes.error),
                           lane_data(&lanes.max_error));
        lanes.fold_into(&local, n);
        done += n;
      }
    }
    if (done < end) {
      (use_avx2() ? quantize_elements_avx2<D> : quantize_elements_base<D>)(src, geometry, params, bits, done, end,
                                                                            codes, &local);
    }
    check_and_fix_stats<D>(src, geometry, params, bits, begin, end, &local, tensor);
    stats->merge(local);
  });
}

GroupFailure quantize_groups(DType dtype, const std::byte* src, const GroupGeometry& g, const codec::Recipe& recipe,
                             std::uint64_t first_group, std::uint64_t last_group, std::uint64_t begin,
                             std::uint64_t end, codec::AffineParams* params, std::uint8_t* codes, ErrorStats* stats,
                             std::string_view tensor) {
  const int bits = recipe.bits;
  return dispatch_floating(dtype, [&]<DType D>() {
    ErrorStats local;
    const bool uniform = avx2_takes(D) && g.group_size % 16 == 0 && g.cols % g.group_size == 0;
    // The packed stream is written in place where the kernel packs (the uniform kernel; 8-bit
    // codes are their own stream). Otherwise codes go through a per-thread buffer of one byte
    // per code, packed once at the end (it stays in L2).
    const bool packs_in_place = bits == 8 || uniform;
    std::uint8_t* chunk_codes = codes + begin / 8 * static_cast<std::uint64_t>(bits);
    if (!packs_in_place) {
      if (t_chunk_codes.size() < end - begin) t_chunk_codes.resize(end - begin);
      chunk_codes = t_chunk_codes.data();
    }
    const GroupFailure failure =
        uniform ? quantize_uniform_groups(D, src, g, recipe, first_group, last_group, params, chunk_codes, &local)
                : (use_avx2() ? quantize_groups_avx2<D> : quantize_groups_base<D>)(
                      src, g, recipe, first_group, last_group, begin, params, chunk_codes, &local);
    if (failure.failed) return failure;
    check_and_fix_stats<D>(src, g, params, bits, begin, end, &local, tensor);
    if (!packs_in_place) pack_block(chunk_codes, end - begin, bits, codes + begin / 8 * bits);
    stats->merge(local);
    return GroupFailure{};
  });
}

void throw_first_nonfinite(DType dtype, const std::byte* src, std::uint64_t begin, std::uint64_t end,
                           std::string_view tensor) {
  dispatch_floating(dtype, [&]<DType D>() { report_nonfinite<D>(src, begin, end, tensor); });
  throw Error(ErrorCode::kInternal, "unreachable");
}

void dequantize_elements(DType dtype, std::byte* dst, const GroupGeometry& geometry,
                         const codec::AffineParams* params, int bits, std::uint64_t begin, std::uint64_t end,
                         const std::uint8_t* codes, bool stream) {
  const bool avx2 = use_avx2();
  if (avx2 && dtype == DType::kF32) {
    dequantize_f32_avx2(reinterpret_cast<float*>(dst), geometry, params, bits, begin, end, codes, stream);
    return;
  }
  if (dtype != DType::kF32 && avx2_takes(dtype)) {
    dequantize_half_avx2(dtype, dst, geometry, params, bits, begin, end, codes, stream);
    return;
  }
  dispatch_floating(dtype, [&]<DType D>() {
    alignas(64) std::uint8_t block[kBlock];
    for (std::uint64_t b0 = begin; b0 < end; b0 += kBlock) {
      const std::uint64_t b1 = std::min(end, b0 + kBlock);
      unpack_block(codes + b0 / 8 * bits, b1 - b0, bits, block);
      for_each_group_run(geometry, b0, b1, [&](std::uint64_t s, std::uint64_t t, std::uint64_t g) {
        (avx2 ? dequantize_run_avx2<D> : dequantize_run_base<D>)(dst, s, t, block + (s - b0), params[g]);
      });
    }
  });
}

}  // namespace wq::detail
