// The k-quants' final codes, eight at a time (host/cpu/ggml_kquant_lanes.cpp), against the
// codec's one-at-a-time definition. Random weights almost never divide to within an ulp of a
// half, where a reciprocal multiplied in place of the division (or any other reordering) gives
// another code, so a whole-block test would pass such a mistake for millions of blocks. These
// inputs are built to land there: x = (k + 1/2) * d rounded to binary32, for steps d whose
// reciprocal is inexact, with and without an offset.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
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

}  // namespace
}  // namespace wq
