// ggml's legacy block types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0): the reference quantizer and the
// decoder of one block of 32, for host and device.
//
// The quantizers reproduce ggml's `quantize_row_*_ref` (what `llama-quantize` runs without an
// importance matrix) bit for bit: the same binary32 operations in the same order, the
// reciprocal of d rather than a division, the codes chosen from the unrounded d and min (not
// the binary16 values stored), and ggml's truncating conversions (ggml_rounding.h). The
// decoders reproduce `dequantize_row_*`: a product then a sum, each rounded, never an FMA.
// tests/unit/ggml_vectors_test.cpp holds both to vectors computed by ggml's own library.
#pragma once

#include <cstdint>

#include "wq/codec/config.h"
#include "wq/codec/ggml_blocks.h"
#include "wq/codec/ggml_rounding.h"
#include "wq/codec/half.h"

namespace wq::codec::ggml {

/// The signed element of largest magnitude (the first one on ties), as Q4_0/Q5_0 scale it.
WQ_HD inline float signed_absmax(const float* x, int n) {
  float amax = 0.0f;
  float max = 0.0f;
  for (int j = 0; j < n; ++j) {
    const float a = abs_f32(x[j]);
    if (amax < a) {
      amax = a;
      max = x[j];
    }
  }
  return max;
}

/// Min and max by comparisons from +-FLT_MAX (NaN never wins), as Q4_1/Q5_1 find them.
WQ_HD inline void block_min_max(const float* x, int n, float* min_out, float* max_out) {
  float min = 3.40282347e+38f;
  float max = -3.40282347e+38f;
  for (int j = 0; j < n; ++j) {
    if (x[j] < min) min = x[j];
    if (x[j] > max) max = x[j];
  }
  *min_out = min;
  *max_out = max;
}

WQ_HD inline float reciprocal_or_zero(float d) { return d != 0.0f ? div_rn(1.0f, d) : 0.0f; }

WQ_HD inline void quantize_block(const float* x, BlockQ4_0* y) {
  const float d = div_rn(signed_absmax(x, kLegacyBlock), -8.0f);
  const float id = reciprocal_or_zero(d);
  y->d = f32_to_f16_bits(d);
  for (int j = 0; j < kLegacyBlock / 2; ++j) {
    const std::int8_t t0 = to_int8_like_x86(add_rn(mul_rn(x[j], id), 8.5f));
    const std::int8_t t1 = to_int8_like_x86(add_rn(mul_rn(x[j + 16], id), 8.5f));
    const auto q0 = static_cast<std::uint8_t>(t0 < 15 ? t0 : 15);  // only the top is clamped
    const auto q1 = static_cast<std::uint8_t>(t1 < 15 ? t1 : 15);
    y->qs[j] = static_cast<std::uint8_t>(q0 | (q1 << 4));
  }
}

WQ_HD inline void quantize_block(const float* x, BlockQ4_1* y) {
  float min, max;
  block_min_max(x, kLegacyBlock, &min, &max);
  const float d = div_rn(sub_rn(max, min), 15.0f);
  const float id = reciprocal_or_zero(d);
  y->d = f32_to_f16_bits(d);
  y->m = f32_to_f16_bits(min);
  for (int j = 0; j < kLegacyBlock / 2; ++j) {
    const std::int8_t t0 = to_int8_like_x86(add_rn(mul_rn(sub_rn(x[j], min), id), 0.5f));
    const std::int8_t t1 = to_int8_like_x86(add_rn(mul_rn(sub_rn(x[j + 16], min), id), 0.5f));
    const auto q0 = static_cast<std::uint8_t>(t0 < 15 ? t0 : 15);
    const auto q1 = static_cast<std::uint8_t>(t1 < 15 ? t1 : 15);
    y->qs[j] = static_cast<std::uint8_t>(q0 | (q1 << 4));
  }
}

WQ_HD inline void store_u32_le(std::uint8_t* out, std::uint32_t v) {
  out[0] = static_cast<std::uint8_t>(v);
  out[1] = static_cast<std::uint8_t>(v >> 8);
  out[2] = static_cast<std::uint8_t>(v >> 16);
  out[3] = static_cast<std::uint8_t>(v >> 24);
}

WQ_HD inline std::uint32_t load_u32_le(const std::uint8_t* in) {
  return static_cast<std::uint32_t>(in[0]) | static_cast<std::uint32_t>(in[1]) << 8 |
         static_cast<std::uint32_t>(in[2]) << 16 | static_cast<std::uint32_t>(in[3]) << 24;
}

// Splits two 5-bit codes into the low nibbles and the fifth bits of a Q5 block.
WQ_HD inline void store_q5_pair(int j, std::uint8_t q0, std::uint8_t q1, std::uint8_t* qs, std::uint32_t* qh) {
  qs[j] = static_cast<std::uint8_t>((q0 & 0x0f) | ((q1 & 0x0f) << 4));
  *qh |= static_cast<std::uint32_t>((q0 & 0x10u) >> 4) << j;
  *qh |= static_cast<std::uint32_t>((q1 & 0x10u) >> 4) << (j + 16);
}

WQ_HD inline void quantize_block(const float* x, BlockQ5_0* y) {
  const float d = div_rn(signed_absmax(x, kLegacyBlock), -16.0f);
  const float id = reciprocal_or_zero(d);
  y->d = f32_to_f16_bits(d);
  std::uint32_t qh = 0;
  for (int j = 0; j < kLegacyBlock / 2; ++j) {
    const std::int8_t t0 = to_int8_like_x86(add_rn(mul_rn(x[j], id), 16.5f));
    const std::int8_t t1 = to_int8_like_x86(add_rn(mul_rn(x[j + 16], id), 16.5f));
    store_q5_pair(j, static_cast<std::uint8_t>(t0 < 31 ? t0 : 31), static_cast<std::uint8_t>(t1 < 31 ? t1 : 31),
                  y->qs, &qh);
  }
  store_u32_le(y->qh, qh);
}

WQ_HD inline void quantize_block(const float* x, BlockQ5_1* y) {
  float min, max;
  block_min_max(x, kLegacyBlock, &min, &max);
  const float d = div_rn(sub_rn(max, min), 31.0f);
  const float id = reciprocal_or_zero(d);
  y->d = f32_to_f16_bits(d);
  y->m = f32_to_f16_bits(min);
  std::uint32_t qh = 0;
  for (int j = 0; j < kLegacyBlock / 2; ++j) {  // no clamp at all in ggml's Q5_1
    const std::uint8_t q0 = to_uint8_like_x86(add_rn(mul_rn(sub_rn(x[j], min), id), 0.5f));
    const std::uint8_t q1 = to_uint8_like_x86(add_rn(mul_rn(sub_rn(x[j + 16], min), id), 0.5f));
    store_q5_pair(j, q0, q1, y->qs, &qh);
  }
  store_u32_le(y->qh, qh);
}

WQ_HD inline void quantize_block(const float* x, BlockQ8_0* y) {
  float amax = 0.0f;
  for (int j = 0; j < kLegacyBlock; ++j) {
    const float a = abs_f32(x[j]);
    amax = amax > a ? amax : a;
  }
  const float d = div_rn(amax, 127.0f);
  const float id = reciprocal_or_zero(d);
  y->d = f32_to_f16_bits(d);
  for (int j = 0; j < kLegacyBlock; ++j) y->qs[j] = to_int8_like_x86(round_half_away(mul_rn(x[j], id)));
}

WQ_HD inline void decode_block(const BlockQ4_0& b, float* y) {
  const float d = f16_bits_to_f32(b.d);
  for (int j = 0; j < kLegacyBlock / 2; ++j) {
    y[j] = mul_rn(static_cast<float>((b.qs[j] & 0x0f) - 8), d);
    y[j + 16] = mul_rn(static_cast<float>((b.qs[j] >> 4) - 8), d);
  }
}

WQ_HD inline void decode_block(const BlockQ4_1& b, float* y) {
  const float d = f16_bits_to_f32(b.d);
  const float m = f16_bits_to_f32(b.m);
  for (int j = 0; j < kLegacyBlock / 2; ++j) {
    y[j] = add_rn(mul_rn(static_cast<float>(b.qs[j] & 0x0f), d), m);
    y[j + 16] = add_rn(mul_rn(static_cast<float>(b.qs[j] >> 4), d), m);
  }
}

// The 5-bit codes j and j + 16 of a Q5 block.
WQ_HD inline int q5_code(const std::uint8_t* qs, std::uint32_t qh, int j) {
  const int low = j < 16 ? (qs[j] & 0x0f) : (qs[j - 16] >> 4);
  return low | static_cast<int>(((qh >> j) & 1u) << 4);
}

WQ_HD inline void decode_block(const BlockQ5_0& b, float* y) {
  const float d = f16_bits_to_f32(b.d);
  const std::uint32_t qh = load_u32_le(b.qh);
  for (int j = 0; j < kLegacyBlock; ++j) y[j] = mul_rn(static_cast<float>(q5_code(b.qs, qh, j) - 16), d);
}

WQ_HD inline void decode_block(const BlockQ5_1& b, float* y) {
  const float d = f16_bits_to_f32(b.d);
  const float m = f16_bits_to_f32(b.m);
  const std::uint32_t qh = load_u32_le(b.qh);
  for (int j = 0; j < kLegacyBlock; ++j) y[j] = add_rn(mul_rn(static_cast<float>(q5_code(b.qs, qh, j)), d), m);
}

WQ_HD inline void decode_block(const BlockQ8_0& b, float* y) {
  const float d = f16_bits_to_f32(b.d);
  for (int j = 0; j < kLegacyBlock; ++j) y[j] = mul_rn(static_cast<float>(b.qs[j]), d);
}

}  // namespace wq::codec::ggml
