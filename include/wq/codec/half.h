// binary16 (F16) and bfloat16 (BF16) conversions, round to nearest even, subnormals kept.
//
// Integer-only so host and device produce the same bits without relying on any hardware
// conversion instruction or rounding mode.
#pragma once

#include <cstdint>

#include "wq/codec/config.h"

namespace wq::codec {

inline constexpr std::uint16_t kF16Infinity = 0x7c00;

/// Rounds a binary32 value to binary16 (nearest, ties to even). Finite values of magnitude
/// >= 65520 become infinity: callers that must not overflow check with f16_overflows().
WQ_HD inline std::uint16_t f32_to_f16_bits(float value) {
  const std::uint32_t x = float_bits(value);
  const std::uint16_t sign = static_cast<std::uint16_t>((x >> 16) & 0x8000u);
  const std::uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) {  // infinity or NaN (NaN stays a quiet NaN)
    return static_cast<std::uint16_t>(sign | (ax > 0x7f800000u ? 0x7e00u : 0x7c00u));
  }
  if (ax >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // >= 65520
  if (ax < 0x38800000u) {  // below 2^-14: a binary16 subnormal or zero
    if (ax <= 0x33000000u) return sign;  // <= 2^-25 rounds to zero (2^-25 is a tie to even 0)
    const std::uint32_t exponent = ax >> 23;
    const std::uint32_t mantissa = (ax & 0x7fffffu) | 0x800000u;
    const std::uint32_t shift = 126u - exponent;  // value / 2^-24 = mantissa >> shift
    std::uint32_t m = mantissa >> shift;
    const std::uint32_t rest = mantissa & ((1u << shift) - 1u);
    const std::uint32_t half = 1u << (shift - 1u);
    if (rest > half || (rest == half && (m & 1u))) ++m;
    return static_cast<std::uint16_t>(sign | m);
  }
  const std::uint32_t rebased = ax - 0x38000000u;  // exponent bias 127 -> 15
  std::uint32_t m = rebased >> 13;
  const std::uint32_t rest = rebased & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (m & 1u))) ++m;  // a carry bumps the exponent
  return static_cast<std::uint16_t>(sign | m);
}

/// Exact widening of binary16 to binary32.
WQ_HD inline float f16_bits_to_f32(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exponent = (h >> 10) & 0x1fu;
  std::uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0x1fu) return bits_float(sign | 0x7f800000u | (mantissa << 13));
  if (exponent != 0) return bits_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
  if (mantissa == 0) return bits_float(sign);
  // Subnormal: normalise the mantissa into binary32's wider exponent range.
  std::uint32_t e = 113u;
  while ((mantissa & 0x400u) == 0) {
    mantissa <<= 1;
    --e;
  }
  return bits_float(sign | (e << 23) | ((mantissa & 0x3ffu) << 13));
}

/// Rounds a binary32 value to bfloat16 (nearest, ties to even); NaN stays a quiet NaN.
WQ_HD inline std::uint16_t f32_to_bf16_bits(float value) {
  const std::uint32_t x = float_bits(value);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((x >> 16) | 0x40u);
  const std::uint32_t rounded = x + 0x7fffu + ((x >> 16) & 1u);
  return static_cast<std::uint16_t>(rounded >> 16);
}

/// Exact widening of bfloat16 to binary32.
WQ_HD inline float bf16_bits_to_f32(std::uint16_t b) {
  return bits_float(static_cast<std::uint32_t>(b) << 16);
}

/// S() of design.md §3 for F16 scales: the binary32 value of the nearest binary16.
WQ_HD inline float round_through_f16(float value) { return f16_bits_to_f32(f32_to_f16_bits(value)); }

/// True when a finite binary32 value has no finite binary16 (or bfloat16) neighbour.
WQ_HD inline bool f16_overflows(float value) {
  return is_finite(value) && (f32_to_f16_bits(value) & 0x7fffu) == kF16Infinity;
}
WQ_HD inline bool bf16_overflows(float value) {
  return is_finite(value) && (f32_to_bf16_bits(value) & 0x7fffu) == 0x7f80u;
}

}  // namespace wq::codec
