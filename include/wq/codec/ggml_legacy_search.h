// wq's `mse` in the layouts of ggml's legacy types (docs/ggml-types.md §4.1): per block of 32,
// a least-squared-error choice between ggml's reference block and blocks that wq's searches
// build, for host and device.
//
// The blocks are ordinary Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 blocks that llama.cpp decodes as it decodes
// any; only how their step (and min) were chosen differs. The reference block is always a
// candidate and wins ties, so no block is ever further from x than llama-quantize's. Every
// error is the decoder's own (ggml_legacy.h's decode_block), summed in a fixed order, so the
// CPU and the GPU keep the same candidate bit for bit.
//
// The k-quants have no such search: their reference quantizers already fit each sub-block by
// least squares over a sweep of candidate grids (ggml_kquant_search.h).
#pragma once

#include <cstdint>

#include "wq/codec/config.h"
#include "wq/codec/ggml_blocks.h"
#include "wq/codec/ggml_legacy.h"
#include "wq/codec/mse.h"

namespace wq::codec::ggml {

/// Whether `type` has the search (the legacy block types).
WQ_HD constexpr bool has_mse_search(Type type) {
  return type == Type::kQ4_0 || type == Type::kQ4_1 || type == Type::kQ5_0 || type == Type::kQ5_1 ||
         type == Type::kQ8_0;
}

/// Shrunk steps tried by the symmetric search: k = 1 .. kShrinkSteps, step times
/// f_k = 1 - k^2 / 800 (from 0.1 % below the reference's step down to half of it).
inline constexpr int kShrinkSteps = 20;
/// Least-squares refits of the symmetric search's best codes, at most.
inline constexpr int kSymmetricRefits = 2;

/// The squared error of a block's decoded values: e_i = x_i - decoded_i in binary32, e_i^2
/// (exact) added in binary64 to lane i % 8 in index order, the lanes combined pairwise
/// (combine_lanes()). NaN when an element is NaN, which then never compares less.
WQ_HD inline double block_error(const float* x, const float* decoded) {
  double lane[kMseLanes] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int i = 0; i < kLegacyBlock; ++i) {
    const double e = static_cast<double>(sub_rn(x[i], decoded[i]));
    lane[i % kMseLanes] = add_rn(lane[i % kMseLanes], mul_rn(e, e));
  }
  return combine_lanes(lane);
}

/// The binary16 step that a block stores for a binary32 candidate `d`; false when it has none
/// or it is zero (a candidate to drop).
WQ_HD inline bool stored_step(float d, float* out) {
  if (!is_finite(d) || f16_overflows(d)) return false;
  *out = round_through_f16(d);
  return *out != 0.0f;
}

/// A symmetric block's codes, q = -low .. high, and its step (binary16-exact).
struct SymmetricCodes {
  float d;
  std::int8_t q[kLegacyBlock];
};

/// The codes of x under the stored step d (finite, nonzero), clamp(rint(x / d), -low, high)
/// (clamped first, then rounded half to even by the exact add-and-subtract of 1.5 * 2^23, as
/// affine_code_value()), and their decode error; d * q is what decode_block() computes.
WQ_HD inline double symmetric_candidate(const float* x, float d, int low, int high, SymmetricCodes* out) {
  const float round_magic = 12582912.0f;
  const float lo = -static_cast<float>(low), hi = static_cast<float>(high);
  float decoded[kLegacyBlock];
  out->d = d;
  for (int i = 0; i < kLegacyBlock; ++i) {
    float t = div_rn(x[i], d);
    t = t > lo ? t : lo;  // a NaN element gets -low: bounded, and its error is NaN anyway
    t = t < hi ? t : hi;
    t = sub_rn(add_rn(t, round_magic), round_magic);
    out->q[i] = static_cast<std::int8_t>(static_cast<int>(t));
    decoded[i] = mul_rn(t, d);
  }
  return block_error(x, decoded);
}

