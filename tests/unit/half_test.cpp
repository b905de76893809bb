// F16/BF16 rounding of the codec against the compiler's own conversions (_Float16 and a
// float64 reference of round-to-nearest-even), over every binary16 value and random floats.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "wq/codec/half.h"

namespace wq {
namespace {

TEST(Half, EveryF16ValueWidensExactlyAndRoundTrips) {
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    const float f = codec::f16_bits_to_f32(static_cast<std::uint16_t>(h));
    const _Float16 reference = std::bit_cast<_Float16>(static_cast<std::uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(static_cast<float>(reference)));
      continue;
    }
    EXPECT_EQ(std::bit_cast<std::uint32_t>(f), std::bit_cast<std::uint32_t>(static_cast<float>(reference))) << h;
    EXPECT_EQ(codec::f32_to_f16_bits(f), h) << h;
  }
}

TEST(Half, RandomFloatsRoundToNearestEvenLikeTheCompiler) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<std::uint32_t> bits;
  for (int i = 0; i < 2000000; ++i) {
    // Bias toward the F16 range (including subnormals and the overflow edge).
    std::uint32_t u = bits(rng);
    if (i % 2) u = (u & 0x807fffffu) | ((100u + (u >> 23) % 45u) << 23);
    const float f = std::bit_cast<float>(u);
    if (std::isnan(f)) continue;
    const std::uint16_t expected = std::bit_cast<std::uint16_t>(static_cast<_Float16>(f));
    ASSERT_EQ(codec::f32_to_f16_bits(f), expected) << std::hexfloat << f;
  }
}

TEST(Half, F16OverflowEdge) {
  EXPECT_FALSE(codec::f16_overflows(65504.0f));
  EXPECT_FALSE(codec::f16_overflows(65519.99f));  // rounds down to 65504
  EXPECT_TRUE(codec::f16_overflows(65520.0f));    // tie rounds to even: infinity
  EXPECT_TRUE(codec::f16_overflows(-1e10f));
  EXPECT_FALSE(codec::f16_overflows(std::numeric_limits<float>::infinity()));  // not finite
  EXPECT_EQ(codec::f32_to_f16_bits(std::bit_cast<float>(0x33000000u)), 0u);  // 2^-25 -> 0 (even)
  EXPECT_EQ(codec::f32_to_f16_bits(std::bit_cast<float>(0x33000001u)), 1u);  // just above -> 2^-24
}

TEST(Half, Bf16RoundsToNearestEven) {
  std::mt19937 rng(11);
  std::uniform_int_distribution<std::uint32_t> bits;
  for (int i = 0; i < 1000000; ++i) {
    const std::uint32_t u = bits(rng);
    const float f = std::bit_cast<float>(u);
    if (std::isnan(f)) continue;
    const std::uint16_t b = codec::f32_to_bf16_bits(f);
    const float back = codec::bf16_bits_to_f32(b);
    // Nearest: no other bf16 is closer; ties go to the even mantissa.
    const float up = codec::bf16_bits_to_f32(static_cast<std::uint16_t>(b + 1));
    const float down = codec::bf16_bits_to_f32(static_cast<std::uint16_t>(b - 1));
    const double err = std::fabs(static_cast<double>(back) - f);
    if (std::isfinite(back) && std::isfinite(up)) {
      ASSERT_LE(err, std::fabs(static_cast<double>(up) - f));
    }
    if (std::isfinite(back) && std::isfinite(down) && (b & 0x7fff) != 0) {
      ASSERT_LE(err, std::fabs(static_cast<double>(down) - f));
    }
    if ((u & 0xffffu) == 0x8000u) {
      ASSERT_EQ(b & 1u, 0u);
    }
  }
  EXPECT_EQ(codec::f32_to_bf16_bits(1.0f), 0x3f80);
  EXPECT_TRUE(std::isnan(codec::bf16_bits_to_f32(codec::f32_to_bf16_bits(std::nanf("")))));
}

}  // namespace
}  // namespace wq
