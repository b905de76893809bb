// The integer conversions of ggml's reference quantizers, spelled so that the host and the
// device give the bits that ggml's x86-64 build gives, for every binary32 input.
//
// ggml's C code rounds in three different ways (docs/ggml-types.md §2):
// - `nearest_int()` of the k-quants adds 1.5 * 2^23 and reads the low mantissa bits;
// - the legacy types truncate `v + 0.5f` with a C cast to a byte;
// - Q8_0 stores `roundf(v)` into a signed byte.
// A C cast of a float to a narrow integer is undefined when the value does not fit; on x86-64
// GCC compiles it to cvttss2si (32-bit), which yields INT32_MIN for NaN and for anything
// outside the int32 range, and then keeps the low byte. Denormal or huge inputs reach those
// cases (a reciprocal overflows to infinity), so the conversions below follow cvttss2si
// exactly instead of leaving it to the compiler.
#pragma once

#include <cstdint>

#include "wq/codec/config.h"

namespace wq::codec::ggml {

/// ggml's nearest_int(): round half to even for |f| <= 2^22, and beyond that the same
/// deterministic bits as the original (the low 23 bits of f + 1.5 * 2^23, re-centred).
WQ_HD inline int nearest_int(float f) {
  const float shifted = add_rn(f, 12582912.0f);
  return static_cast<int>(float_bits(shifted) & 0x007fffffu) - 0x00400000;
}

/// x86-64 cvttss2si: truncation toward zero, INT32_MIN for NaN and out-of-range values.
WQ_HD inline std::int32_t truncate_like_x86(float f) {
  if (!(f > -2147483904.0f && f < 2147483648.0f)) return INT32_MIN;  // NaN fails both tests
#if defined(__CUDA_ARCH__)
  return __float2int_rz(f);
#else
  return static_cast<std::int32_t>(f);
#endif
}

/// `(int8_t)(f)` as ggml's x86-64 build computes it (C++20 narrowing is modular).
WQ_HD inline std::int8_t to_int8_like_x86(float f) { return static_cast<std::int8_t>(truncate_like_x86(f)); }

/// `(uint8_t)(f)` likewise.
WQ_HD inline std::uint8_t to_uint8_like_x86(float f) { return static_cast<std::uint8_t>(truncate_like_x86(f)); }

/// C's roundf(): halves away from zero; exact on host and device.
WQ_HD inline float round_half_away(float f) {
#if defined(__CUDA_ARCH__)
  return ::roundf(f);
#else
  return std::round(f);
#endif
}

/// sqrtf, correctly rounded on both sides (the device's default would be too, but the name
/// says so even under other flags).
WQ_HD inline float sqrt_rn(float f) {
#if defined(__CUDA_ARCH__)
  return __fsqrt_rn(f);
#else
  return std::sqrt(f);
#endif
}

WQ_HD inline float abs_f32(float f) { return bits_float(float_bits(f) & 0x7fffffffu); }

}  // namespace wq::codec::ggml