/// The symmetric search (Q4_0, Q5_0, Q8_0) of x, whose element of largest magnitude is `m`:
/// 1. the steps S(m * f_k / -low), k = 0 .. kShrinkSteps (S: rounded to binary16), each with
///    its own codes (symmetric_candidate());
/// 2. then up to kSymmetricRefits times the least-squares step of the best codes so far,
///    d = sum(x q) / sum(q^2) (binary64 sums in index order), S, recoded; it stops at the
///    first that is not strictly better or repeats the step.
/// The first candidate of least error is kept. Returns false (and leaves *best unspecified)
/// when no candidate's error is below `to_beat` (the reference block's).
template <typename Kernels>
WQ_HD inline bool search_symmetric(const float* x, float m, int low, int high, double to_beat, SymmetricCodes* best,
                                   const Kernels& kernels) {
  double best_err = to_beat;
  bool found = false;
  SymmetricCodes candidate;
  for (int k = 0; k <= kShrinkSteps; ++k) {
    const float f = sub_rn(1.0f, div_rn(static_cast<float>(k * k), 800.0f));
    float d;
    if (!stored_step(div_rn(mul_rn(m, f), -static_cast<float>(low)), &d)) continue;
    const double err = kernels.symmetric(x, d, low, high, &candidate);
    if (err < best_err) {
      best_err = err;
      *best = candidate;
      found = true;
    }
  }
  for (int r = 0; found && r < kSymmetricRefits; ++r) {
    double qx = 0.0, qq = 0.0;
    for (int i = 0; i < kLegacyBlock; ++i) {
      const double q = best->q[i];
      qx = add_rn(qx, mul_rn(q, static_cast<double>(x[i])));
      qq = add_rn(qq, mul_rn(q, q));
    }
    float d;
    if (!(qq > 0.0) || !stored_step(narrow_rn(div_rn(qx, qq)), &d) || float_bits(d) == float_bits(best->d)) break;
    const double err = kernels.symmetric(x, d, low, high, &candidate);
    if (!(err < best_err)) break;
    best_err = err;
    *best = candidate;
  }
  return found;
}

/// The affine search (Q4_1, Q5_1): wq's own `mse` (codec/mse.h, container-format.md §4.1) over
/// the block as one group of `bits`-bit codes with binary16 parameters, whose step and min a
/// Q4_1/Q5_1 block stores as they are. Its codes are affine_code()'s, and the block decodes
/// them as q * d + m, which equals the search's fma(d, q, m): a binary16 step times a code
/// below 2^8 is exact in binary32. Returns false (leaving *out unspecified) when its block's
/// error is not below `to_beat`; codes go to `q`.
template <typename Kernels>
WQ_HD inline bool search_affine(const float* x, int bits, double to_beat, AffineParams* out, std::uint8_t* q,
                                const Kernels& kernels) {
  float lo, hi;
  block_min_max(x, kLegacyBlock, &lo, &hi);
  if (!is_finite(lo) || !is_finite(hi)) return false;  // an infinity: the reference's block
  if (kernels.affine_params(x, lo, hi, bits, out) != ParamsStatus::kOk || !(out->scale > 0.0f)) {
    return false;  // a range beyond binary16 or binary32, a constant block: the reference's
  }
  return kernels.affine(x, *out, bits, q) < to_beat;
}

/// The codes of x under affine parameters p (scale > 0), affine_code(), and their decode error
/// as Q4_1/Q5_1 decode them (q * d + m).
WQ_HD inline double affine_candidate(const float* x, AffineParams p, int bits, std::uint8_t* q) {
  const float levels = static_cast<float>(max_code(bits));
  float decoded[kLegacyBlock];
  for (int i = 0; i < kLegacyBlock; ++i) {
    q[i] = static_cast<std::uint8_t>(affine_code(x[i], p, levels));
    decoded[i] = add_rn(mul_rn(static_cast<float>(q[i]), p.scale), p.min);
  }
  return block_error(x, decoded);
}

/// The search's per-candidate arithmetic, as the codec spells it. A backend may pass its own
/// (the CPU's AVX2 one, host/cpu/ggml_legacy_search_avx2.cpp) that gives the same results:
/// - symmetric(): symmetric_candidate();
/// - affine_params(): mse_params() over the block (finite range [lo, hi]);
/// - affine(): affine_candidate().
struct ScalarSearchKernels {
  WQ_HD double symmetric(const float* x, float d, int low, int high, SymmetricCodes* out) const {
    return symmetric_candidate(x, d, low, high, out);
  }
  WQ_HD ParamsStatus affine_params(const float* x, float lo, float hi, int bits, AffineParams* out) const {
    const auto load = [x](std::uint64_t i) { return x[i]; };
    return mse_params(load, kLegacyBlock, lo, hi, bits, true, out);
  }
  WQ_HD double affine(const float* x, AffineParams p, int bits, std::uint8_t* q) const {
    return affine_candidate(x, p, bits, q);
  }
};

