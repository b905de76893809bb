// codec::reciprocal_code_biased (wq/codec/reciprocal.h), the scalar form the CUDA kernels use:
// wherever it reports the proof as holding, its code is the division's, bit for bit; the code
// is readable from the biased sum's bits; and the proof is refused for some boundary values
// but not for most values.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "wq/codec/affine.h"
#include "wq/codec/reciprocal.h"

namespace wq {
namespace {

// Checks one value; returns whether the proof held.
bool check(float x, codec::AffineParams p, float max_code) {
  const float r = codec::div_rn(1.0f, p.scale);
  float t = 0.0f;
  bool unproved = false;
  const float biased = codec::reciprocal_code_biased(codec::sub_rn(x, p.min), r, max_code, &t, &unproved);
  const float want = codec::affine_code_value(x, p.scale, p.min, max_code);
  const std::uint32_t code = codec::float_bits(biased) - codec::kRoundMagicBits;
  EXPECT_EQ(code, static_cast<std::uint32_t>(codec::float_bits(biased) & 0xffu)) << "x " << x;
  EXPECT_EQ(static_cast<float>(code), codec::sub_rn(biased, codec::kRoundMagic)) << "x " << x;
  EXPECT_EQ(codec::float_bits(t), codec::float_bits(codec::mul_rn(codec::sub_rn(x, p.min), r)));
  if (unproved) return false;
  EXPECT_EQ(static_cast<float>(code), want) << "x " << x << " scale " << p.scale << " min " << p.min;
  return true;
}

TEST(ReciprocalCode, EqualsTheDivisionWhereverItsProofHolds) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  int refused_random = 0, random = 0, refused_boundary = 0;
  for (int bits = 1; bits <= 8; ++bits) {
    const float max_code = static_cast<float>(codec::max_code(bits));
    for (float mag : {1e-30f, 1e-7f, 0.02f, 1.0f, 3.0f, 1e4f, 1e20f, 1e37f}) {
      for (bool f16 : {false, true}) {
        if (f16 && (mag > 6e4f || mag < 1e-4f)) continue;
        const float lo = -mag * (0.5f + unit(rng)), hi = mag * (0.5f + unit(rng));
        codec::AffineParams p{};
        ASSERT_EQ(codec::affine_params(lo, hi, bits, f16, &p), codec::ParamsStatus::kOk);
        ASSERT_TRUE(codec::reciprocal_is_exact_enough(p.scale));
        for (int i = 0; i < 2000; ++i) {
          // Random values, and values on and a few ulps beside the half-integer boundaries.
          float x = lo + (hi - lo) * unit(rng);
          if (i % 2 == 1) {
            const int k = static_cast<int>(unit(rng) * max_code);
            x = static_cast<float>(static_cast<double>(p.min) + (k + 0.5) * static_cast<double>(p.scale));
            for (int step = i % 9 - 4; step != 0; step += step < 0 ? 1 : -1) {
              x = std::nextafter(x, step < 0 ? -INFINITY : INFINITY);
            }
          }
          const bool proved = check(x, p, max_code);
          if (i % 2 == 0) {
            refused_random += proved ? 0 : 1;
            ++random;
          } else {
            refused_boundary += proved ? 0 : 1;
          }
        }
        // Outside the range too (F16 parameters clip), and NaN: code 0 through the clamp.
        check(lo - mag, p, max_code);
        check(hi + mag, p, max_code);
        check(NAN, p, max_code);
      }
    }
  }
  // Values on or next to a boundary must be refused (the proof cannot decide them); random
  // ones hardly ever (about 1 in 2000 expected), or the reciprocal would not pay.
  EXPECT_GT(refused_boundary, 0);
  EXPECT_LT(refused_random, random / 100);
}

TEST(ReciprocalCode, PremiseExcludesZeroSubnormalAndHugeScales) {
  EXPECT_FALSE(codec::reciprocal_is_exact_enough(0.0f));
  EXPECT_FALSE(codec::reciprocal_is_exact_enough(1e-39f));
  EXPECT_FALSE(codec::reciprocal_is_exact_enough(0x1p127f));
  EXPECT_TRUE(codec::reciprocal_is_exact_enough(0x1p-126f));
  EXPECT_TRUE(codec::reciprocal_is_exact_enough(0x1p126f));
  EXPECT_TRUE(codec::reciprocal_is_exact_enough(1.0f));
}

}  // namespace
// The code of x without the clamp, as the CPU's clamp-free coders make it: rint(t), or the
// division where the proof's check fails.
float clamp_free_code(float x, codec::AffineParams p, float r, float max_code) {
  const float t = codec::mul_rn(codec::sub_rn(x, p.min), r);
  const float q = std::nearbyint(t);
  if (!(std::fabs(t - q) <= codec::kReciprocalMargin)) return codec::affine_code_value(x, p.scale, p.min, max_code);
  return q;
}

