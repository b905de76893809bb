// compressed-tensors' round-to-nearest integer quantizer, as vLLM's `pack-quantized` weights
// store it (docs/compressed-tensors.md §2-3): the per-group parameters, the per-element codes,
// the decode and the int32 packing, shared by the CPU and CUDA backends.
//
// compressed-tensors computes in the model's dtype with torch tensor operations, each of which
// works in binary32 and rounds its result to the dtype once. Every step below does the same:
// a binary32 operation (config.h's explicit roundings), then round_to() the model dtype. That
// is what makes the codes and scales equal the ones compressed-tensors writes for the same
// weights, bf16 and fp16 included, where a plain binary32 quantizer would differ at ties.
#pragma once

#include <cstdint>

#include "wq/codec/config.h"
#include "wq/codec/half.h"
#include "wq/codec/mse.h"

namespace wq::codec::ct {

/// The model dtype the arithmetic runs in (and the dtype of the stored scales).
enum class Scalar : std::uint8_t { kF32, kF16, kBF16 };

/// `value` rounded to the nearest value of `s` (ties to even), as a binary32.
WQ_HD inline float round_to(Scalar s, float value) {
  switch (s) {
    case Scalar::kF16: return f16_bits_to_f32(f32_to_f16_bits(value));
    case Scalar::kBF16: return bf16_bits_to_f32(f32_to_bf16_bits(value));
    case Scalar::kF32: break;
  }
  return value;
}

/// torch.finfo(dtype).eps: what compressed-tensors stores instead of a zero scale.
WQ_HD inline float eps_of(Scalar s) {
  switch (s) {
    case Scalar::kF16: return 0.0009765625f;  // 2^-10
    case Scalar::kBF16: return 0.0078125f;    // 2^-7
    case Scalar::kF32: break;
  }
  return 1.1920928955078125e-7f;  // 2^-23
}

/// The signed code range [-2^(b-1), 2^(b-1) - 1]; codes are stored offset by 2^(b-1).
WQ_HD inline int q_min(int bits) { return -(1 << (bits - 1)); }
WQ_HD inline int q_max(int bits) { return (1 << (bits - 1)) - 1; }

/// Rounds an integer-valued-or-not binary32 in [-2^22, 2^22] to the nearest integer, ties to
/// even (torch.round), by the exact add-and-subtract of 1.5 * 2^23 (no rounding-mode state).
WQ_HD inline float round_half_even(float v) {
  return sub_rn(add_rn(v, 12582912.0f), 12582912.0f);
}

/// One group's parameters: `scale` a value of the model dtype (never 0), `zero` the signed
/// integer zero point in [q_min, q_max] (0 for symmetric schemes).
struct Params {
  float scale = 0.0f;
  int zero = 0;
};

enum class ParamsStatus { kOk, kRangeOverflows };

/// calculate_qparams() for a group whose exact minimum and maximum are `lo` and `hi` (finite
/// values of the model dtype):
/// - the range is widened to contain 0: lo' = min(lo, 0), hi' = max(hi, 0);
/// - symmetric: scale = R(max(|lo'|, |hi'|) / ((2^b - 1) / 2)), zero point 0;
/// - asymmetric: scale = R(R(hi' - lo') / (2^b - 1)), zero point
///   round_half_even(clamp(R(q_min - R(lo' / scale)), q_min, q_max));
/// - a zero scale (an all-zero group, or one whose scale underflows) becomes eps_of(s), after
///   the zero point was computed with the zero scale: lo' / 0 is -inf for lo' < 0, giving
///   q_max, and NaN for lo' = 0, which torch converts to the int8 0;
/// R() rounds to the model dtype. kRangeOverflows (fp16 only): hi' - lo' is beyond the dtype,
/// where compressed-tensors would store an infinite scale and decode NaN. (A group can also
/// decode an element beyond fp16 with a finite scale: -65504 in a symmetric group gives
/// -8 * R(65504 / 7.5). Callers check each decode().)
WQ_HD inline ParamsStatus group_params(float lo, float hi, int bits, bool symmetric, Scalar s, Params* out) {
  lo = lo < 0.0f ? lo : 0.0f;
  hi = hi > 0.0f ? hi : 0.0f;
  const float levels = static_cast<float>((1 << bits) - 1);
  Params p;
  if (symmetric) {
    const float amax = -lo > hi ? -lo : hi;
    p.scale = round_to(s, div_rn(amax, levels * 0.5f));  // (2^b - 1) / 2 is exact
  } else {
    const float range = round_to(s, sub_rn(hi, lo));
    if (!is_finite(range)) return ParamsStatus::kRangeOverflows;
    p.scale = round_to(s, div_rn(range, levels));
    if (p.scale != 0.0f) {
      const float ratio = round_to(s, div_rn(lo, p.scale));
      float z = round_to(s, sub_rn(static_cast<float>(q_min(bits)), ratio));
      const float zmin = static_cast<float>(q_min(bits)), zmax = static_cast<float>(q_max(bits));
      z = z < zmin ? zmin : z > zmax ? zmax : z;
      p.zero = static_cast<int>(round_half_even(z));
    } else {
      // An underflowed scale: lo' / 0 is -inf when lo' < 0 (the zero point clamps to q_max),
      // NaN when lo' is 0 (torch converts that NaN to the int8 0).
      p.zero = lo < 0.0f ? q_max(bits) : 0;
    }
  }
  if (p.scale == 0.0f) p.scale = eps_of(s);
  *out = p;
  return ParamsStatus::kOk;
}

/// _quantize() of one finite element: q = round_half_even(clamp(R(R(x / scale) + zero),
/// q_min, q_max)), returned offset as stored: u = q + 2^(b-1) in [0, 2^b - 1].
WQ_HD inline std::uint32_t code(float x, Params p, int bits, Scalar s) {
  float t = round_to(s, div_rn(x, p.scale));
  t = round_to(s, add_rn(t, static_cast<float>(p.zero)));
  const float lo = static_cast<float>(q_min(bits)), hi = static_cast<float>(q_max(bits));
  t = t < lo ? lo : t > hi ? hi : t;
  return static_cast<std::uint32_t>(static_cast<int>(round_half_even(t)) - q_min(bits));
}

/// _dequantize() of a stored code: R((u - z_u) * scale) with z_u = zero + 2^(b-1). The
/// difference (at most 8 bits) times a scale of at most 24 significant bits is rounded once,
/// so this is also the binary32 product rounded to the dtype, as torch computes it.
WQ_HD inline float decode(std::uint32_t u, Params p, int bits, Scalar s) {
  const int q = static_cast<int>(u) + q_min(bits);
  return round_to(s, mul_rn(static_cast<float>(q - p.zero), p.scale));
}

/// Candidates of search_params(): the group's range [lo', hi'] scaled by f_k = 1 - k^2/800 for
/// k = 0 .. kSearchCandidates - 1: steps of 0.1 % near the full range (what 8 bits gain from),
/// 5 % near half of it (where 4 bits with outliers end up).
inline constexpr int kSearchCandidates = 21;

/// The squared error that search_params() compares (docs/compressed-tensors.md §2.1), defined
/// like wq's own mse (container-format.md §4.1 step 3) so that SIMD lanes can compute it: for
/// element i, e = x_i - decode(code(x_i)) in binary32, and e*e fused into lane i % 8's binary32
/// sum; each lane's sum goes into its binary64 total every kMseBlock elements, and the totals
/// are combined pairwise (combine_lanes()).
template <typename Load>
WQ_HD inline double search_error(const Load& load, unsigned long long n, Params p, int bits, Scalar s) {
  double total[kMseLanes] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (unsigned long long begin = 0; begin < n; begin += kMseBlock) {
    const unsigned long long end = n - begin < kMseBlock ? n : begin + kMseBlock;
    float lane[kMseLanes] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (unsigned long long i = begin; i < end; ++i) {
      const float x = load(i);
      const float e = sub_rn(x, decode(code(x, p, bits, s), p, bits, s));
      lane[i % kMseLanes] = fma_rn(e, e, lane[i % kMseLanes]);
    }
    for (int j = 0; j < kMseLanes; ++j) total[j] = add_rn(total[j], static_cast<double>(lane[j]));
  }
  return combine_lanes(total);
}

/// wq's `mse` range search under compressed-tensors' constraints (docs/compressed-tensors.md
/// §2.1): of the parameters group_params() gives for each candidate range
/// [R(lo' * f_k), R(hi' * f_k)] (k = 0 is compressed-tensors' own), those whose
/// error(params) is least; the first of equal errors wins, so the result is never worse than
/// group_params() by that error and equals it where no candidate is strictly better. The codes
/// and their decode are the format's own: a vLLM checkpoint like any other. `error(p)` is
/// search_error() of the group (or a spelling of it that gives the same binary64); lo and hi
/// are the group's exact minimum and maximum.
template <typename Error>
WQ_HD inline ParamsStatus search_params(const Error& error, float lo, float hi, int bits, bool symmetric, Scalar s,
                                        Params* out) {
  const ParamsStatus status = group_params(lo, hi, bits, symmetric, s, out);
  if (status != ParamsStatus::kOk) return status;
  const float lo0 = lo < 0.0f ? lo : 0.0f, hi0 = hi > 0.0f ? hi : 0.0f;
  double best = error(*out);
  for (int k = 1; k < kSearchCandidates; ++k) {
    const float f = sub_rn(1.0f, div_rn(static_cast<float>(k * k), 800.0f));
    Params p;
    if (group_params(round_to(s, mul_rn(lo0, f)), round_to(s, mul_rn(hi0, f)), bits, symmetric, s, &p) !=
        ParamsStatus::kOk) {
      continue;
    }
    const double err = error(p);
    if (err < best) {  // false for NaN: a candidate that decodes beyond the dtype never wins
      best = err;
      *out = p;
    }
  }
  return ParamsStatus::kOk;
}

/// The offset zero point as stored (packed) in weight_zero_point.
WQ_HD inline std::uint32_t stored_zero(Params p, int bits) {
  return static_cast<std::uint32_t>(p.zero - q_min(bits));
}

/// pack_to_int32() of up to 32 offset codes `u` (each < 2^bits): element e at bit e * bits of
/// the little-endian bit string of `bits` words, LSB first, missing elements as zeros. Every
/// word of `words` is written.
WQ_HD inline void pack_32(const std::uint32_t* u, int count, int bits, std::uint32_t* words) {
  for (int w = 0; w < bits; ++w) words[w] = 0;
  for (int e = 0; e < count; ++e) {
    const int bit = e * bits, w = bit >> 5, shift = bit & 31;
    words[w] |= u[e] << shift;
    if (shift + bits > 32) words[w + 1] |= u[e] >> (32 - shift);
  }
}

/// Words per packed row of `count` elements: ceil(count * bits / 32).
WQ_HD inline std::uint64_t packed_words(std::uint64_t count, int bits) {
  return (count * static_cast<std::uint64_t>(bits) + 31) / 32;
}

}  // namespace wq::codec::ct