/// The decode error of a block as ggml decodes it.
template <typename Block>
WQ_HD inline double decoded_block_error(const float* x, const Block& block) {
  float decoded[kLegacyBlock];
  decode_block(block, decoded);
  return block_error(x, decoded);
}

template <typename Kernels = ScalarSearchKernels>
WQ_HD inline void search_block(const float* x, BlockQ4_0* y, const Kernels& kernels = Kernels{}) {
  quantize_block(x, y);
  SymmetricCodes c;
  if (!search_symmetric(x, signed_absmax(x, kLegacyBlock), 8, 7, decoded_block_error(x, *y), &c, kernels)) return;
  y->d = f32_to_f16_bits(c.d);
  for (int j = 0; j < kLegacyBlock / 2; ++j) y->qs[j] = static_cast<std::uint8_t>((c.q[j] + 8) | ((c.q[j + 16] + 8) << 4));
}

template <typename Kernels = ScalarSearchKernels>
WQ_HD inline void search_block(const float* x, BlockQ5_0* y, const Kernels& kernels = Kernels{}) {
  quantize_block(x, y);
  SymmetricCodes c;
  if (!search_symmetric(x, signed_absmax(x, kLegacyBlock), 16, 15, decoded_block_error(x, *y), &c, kernels)) return;
  y->d = f32_to_f16_bits(c.d);
  std::uint32_t qh = 0;
  for (int j = 0; j < kLegacyBlock / 2; ++j) {
    store_q5_pair(j, static_cast<std::uint8_t>(c.q[j] + 16), static_cast<std::uint8_t>(c.q[j + 16] + 16), y->qs, &qh);
  }
  store_u32_le(y->qh, qh);
}

// Q8_0's codes stay in -127 .. 127, as the reference's: llama.cpp's AVX2 dot products take the
// absolute value of a code, which -128 does not have in a signed byte.
template <typename Kernels = ScalarSearchKernels>
WQ_HD inline void search_block(const float* x, BlockQ8_0* y, const Kernels& kernels = Kernels{}) {
  quantize_block(x, y);
  SymmetricCodes c;
  if (!search_symmetric(x, signed_absmax(x, kLegacyBlock), 127, 127, decoded_block_error(x, *y), &c, kernels)) return;
  y->d = f32_to_f16_bits(c.d);
  for (int j = 0; j < kLegacyBlock; ++j) y->qs[j] = c.q[j];
}

template <typename Kernels = ScalarSearchKernels>
WQ_HD inline void search_block(const float* x, BlockQ4_1* y, const Kernels& kernels = Kernels{}) {
  quantize_block(x, y);
  AffineParams p;
  std::uint8_t q[kLegacyBlock];
  if (!search_affine(x, 4, decoded_block_error(x, *y), &p, q, kernels)) return;
  y->d = f32_to_f16_bits(p.scale);
  y->m = f32_to_f16_bits(p.min);
  for (int j = 0; j < kLegacyBlock / 2; ++j) y->qs[j] = static_cast<std::uint8_t>(q[j] | (q[j + 16] << 4));
}

template <typename Kernels = ScalarSearchKernels>
WQ_HD inline void search_block(const float* x, BlockQ5_1* y, const Kernels& kernels = Kernels{}) {
  quantize_block(x, y);
  AffineParams p;
  std::uint8_t q[kLegacyBlock];
  if (!search_affine(x, 5, decoded_block_error(x, *y), &p, q, kernels)) return;
  y->d = f32_to_f16_bits(p.scale);
  y->m = f32_to_f16_bits(p.min);
  std::uint32_t qh = 0;
  for (int j = 0; j < kLegacyBlock / 2; ++j) store_q5_pair(j, q[j], q[j + 16], y->qs, &qh);
  store_u32_le(y->qh, qh);
}

/// Whether a block type has search_block() (the compile-time twin of has_mse_search()).
template <typename Block>
inline constexpr bool kHasSearch = requires(const float* x, Block* y) { search_block(x, y); };

}  // namespace wq::codec::ggml
