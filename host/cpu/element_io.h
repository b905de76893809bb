// Loading tensor elements as binary32 and storing binary32 results in any floating dtype.
//
// Checkpoint data in a mapped file need not be aligned, so every access goes through memcpy,
// which compilers turn into plain (vectorisable) unaligned loads.
#pragma once

#include <cstdint>
#include <cstring>

#include "wq/codec/half.h"
#include "wq/dtype.h"

namespace wq::detail {

/// Bytes of one element of floating dtype D.
template <DType D>
inline constexpr std::uint64_t kElementBytes = D == DType::kF64 ? 8 : D == DType::kF32 ? 4 : 2;

template <DType D>
inline float load_f32(const std::byte* base, std::uint64_t i) {
  if constexpr (D == DType::kF32) {
    float v;
    std::memcpy(&v, base + 4 * i, 4);
    return v;
  } else if constexpr (D == DType::kF64) {
    double v;
    std::memcpy(&v, base + 8 * i, 8);
    return static_cast<float>(v);
  } else if constexpr (D == DType::kF16) {
    std::uint16_t h;
    std::memcpy(&h, base + 2 * i, 2);
    return codec::f16_bits_to_f32(h);
  } else {
    static_assert(D == DType::kBF16, "floating dtypes only");
    std::uint16_t b;
    std::memcpy(&b, base + 2 * i, 2);
    return codec::bf16_bits_to_f32(b);
  }
}

template <DType D>
inline void store_f32(std::byte* base, std::uint64_t i, float v) {
  if constexpr (D == DType::kF32) {
    std::memcpy(base + 4 * i, &v, 4);
  } else if constexpr (D == DType::kF64) {
    const double d = v;
    std::memcpy(base + 8 * i, &d, 8);
  } else if constexpr (D == DType::kF16) {
    const std::uint16_t h = codec::f32_to_f16_bits(v);
    std::memcpy(base + 2 * i, &h, 2);
  } else {
    static_assert(D == DType::kBF16, "floating dtypes only");
    const std::uint16_t b = codec::f32_to_bf16_bits(v);
    std::memcpy(base + 2 * i, &b, 2);
  }
}

/// Calls fn.template operator()<D>() with the floating dtype D known at compile time.
template <typename Fn>
decltype(auto) dispatch_floating(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::kF64: return fn.template operator()<DType::kF64>();
    case DType::kF16: return fn.template operator()<DType::kF16>();
    case DType::kBF16: return fn.template operator()<DType::kBF16>();
    default: return fn.template operator()<DType::kF32>();
  }
}

/// Calls fn.template operator()<B>() with the code width B (1..8) known at compile time.
template <typename Fn>
decltype(auto) dispatch_bits(int bits, Fn&& fn) {
  switch (bits) {
    case 1: return fn.template operator()<1>();
    case 2: return fn.template operator()<2>();
    case 3: return fn.template operator()<3>();
    case 4: return fn.template operator()<4>();
    case 5: return fn.template operator()<5>();
    case 6: return fn.template operator()<6>();
    case 7: return fn.template operator()<7>();
    default: return fn.template operator()<8>();
  }
}

}  // namespace wq::detail
