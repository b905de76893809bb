// The k-quants' final codes, eight at a time (host/cpu/ggml_kquant_lanes.cpp), against the
// codec's one-at-a-time definition. Random weights almost never divide to within an ulp of a
// half, where a reciprocal multiplied in place of the division (or any other reordering) gives
// another code, so a whole-block test would pass such a mistake for millions of blocks. These
// inputs are built to land there: x = (k + 1/2) * d rounded to binary32, for steps d whose
// reciprocal is inexact, with and without an offset.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "cpu/ggml_kquant_lanes.h"
#include "wq/codec/ggml_kquants.h"

namespace wq {
namespace {

namespace ggml = codec::ggml;

struct CodeRange {
  bool offset;
  int lo, hi;  // symmetric: -half..half-1; with an offset: 0..nmax
};

TEST(GgmlFinalCodes, EightAtATimeEqualTheCodecNextToHalves) {
  const CodeRange ranges[] = {{true, 0, 3}, {true, 0, 15}, {true, 0, 31}, {false, -4, 3}, {false, -32, 31}};
  std::mt19937 rng(20261206);
  std::uniform_real_distribution<float> mantissa(1.0f, 2.0f);
  std::uniform_int_distribution<int> exponent(-20, 4);
  std::uniform_int_distribution<int> wobble(-2, 2);
  int near_halves = 0;
  for (const CodeRange& range : ranges) {
    SCOPED_TRACE(::testing::Message() << (range.offset ? "offset" : "symmetric") << " " << range.lo << ".." << range.hi);
    std::uniform_int_distribution<int> code(range.lo - 1, range.hi + 1);  // a few clamped too
    for (int trial = 0; trial < 4000; ++trial) {
      const float d = std::ldexp(mantissa(rng), exponent(rng));
      const float dm = range.offset ? d * static_cast<float>(code(rng) & 7) : 0.0f;
      std::vector<float> x(32);
      for (float& v : x) {
        const float target = (static_cast<float>(code(rng)) + 0.5f) * d - dm;
        // The value next to the half, or a few ulps to either side.
        v = target;
        for (int w = wobble(rng); w != 0; w += (w > 0 ? -1 : 1)) v = std::nextafter(v, w > 0 ? 1e30f : -1e30f);
      }
      std::vector<std::uint8_t> got(32);
      detail::kquant_final_codes(x.data(), 32, d, dm, range.offset, range.lo, range.hi, got.data());
      for (int i = 0; i < 32; ++i) {
        const int want = range.offset ? ggml::code_with_offset(x[i], d, dm, range.hi)
                                      : ggml::symmetric_code(x[i], d, -range.lo);
        ASSERT_EQ(got[i], want) << "x " << x[i] << " d " << d << " dm " << dm;
        const float q = codec::div_rn(codec::add_rn(x[i], dm), d);
        if (q != codec::mul_rn(codec::add_rn(x[i], dm), codec::div_rn(1.0f, d)) &&
            ggml::nearest_int(q) != ggml::nearest_int(codec::mul_rn(codec::add_rn(x[i], dm), codec::div_rn(1.0f, d)))) {
          ++near_halves;
        }
      }
    }
  }
  // The inputs do reach the cases that tell a division from a reciprocal.
  EXPECT_GT(near_halves, 100);
}

// Q3_K's 6-bit scales eight super-blocks at a time against the codec's loops, one super-block at
// a time, on what random weights rarely give: magnitudes that tie with opposite signs (the first
// is the largest), NaN scales (the codec's loops skip them), all-zero and one-scale super-blocks,
// codes next to their rounding ties, and a d that is a binary16 subnormal, rounds to 0, or
// overflows to infinity.
TEST(GgmlFinalCodes, Q3KScalesOfEightSuperBlocksEqualTheCodec) {
  const float nan = std::nanf("");
  std::mt19937 rng(20261207);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> pick(0, 15), kind(0, 9), tail(1, 8);
  std::uniform_int_distribution<int> exponent(-40, 30);
  int seen_zero_steps = 0, seen_ties = 0, seen_nan = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    float scales[8 * 16];
    for (int b = 0; b < 8; ++b) {
      float* s = scales + 16 * b;
      const float unit = std::ldexp(1.0f, exponent(rng));  // d from subnormal to overflow
      for (int j = 0; j < 16; ++j) s[j] = unit * normal(rng);
      switch (kind(rng)) {
        case 0:  // all zero, or -0
          for (int j = 0; j < 16; ++j) s[j] = (j & 1) != 0 ? -0.0f : 0.0f;
          break;
        case 1: {  // one scale alone
          const int j = pick(rng);
          for (int k = 0; k < 16; ++k) s[k] = k == j ? s[k] : 0.0f;
          break;
        }
        case 2: {  // the largest magnitude twice, with opposite signs
          float m = 0.0f;
          for (int j = 0; j < 16; ++j) m = std::max(m, std::fabs(s[j]));
          const int first = pick(rng), second = pick(rng);
          s[first] = m;
          s[second] = -m;
          seen_ties += first != second;
          break;
        }
        case 3: {  // a NaN among them: the default one, or one whose payload's low byte is
                   // above 127 (the codec's code wraps through int8_t before its clamp)
          const std::uint32_t payload = 0x7fc00000u | static_cast<std::uint32_t>(pick(rng) * 16 + 0x80);
          float with_payload;
          std::memcpy(&with_payload, &payload, sizeof with_payload);
          s[pick(rng)] = (trial & 1) != 0 ? nan : with_payload;
          ++seen_nan;
          break;
        }
        case 4: {  // codes at their rounding ties: s = max * (k + 1/2) / 32
          const float m = s[0] != 0.0f ? s[0] : unit;
          for (int j = 1; j < 16; ++j) s[j] = m * (static_cast<float>(pick(rng) * 2 - 15) + 0.5f) / 32.0f;
          break;
        }
        default: break;
      }
    }
    const int blocks = tail(rng);
    codec::ggml::BlockQ3_K got[8], want[8];
    std::memset(got, 0xa5, sizeof got);
    std::memset(want, 0xa5, sizeof want);
    float steps[8 * 16];
    unsigned zero_steps[8] = {};
    detail::q3_k_scales_of_lanes(scales, blocks, got, steps, zero_steps);
    for (int b = 0; b < 8; ++b) {
      SCOPED_TRACE(::testing::Message() << "trial " << trial << ", super-block " << b << " of " << blocks);
      if (b >= blocks) {  // not written
        EXPECT_EQ(std::memcmp(&got[b], &want[b], sizeof got[b]), 0);
        continue;
      }
      ggml::quantize_q3_k_scales(scales + 16 * b, &want[b]);
      ASSERT_EQ(got[b].d, want[b].d);
      ASSERT_EQ(std::memcmp(got[b].scales, want[b].scales, sizeof got[b].scales), 0);
      unsigned want_zeros = 0;
      for (int j = 0; j < 16; ++j) {
        const float step = ggml::q3_k_step(want[b], j);
        ASSERT_EQ(codec::float_bits(steps[8 * j + b]), codec::float_bits(step)) << "sub-block " << j;
        want_zeros |= (step == 0.0f ? 1u : 0u) << j;
      }
      ASSERT_EQ(zero_steps[b], want_zeros);
      seen_zero_steps += want_zeros != 0;
    }
  }
  // The cases above were reached.
  EXPECT_GT(seen_zero_steps, 100);
  EXPECT_GT(seen_ties, 100);
  EXPECT_GT(seen_nan, 100);
}

}  // namespace
}  // namespace wq
