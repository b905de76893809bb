// ggml's k-quant block types (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K): the reference quantizer and the
// decoder of one super-block of 256, for host and device.
//
// Each quantizer is ggml's `quantize_row_*_ref` (no importance matrix) step for step: a search
// per sub-block (ggml_kquant_search.h), the sub-block scales quantized against the
// super-block's largest, and the codes then recomputed from the stored values. The decoders
// are `dequantize_row_*`: each product and difference rounded on its own, never fused.
// Names are ours; the arithmetic is ggml's (docs/ggml-types.md).
#pragma once

#include <cstdint>

#include "wq/codec/config.h"
#include "wq/codec/ggml_blocks.h"
#include "wq/codec/ggml_kquant_search.h"
#include "wq/codec/ggml_rounding.h"
#include "wq/codec/half.h"

namespace wq::codec::ggml {

// --- the 6-bit scale/min packing of Q4_K and Q5_K ----------------------------------------

/// Sub-block j's 6-bit scale and min (ggml's get_scale_min_k4).
WQ_HD inline void unpack_scale_min(int j, const std::uint8_t* q, std::uint8_t* sc, std::uint8_t* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = static_cast<std::uint8_t>((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4));
    *m = static_cast<std::uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

/// The inverse, for j = 0..7 in order (j < 4 writes bytes 0..7 whole, j >= 4 ors into them).
WQ_HD inline void pack_scale_min(int j, std::uint8_t ls, std::uint8_t lm, std::uint8_t* q) {
  if (j < 4) {
    q[j] = ls;
    q[j + 4] = lm;
  } else {
    q[j + 4] = static_cast<std::uint8_t>((ls & 0x0f) | ((lm & 0x0f) << 4));
    q[j - 4] = static_cast<std::uint8_t>(q[j - 4] | ((ls >> 4) << 6));
    q[j] = static_cast<std::uint8_t>(q[j] | ((lm >> 4) << 6));
  }
}

/// The searches of Q4_K and Q5_K: sub-block j's weights sqrt(mean x^2) + |x| and its fitted
/// scale, offset (-min, >= 0) and codes. The CPU backend runs the same steps eight sub-blocks at a
/// time (host/cpu/ggml_kquant_lanes.cpp).
WQ_HD inline void search_scale_min_sub_blocks(const float* x, int nmax, OffsetSearch search, float* scales, float* mins,
                                              std::uint8_t* L) {
  constexpr int kSub = 32;
  float weights[kSub];
  std::uint8_t scratch[kSub];
  for (int j = 0; j < kSuperBlock / kSub; ++j) {
    const float* xs = x + kSub * j;
    float sum_x2 = 0;
    for (int l = 0; l < kSub; ++l) sum_x2 = add_rn(sum_x2, mul_rn(xs[l], xs[l]));
    const float av_x = sqrt_rn(div_rn(sum_x2, 32.0f));
    for (int l = 0; l < kSub; ++l) weights[l] = add_rn(av_x, abs_f32(xs[l]));
    scales[j] = fit_scale_and_offset(kSub, nmax, xs, weights, L + kSub * j, &mins[j], scratch, search);
  }
}

// --- the final codes of every k-quant ----------------------------------------------------
// After its searches each type stores its sub-block scales, then recomputes every code from the
// stored values: code = clamp(nearest_int((x + dm) / d)) for the types with a min, and
// clamp(nearest_int(x / d)) + half for the symmetric ones, where a sub-block whose stored step d
// is 0 keeps the search's codes, as in ggml. The CPU backend computes these codes eight at a time
// (host/cpu/ggml_kquant_lanes.cpp) with the same division and rounding.

/// One final code with an offset: 0..nmax.
WQ_HD inline int code_with_offset(float x, float d, float dm, int nmax) {
  return clamp_int(nearest_int(div_rn(add_rn(x, dm), d)), 0, nmax);
}

/// One final symmetric code: -half..half-1, stored + half.
WQ_HD inline int symmetric_code(float x, float d, int half) {
  return clamp_int(nearest_int(div_rn(x, d)), -half, half - 1) + half;
}

/// Q4_K and Q5_K after the searches, first half: the eight scales and mins quantized to 6 bits
/// against the largest of each, and d and dmin. Writes d, dmin and the 12 scale bytes.
WQ_HD inline void quantize_scale_min_bytes(const float* scales, const float* mins, std::uint16_t* d_out,
                                           std::uint16_t* dmin_out, std::uint8_t* scale_bytes) {
  constexpr int kSub = 32;
  float max_scale = 0;
  float max_min = 0;
  for (int j = 0; j < kSuperBlock / kSub; ++j) {
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  const float inv_scale = max_scale > 0 ? div_rn(63.0f, max_scale) : 0.0f;
  const float inv_min = max_min > 0 ? div_rn(63.0f, max_min) : 0.0f;
  for (int j = 0; j < kSuperBlock / kSub; ++j) {
    std::uint8_t ls = static_cast<std::uint8_t>(nearest_int(mul_rn(inv_scale, scales[j])));
    std::uint8_t lm = static_cast<std::uint8_t>(nearest_int(mul_rn(inv_min, mins[j])));
    ls = ls < 63 ? ls : 63;
    lm = lm < 63 ? lm : 63;
    pack_scale_min(j, ls, lm, scale_bytes);
  }
  *d_out = f32_to_f16_bits(div_rn(max_scale, 63.0f));
  *dmin_out = f32_to_f16_bits(div_rn(max_min, 63.0f));
}

/// Sub-block j's stored step d and offset dm (Q4_K, Q5_K).
WQ_HD inline void scale_min_step(std::uint16_t d_bits, std::uint16_t dmin_bits, const std::uint8_t* scale_bytes, int j,
                                 float* d, float* dm) {
  std::uint8_t sc, m;
  unpack_scale_min(j, scale_bytes, &sc, &m);
  *d = mul_rn(f16_bits_to_f32(d_bits), static_cast<float>(sc));
  *dm = mul_rn(f16_bits_to_f32(dmin_bits), static_cast<float>(m));
}

WQ_HD inline bool quantize_q6_k_scales(const float* scales, BlockQ6_K* y);  // defined below
WQ_HD inline float q6_k_step(const BlockQ6_K& y, int j);
WQ_HD inline void quantize_q3_k_scales(const float* scales, BlockQ3_K* y);
WQ_HD inline float q3_k_step(const BlockQ3_K& y, int j);

/// The final codes of one sub-block of `count` elements under its stored step d (and dm): the
/// loops of the finish functions below, one element at a time; and Q6_K's scales. A backend may
/// pass its own spelling with the same results (the CPU's eight lanes,
/// host/cpu/ggml_kquant_lanes.cpp).
struct ScalarSubBlockCodes {
  /// code_with_offset() of each element, 0..nmax.
  WQ_HD void offset(const float* x, int count, float d, float dm, int nmax, std::uint8_t* L) const {
    for (int i = 0; i < count; ++i) L[i] = static_cast<std::uint8_t>(code_with_offset(x[i], d, dm, nmax));
  }
  /// symmetric_code() of each element, stored 0..2 * half - 1.
  WQ_HD void symmetric(const float* x, int count, float d, int half, std::int8_t* L) const {
    for (int i = 0; i < count; ++i) L[i] = static_cast<std::int8_t>(symmetric_code(x[i], d, half));
  }
  /// Sub-block j (`count` elements at x) where its stored step is 0: the codes stay the
  /// search's, already in L here. (A policy whose search kept only each sub-block's grid, or
  /// no codes at all, computes them now, for these few sub-blocks only.) Offset codes (Q2_K,
  /// Q4_K, Q5_K) and symmetric ones (Q3_K, Q6_K).
  WQ_HD void unscaled(const float* /*x*/, int /*count*/, int /*j*/, std::uint8_t* /*L*/) const {}
  WQ_HD void unscaled(const float* /*x*/, int /*count*/, int /*j*/, std::int8_t* /*L*/) const {}
  /// quantize_q6_k_scales(), then each sub-block's q6_k_step() to steps[16] when it returns true.
  WQ_HD bool q6_k_scales(const float* scales, BlockQ6_K* y, float* steps) const {
    if (!quantize_q6_k_scales(scales, y)) return false;
    for (int j = 0; j < kSuperBlock / 16; ++j) steps[j] = q6_k_step(*y, j);
    return true;
  }
  /// quantize_q3_k_scales(), then each sub-block's q3_k_step() to steps[16].
  WQ_HD void q3_k_scales(const float* scales, BlockQ3_K* y, float* steps) const {
    quantize_q3_k_scales(scales, y);
    for (int j = 0; j < kSuperBlock / 16; ++j) steps[j] = q3_k_step(*y, j);
  }
};

/// What Q4_K and Q5_K do after the searches: quantize_scale_min_bytes(), then the final codes
/// (0..nmax) to L.
template <typename Codes = ScalarSubBlockCodes>
WQ_HD_INLINE void finish_scale_min_super_block(const float* x, int nmax, const float* scales, const float* mins,
                                               std::uint16_t* d_out, std::uint16_t* dmin_out, std::uint8_t* scale_bytes,
                                               std::uint8_t* L, const Codes& codes = Codes{}) {
  constexpr int kSub = 32;
  quantize_scale_min_bytes(scales, mins, d_out, dmin_out, scale_bytes);
  for (int j = 0; j < kSuperBlock / kSub; ++j) {
    float d, dm;
    scale_min_step(*d_out, *dmin_out, scale_bytes, j, &d, &dm);
    if (d == 0.0f) {  // the search's codes stay, as in ggml
      codes.unscaled(x + kSub * j, kSub, j, L + kSub * j);
    } else {
      codes.offset(x + kSub * j, kSub, d, dm, nmax, L + kSub * j);
    }
  }
}

// The searches' parameters (make_qkx2_quants' rmin, rdelta, nstep, use_mad) and code widths
// (functions, not variables: device code reads them too).
WQ_HD constexpr OffsetSearch q4_k_search() { return {-1.0f, 0.1f, 20, false}; }
WQ_HD constexpr OffsetSearch q5_k_search() { return {-0.5f, 0.1f, 15, false}; }
inline constexpr int kQ4KMax = 15;
inline constexpr int kQ5KMax = 31;

/// Q4_K's block from its final codes L (0..15); d, dmin and scales already written.
WQ_HD inline void pack_q4_k_codes(const std::uint8_t* L, BlockQ4_K* y) {
  for (int c = 0; c < 4; ++c) {  // chunk c of 64: byte 32c + l = element 64c + l | element 64c + 32 + l
    for (int l = 0; l < 32; ++l) {
      y->qs[32 * c + l] = static_cast<std::uint8_t>(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
    }
  }
}

WQ_HD inline void quantize_block(const float* x, BlockQ4_K* y) {
  std::uint8_t L[kSuperBlock];
  float scales[8], mins[8];
  search_scale_min_sub_blocks(x, kQ4KMax, q4_k_search(), scales, mins, L);
  finish_scale_min_super_block(x, kQ4KMax, scales, mins, &y->d, &y->dmin, y->scales, L);
  pack_q4_k_codes(L, y);
}

/// Q5_K's block from its final codes L (0..31): the low four bits as Q4_K packs them, bit 4 of
/// element 64c + l (and of 64c + 32 + l) in bit 2c (and 2c + 1) of qh[l]. Written without
/// branches: the high bits are as random as the data, and a branch on them mispredicts half the
/// time (it cost Q5_K a quarter of its time on the CPU).
WQ_HD inline void pack_q5_k_codes(const std::uint8_t* L, BlockQ5_K* y) {
  for (int l = 0; l < kSuperBlock / 8; ++l) {
    unsigned high = 0;
    for (int c = 0; c < 4; ++c) {
      high |= static_cast<unsigned>(L[64 * c + l] >> 4) << (2 * c);
      high |= static_cast<unsigned>(L[64 * c + 32 + l] >> 4) << (2 * c + 1);
    }
    y->qh[l] = static_cast<std::uint8_t>(high);
  }
  for (int c = 0; c < 4; ++c) {
    for (int l = 0; l < 32; ++l) {
      y->qs[32 * c + l] = static_cast<std::uint8_t>((L[64 * c + l] & 0x0f) | ((L[64 * c + 32 + l] & 0x0f) << 4));
    }
  }
}

WQ_HD inline void quantize_block(const float* x, BlockQ5_K* y) {
  std::uint8_t L[kSuperBlock];
  float scales[8], mins[8];
  search_scale_min_sub_blocks(x, kQ5KMax, q5_k_search(), scales, mins, L);
  finish_scale_min_super_block(x, kQ5KMax, scales, mins, &y->d, &y->dmin, y->scales, L);
  pack_q5_k_codes(L, y);
}

// Q2_K and Q3_K share the 2-bit plane layout: byte 32h + l of qs holds elements
// 128h + l, +32, +64, +96 in bit pairs 0-1, 2-3, 4-5, 6-7.
template <typename Code>
WQ_HD inline void pack_two_bit_planes(const Code* L, std::uint8_t* qs) {
  for (int h = 0; h < 2; ++h) {
    for (int l = 0; l < 32; ++l) {
      const int e = 128 * h + l;
      qs[32 * h + l] = static_cast<std::uint8_t>(L[e] | (L[e + 32] << 2) | (L[e + 64] << 4) | (L[e + 96] << 6));
    }
  }
}

WQ_HD constexpr OffsetSearch q2_k_search() { return {-0.5f, 0.1f, 15, true}; }

/// Q2_K's searches: sub-block j's scale, offset (-min) and codes (0..3), weights |x|. The CPU
/// backend runs the same steps eight sub-blocks at a time (host/cpu/ggml_kquant_lanes.cpp).
WQ_HD inline void search_q2_k_sub_blocks(const float* x, float* scales, float* mins, std::uint8_t* L) {
  constexpr int kSub = 16;
  std::uint8_t scratch[kSub];
  float weights[kSub];
  for (int j = 0; j < kSuperBlock / kSub; ++j) {
    for (int l = 0; l < kSub; ++l) weights[l] = abs_f32(x[kSub * j + l]);
    scales[j] = fit_scale_and_offset(kSub, 3, x + kSub * j, weights, L + kSub * j, &mins[j], scratch, q2_k_search());
  }
}

/// Q2_K after the searches, first part: the 4-bit scales and mins, d and dmin.
WQ_HD inline void quantize_q2_k_scales(const float* scales, const float* mins, BlockQ2_K* y) {
  constexpr int kSub = 16;
  float max_scale = 0;
  float max_min = 0;
  for (int j = 0; j < kSuperBlock / kSub; ++j) {
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  if (max_scale > 0) {
    const float iscale = div_rn(15.0f, max_scale);
    for (int j = 0; j < kSuperBlock / kSub; ++j) {
      y->scales[j] = static_cast<std::uint8_t>(nearest_int(mul_rn(iscale, scales[j])));
    }
    y->d = f32_to_f16_bits(div_rn(max_scale, 15.0f));
  } else {
    for (int j = 0; j < kSuperBlock / kSub; ++j) y->scales[j] = 0;
    y->d = f32_to_f16_bits(0.0f);
  }
  if (max_min > 0) {
    const float iscale = div_rn(15.0f, max_min);
    for (int j = 0; j < kSuperBlock / kSub; ++j) {
      const int l = nearest_int(mul_rn(iscale, mins[j]));
      y->scales[j] = static_cast<std::uint8_t>(y->scales[j] | (l << 4));
    }
    y->dmin = f32_to_f16_bits(div_rn(max_min, 15.0f));
  } else {
    y->dmin = f32_to_f16_bits(0.0f);
  }
}

/// Q2_K sub-block j's stored step d and offset dm.
WQ_HD inline void q2_k_step(const BlockQ2_K& y, int j, float* d, float* dm) {
  *d = mul_rn(f16_bits_to_f32(y.d), static_cast<float>(y.scales[j] & 0x0f));
  *dm = mul_rn(f16_bits_to_f32(y.dmin), static_cast<float>(y.scales[j] >> 4));
}

/// Q2_K after the searches: quantize_q2_k_scales(), the final codes, the packing.
template <typename Codes = ScalarSubBlockCodes>
WQ_HD_INLINE void finish_q2_k(const float* x, const float* scales, const float* mins, std::uint8_t* L, BlockQ2_K* y,
                              const Codes& codes = Codes{}) {
  constexpr int kSub = 16;
  quantize_q2_k_scales(scales, mins, y);
  for (int j = 0; j < kSuperBlock / kSub; ++j) {
    float d, dm;
    q2_k_step(*y, j, &d, &dm);
    if (d == 0.0f) {
      codes.unscaled(x + kSub * j, kSub, j, L + kSub * j);
    } else {
      codes.offset(x + kSub * j, kSub, d, dm, 3, L + kSub * j);
    }
  }
  pack_two_bit_planes(L, y->qs);
}

WQ_HD inline void quantize_block(const float* x, BlockQ2_K* y) {
  std::uint8_t L[kSuperBlock];
  float scales[kSuperBlock / 16], mins[kSuperBlock / 16];
  search_q2_k_sub_blocks(x, scales, mins, L);
  finish_q2_k(x, scales, mins, L, y);
}

/// Q3_K sub-block j's scale, 0..63 (stored + 32).
WQ_HD inline int q3k_scale(const std::uint8_t* scales, int j) {
  const int low = j < 8 ? (scales[j] & 0x0f) : (scales[j - 8] >> 4);
  return low | (((scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4);
}

/// Q3_K's searches: sub-block j's symmetric scale and codes (0..7). The CPU backend runs the
/// same steps eight sub-blocks at a time (host/cpu/ggml_kquant_lanes.cpp).
WQ_HD inline void search_q3_k_sub_blocks(const float* x, float* scales, std::int8_t* L) {
  for (int j = 0; j < kSuperBlock / 16; ++j) scales[j] = fit_symmetric_refined(16, 4, x + 16 * j, L + 16 * j);
}

/// Q3_K's hmask and qs from its final codes L (0..7): bit 2 of element e goes to bit e / 32 of
/// hmask[e % 32], and the low two bits to the 2-bit planes. L keeps only its low two bits
/// afterwards. Without branches, for the reason given at pack_q5_k_codes.
WQ_HD inline void pack_q3_k_codes(std::int8_t* L, BlockQ3_K* y) {
  for (int m = 0; m < kSuperBlock / 8; ++m) {
    unsigned high = 0;
    for (int k = 0; k < 8; ++k) high |= static_cast<unsigned>((L[32 * k + m] >> 2) & 1) << k;
    y->hmask[m] = static_cast<std::uint8_t>(high);
  }
  for (int e = 0; e < kSuperBlock; ++e) L[e] = static_cast<std::int8_t>(L[e] & 3);
  pack_two_bit_planes(L, y->qs);
}

/// Q3_K after the searches, first part: the 6-bit signed scales and d.
WQ_HD inline void quantize_q3_k_scales(const float* scales, BlockQ3_K* y) {
  constexpr int kSub = 16;
  float max_scale = 0;
  float amax = 0;
  for (int j = 0; j < kSuperBlock / kSub; ++j) {
    const float a = abs_f32(scales[j]);
    if (a > amax) {
      amax = a;
      max_scale = scales[j];
    }
  }
  for (int k = 0; k < kKScaleBytes; ++k) y->scales[k] = 0;
  if (max_scale != 0.0f) {
    const float iscale = div_rn(-32.0f, max_scale);
    for (int j = 0; j < kSuperBlock / kSub; ++j) {
      std::int8_t l = static_cast<std::int8_t>(nearest_int(mul_rn(iscale, scales[j])));
      l = static_cast<std::int8_t>(clamp_int(l, -32, 31) + 32);
      if (j < 8) {
        y->scales[j] = static_cast<std::uint8_t>(l & 0x0f);
      } else {
        y->scales[j - 8] = static_cast<std::uint8_t>(y->scales[j - 8] | ((l & 0x0f) << 4));
      }
      l = static_cast<std::int8_t>(l >> 4);
      y->scales[j % 4 + 8] = static_cast<std::uint8_t>(y->scales[j % 4 + 8] | (l << (2 * (j / 4))));
    }
    y->d = f32_to_f16_bits(div_rn(1.0f, iscale));
  } else {
    y->d = f32_to_f16_bits(0.0f);
  }
}

/// Q3_K sub-block j's stored step.
WQ_HD inline float q3_k_step(const BlockQ3_K& y, int j) {
  return mul_rn(f16_bits_to_f32(y.d), static_cast<float>(q3k_scale(y.scales, j) - 32));
}

/// Q3_K after the searches: quantize_q3_k_scales(), the final codes, hmask and qs.
template <typename Codes = ScalarSubBlockCodes>
WQ_HD_INLINE void finish_q3_k(const float* x, const float* scales, std::int8_t* L, BlockQ3_K* y,
                              const Codes& codes = Codes{}) {
  constexpr int kSub = 16;
  float steps[kSuperBlock / kSub];
  codes.q3_k_scales(scales, y, steps);
  for (int j = 0; j < kSuperBlock / kSub; ++j) {
    if (steps[j] == 0.0f) {
      codes.unscaled(x + kSub * j, kSub, j, L + kSub * j);
    } else {
      codes.symmetric(x + kSub * j, kSub, steps[j], 4, L + kSub * j);
    }
  }
  pack_q3_k_codes(L, y);
}

WQ_HD inline void quantize_block(const float* x, BlockQ3_K* y) {
  std::int8_t L[kSuperBlock];
  float scales[kSuperBlock / 16];
  search_q3_k_sub_blocks(x, scales, L);
  finish_q3_k(x, scales, L, y);
}

/// Q6_K's searches: sub-block ib's symmetric scale and codes (0..63). The CPU backend runs the
/// same steps eight sub-blocks at a time (host/cpu/ggml_kquant_lanes.cpp).
WQ_HD inline void search_q6_k_sub_blocks(const float* x, float* scales, std::int8_t* L) {
  for (int ib = 0; ib < kSuperBlock / 16; ++ib) scales[ib] = fit_symmetric_x2(16, 32, x + 16 * ib, L + 16 * ib);
}

/// Q6_K after the searches, first part: the 8-bit sub-block scales and d. Returns false where
/// the whole block is zero bytes (written), which has no codes to compute.
WQ_HD inline bool quantize_q6_k_scales(const float* scales, BlockQ6_K* y) {
  constexpr int kSub = 16;
  float max_scale = 0;
  float max_abs_scale = 0;
  for (int ib = 0; ib < kSuperBlock / kSub; ++ib) {
    const float a = abs_f32(scales[ib]);
    if (a > max_abs_scale) {
      max_abs_scale = a;
      max_scale = scales[ib];
    }
  }
  if (max_abs_scale < kGroupMaxEps) {  // the whole block is zero bytes
    auto* bytes = reinterpret_cast<std::uint8_t*>(y);
    for (unsigned k = 0; k < sizeof(BlockQ6_K); ++k) bytes[k] = 0;
    return false;
  }
  const float iscale = div_rn(-128.0f, max_scale);
  y->d = f32_to_f16_bits(div_rn(1.0f, iscale));
  for (int ib = 0; ib < kSuperBlock / kSub; ++ib) {
    const int l = nearest_int(mul_rn(iscale, scales[ib]));
    y->scales[ib] = static_cast<std::int8_t>(l < 127 ? l : 127);
  }
  return true;
}

/// Q6_K sub-block j's stored step.
WQ_HD inline float q6_k_step(const BlockQ6_K& y, int j) {
  return mul_rn(f16_bits_to_f32(y.d), static_cast<float>(y.scales[j]));
}

/// Q6_K's ql and qh from its final codes L (0..63).
WQ_HD inline void pack_q6_k_codes(const std::int8_t* L, BlockQ6_K* y) {
  for (int h = 0; h < 2; ++h) {  // half h: ql[64h..], qh[32h..]
    std::uint8_t* ql = y->ql + 64 * h;
    std::uint8_t* qh = y->qh + 32 * h;
    const std::int8_t* Lh = L + 128 * h;
    for (int l = 0; l < 32; ++l) {
      ql[l] = static_cast<std::uint8_t>((Lh[l] & 0x0f) | ((Lh[l + 64] & 0x0f) << 4));
      ql[l + 32] = static_cast<std::uint8_t>((Lh[l + 32] & 0x0f) | ((Lh[l + 96] & 0x0f) << 4));
      qh[l] = static_cast<std::uint8_t>((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) | ((Lh[l + 64] >> 4) << 4) |
                                        ((Lh[l + 96] >> 4) << 6));
    }
  }
}

/// Q6_K after the searches: quantize_q6_k_scales(), the final codes and the packing.
template <typename Codes = ScalarSubBlockCodes>
WQ_HD_INLINE void finish_q6_k(const float* x, const float* scales, std::int8_t* L, BlockQ6_K* y,
                              const Codes& codes = Codes{}) {
  constexpr int kSub = 16;
  float steps[kSuperBlock / kSub];
  if (!codes.q6_k_scales(scales, y, steps)) return;
  for (int j = 0; j < kSuperBlock / kSub; ++j) {
    if (steps[j] == 0.0f) {
      codes.unscaled(x + kSub * j, kSub, j, L + kSub * j);
    } else {
      codes.symmetric(x + kSub * j, kSub, steps[j], 32, L + kSub * j);
    }
  }
  pack_q6_k_codes(L, y);
}

WQ_HD inline void quantize_block(const float* x, BlockQ6_K* y) {
  std::int8_t L[kSuperBlock];
  float scales[kSuperBlock / 16];
  search_q6_k_sub_blocks(x, scales, L);
  finish_q6_k(x, scales, L, y);
}

// --- decoders -----------------------------------------------------------------------------

// The decoders below walk a super-block as (half h of 128, quarter k of 32, sub-block of 16):
// element e = 128 h + 32 k + l. Each sub-block's step is computed once and its 16 elements in a
// loop of contiguous bytes, which the compiler vectorises (a loop over e with the indices divided
// out ran at 1.8-2 GB/s on the CPU); every element's operations are the same.
WQ_HD inline void decode_block(const BlockQ2_K& b, float* y) {
  const float d = f16_bits_to_f32(b.d);
  const float dmin = f16_bits_to_f32(b.dmin);
  for (int h = 0; h < 2; ++h) {
    for (int k = 0; k < 4; ++k) {
      for (int half = 0; half < 2; ++half) {
        const std::uint8_t sc = b.scales[8 * h + 2 * k + half];
        const float dl = mul_rn(d, static_cast<float>(sc & 0x0f));
        const float ml = mul_rn(dmin, static_cast<float>(sc >> 4));
        const std::uint8_t* qs = b.qs + 32 * h + 16 * half;
        float* out = y + 128 * h + 32 * k + 16 * half;
        for (int l = 0; l < 16; ++l) {
          const int q = (qs[l] >> (2 * k)) & 3;
          out[l] = sub_rn(mul_rn(dl, static_cast<float>(q)), ml);
        }
      }
    }
  }
}

WQ_HD inline void decode_block(const BlockQ3_K& b, float* y) {
  const float d = f16_bits_to_f32(b.d);
  for (int h = 0; h < 2; ++h) {
    for (int k = 0; k < 4; ++k) {
      for (int half = 0; half < 2; ++half) {
        const float dl = mul_rn(d, static_cast<float>(q3k_scale(b.scales, 8 * h + 2 * k + half) - 32));
        const std::uint8_t* qs = b.qs + 32 * h + 16 * half;
        const std::uint8_t* hmask = b.hmask + 16 * half;
        float* out = y + 128 * h + 32 * k + 16 * half;
        for (int l = 0; l < 16; ++l) {
          const int low = (qs[l] >> (2 * k)) & 3;
          const int high = (hmask[l] >> (4 * h + k)) & 1;  // bit e / 32
          out[l] = mul_rn(dl, static_cast<float>(low - (high ? 0 : 4)));
        }
      }
    }
  }
}

// Q4_K and Q5_K's decoder: x = d*sc*q - dmin*m per sub-block of 32; Q5_K's fifth bit of sub-block
// j's element l is bit j of qh[l] (qh null for Q4_K).
WQ_HD inline void decode_scale_min_block(std::uint16_t d_bits, std::uint16_t dmin_bits, const std::uint8_t* scales,
                                         const std::uint8_t* qs, const std::uint8_t* qh, float* y) {
  const float d = f16_bits_to_f32(d_bits);
  const float dmin = f16_bits_to_f32(dmin_bits);
  for (int j = 0; j < 8; ++j) {
    std::uint8_t sc, m;
    unpack_scale_min(j, scales, &sc, &m);
    const float dj = mul_rn(d, static_cast<float>(sc));
    const float mj = mul_rn(dmin, static_cast<float>(m));
    const std::uint8_t* q = qs + 32 * (j / 2);
    for (int l = 0; l < 32; ++l) {
      const int low = (j % 2 == 0) ? (q[l] & 0x0f) : (q[l] >> 4);
      const int code = low + (qh != nullptr && ((qh[l] >> j) & 1) ? 16 : 0);
      y[32 * j + l] = sub_rn(mul_rn(dj, static_cast<float>(code)), mj);
    }
  }
}

WQ_HD inline void decode_block(const BlockQ4_K& b, float* y) { decode_scale_min_block(b.d, b.dmin, b.scales, b.qs, nullptr, y); }

WQ_HD inline void decode_block(const BlockQ5_K& b, float* y) { decode_scale_min_block(b.d, b.dmin, b.scales, b.qs, b.qh, y); }

WQ_HD inline void decode_block(const BlockQ6_K& b, float* y) {
  const float d = f16_bits_to_f32(b.d);
  for (int h = 0; h < 2; ++h) {
    for (int k = 0; k < 4; ++k) {  // the quarter: low nibbles of ql's first or second 32, then highs
      for (int half = 0; half < 2; ++half) {
        const float dsc = mul_rn(d, static_cast<float>(b.scales[8 * h + half + 2 * k]));
        const std::uint8_t* ql = b.ql + 64 * h + (k % 2) * 32 + 16 * half;
        const std::uint8_t* qh = b.qh + 32 * h + 16 * half;
        float* out = y + 128 * h + 32 * k + 16 * half;
        for (int l = 0; l < 16; ++l) {
          const int low = k < 2 ? (ql[l] & 0x0f) : (ql[l] >> 4);
          const int high = (qh[l] >> (2 * k)) & 3;
          out[l] = mul_rn(dsc, static_cast<float>((low | (high << 4)) - 32));
        }
      }
    }
  }
}

}  // namespace wq::codec::ggml