// reciprocal_coverage() says a group may skip the clamp only where every element's clamp-free
// code is the codec's: random groups whose ends fall on either side of [-1/2, M + 1/2] by up to
// a code, each checked at its ends and 64 points between; and the bound itself is exact.
TEST(ReciprocalCoverage, SaysInsideOnlyWhereTheClampChangesNoCode) {
  std::mt19937 rng(23);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f), side(-1.0f, 1.0f);
  int inside = 0, outside = 0;
  for (int bits = 1; bits <= 8; ++bits) {
    const float max_code = static_cast<float>(codec::max_code(bits));
    for (int trial = 0; trial < 4000; ++trial) {
      const float scale = (trial % 2 ? -1.0f : 1.0f) * std::ldexp(0.5f + unit(rng), static_cast<int>(rng() % 40) - 20);
      const codec::AffineParams p{scale, side(rng) * 100.0f * std::fabs(scale)};
      const float r = codec::div_rn(1.0f, p.scale);
      // ends at codes -1..1 below 0 and M-1..M+1 (in the direction of the scale's sign)
      const float a = p.min + scale * side(rng), b = p.min + scale * (max_code + side(rng));
      const float lo = std::min(a, b), hi = std::max(a, b);
      if (codec::reciprocal_coverage(lo, hi, p, r, max_code) != codec::Coverage::kEveryElementInside) {
        ++outside;
        continue;
      }
      ++inside;
      for (int i = 0; i <= 65; ++i) {
        const float x = i == 0 ? lo : i == 65 ? hi : lo + (hi - lo) * unit(rng);
        const float want = codec::affine_code_value(x, p.scale, p.min, max_code);
        ASSERT_EQ(clamp_free_code(x, p, r, max_code), want) << "bits " << bits << " x " << x << " scale " << p.scale
                                                            << " min " << p.min << " [" << lo << ", " << hi << "]";
      }
    }
  }
  EXPECT_GT(inside, 4000);
  EXPECT_GT(outside, 4000);
  // scale 1, min 0: t = x, so the bound is the ends' values.
  const codec::AffineParams unit_scale{1.0f, 0.0f};
  EXPECT_EQ(codec::reciprocal_coverage(-0.5f, 15.5f, unit_scale, 1.0f, 15.0f), codec::Coverage::kEveryElementInside);
  EXPECT_EQ(codec::reciprocal_coverage(std::nextafter(-0.5f, -1.0f), 15.0f, unit_scale, 1.0f, 15.0f),
            codec::Coverage::kMayClip);
  EXPECT_EQ(codec::reciprocal_coverage(0.0f, std::nextafter(15.5f, 16.0f), unit_scale, 1.0f, 15.0f),
            codec::Coverage::kMayClip);
  EXPECT_EQ(codec::reciprocal_coverage(0.0f, std::nanf(""), unit_scale, 1.0f, 15.0f), codec::Coverage::kMayClip);
}

}  // namespace wq
