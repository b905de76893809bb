// Q3_K's first pass asks q3_k_may_step() (host/cpu/ggml_q3_k_fit_lanes.h) whether an element's
// refinement step could change its code, without the step's division; a lane it answers "no"
// for is not refined further. That answer must be proof: wherever it says no, ggml's step
// (make_q3_quants, spelled out below from the published algorithm) keeps the element's code or
// does not run. Random weights put the step's quotient within 2^-14 of a rounding half almost
// never, so these inputs are built to land there, on both sides, at every code, at the grid's
// ends, and with sums that are tiny, subnormal, negative, infinite or NaN.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>

#include "cpu/ggml_q3_k_fit_lanes.h"
#include "wq/codec/ggml_kquant_search.h"

namespace wq {
namespace {

namespace ggml = codec::ggml;
using detail::V;
using detail::VI;

constexpr int kNmax = 4;

// ggml's step at one element: whether it runs (slx > 0) and the code it would move to.
struct ReferenceStep {
  bool runs;
  int new_l;
};
ReferenceStep reference_step(float x, int l, float wxl, float wll, float sumlx, float suml2) {
  const float slx = sumlx - wxl;
  if (!(slx > 0)) return {false, l};
  const float sl2 = suml2 - wll;
  const int new_l = ggml::clamp_int(ggml::nearest_int(x * sl2 / slx), -kNmax, kNmax - 1);
  return {true, new_l};
}

TEST(Q3KStepFilter, SaysNoOnlyWhereGgmlsStepKeepsTheCode) {
  std::mt19937 rng(20261207);
  std::uniform_int_distribution<int> code(-kNmax, kNmax - 1), side(0, 1), kind(0, 11), ulps(-40, 40);
  std::uniform_int_distribution<int> exponent(-60, 40), tiny_exponent(-149, -90);
  std::uniform_real_distribution<float> mantissa(1.0f, 2.0f), unit(-1.0f, 1.0f);
  const float inf = std::numeric_limits<float>::infinity();
  int near_and_kept = 0, near_and_moved = 0, said_no = 0, far_at_ends = 0;
  for (int trial = 0; trial < 200000; ++trial) {
    V x, wxl, wll, sumlx, suml2;
    VI l;
    for (int j = 0; j < detail::kLanes; ++j) {
      l[j] = code(rng);
      const float slx = std::ldexp(mantissa(rng), exponent(rng));
      float q;  // the quotient x * sl2 / slx aimed at
      const int k = kind(rng);
      if (k < 6) {  // within a few ulps or up to 2^-12 of a rounding half, either side
        const float half = static_cast<float>(l[j]) + (side(rng) != 0 ? 0.5f : -0.5f);
        q = k < 3 ? half + static_cast<float>(ulps(rng)) * std::ldexp(1.0f, -22)
                  : half + unit(rng) * std::ldexp(1.0f, -12);
      } else if (k < 8) {  // anywhere near the code
        q = static_cast<float>(l[j]) + 0.6f * unit(rng);
      } else if (k < 10) {  // far away, or beyond nearest_int()'s range
        q = unit(rng) * std::ldexp(1.0f, exponent(rng) / 2 + 10);
      } else {  // at an end of the grid, well past it
        l[j] = side(rng) != 0 ? kNmax - 1 : -kNmax;
        q = static_cast<float>(l[j]) * std::ldexp(mantissa(rng), exponent(rng) / 4 + 2);
      }
      x[j] = std::ldexp(mantissa(rng), exponent(rng) / 2) * (side(rng) != 0 ? 1.0f : -1.0f);
      const float sl2 = q * slx / x[j];
      // The element's own terms: none, or of any size, so that the sums minus them round.
      wxl[j] = side(rng) != 0 ? 0.0f : slx * unit(rng) * 4.0f;
      wll[j] = side(rng) != 0 ? 0.0f : std::fabs(sl2) * unit(rng);
      sumlx[j] = slx + wxl[j];
      suml2[j] = sl2 + wll[j];
      switch (trial % 16) {  // sums no weights give, in some trials
        case 1: sumlx[j] = std::ldexp(mantissa(rng), tiny_exponent(rng)) + wxl[j]; break;
        case 2: sumlx[j] = -sumlx[j]; break;
        case 3: suml2[j] = j % 2 != 0 ? inf : -inf; break;
        case 4: sumlx[j] = j % 2 != 0 ? inf : std::nanf(""); break;
        case 5: x[j] = j % 2 != 0 ? 0.0f : std::ldexp(1.0f, -140); break;
        default: break;
      }
    }
    const VI may = detail::q3_k_may_step(x, detail::to_float(l), wxl, wll, sumlx, suml2);
    for (int j = 0; j < detail::kLanes; ++j) {
      const ReferenceStep step = reference_step(x[j], l[j], wxl[j], wll[j], sumlx[j], suml2[j]);
      near_and_moved += step.runs && step.new_l != l[j];
      if (may[j] != 0) continue;
      ++said_no;
      ASSERT_TRUE(!step.runs || step.new_l == l[j])
          << "trial " << trial << " lane " << j << ": x " << x[j] << " l " << l[j] << " wxl " << wxl[j] << " wll "
          << wll[j] << " sumlx " << sumlx[j] << " suml2 " << suml2[j] << " moves to " << step.new_l;
      const float slx = sumlx[j] - wxl[j];
      const float q = x[j] * (suml2[j] - wll[j]) / slx;
      const float to_half = std::fabs(std::fabs(q - static_cast<float>(l[j])) - 0.5f);
      near_and_kept += step.runs && to_half < std::ldexp(1.0f, -12);
      far_at_ends += step.runs && std::fabs(q - static_cast<float>(l[j])) > 2.0f;
    }
  }
  // The inputs reach what the proof is about: quotients just inside a half that the filter still
  // clears, quotients across it that the step moves, and the grid's ends far beyond it.
  EXPECT_GT(near_and_kept, 1000);
  EXPECT_GT(near_and_moved, 10000);
  EXPECT_GT(far_at_ends, 1000);
  EXPECT_GT(said_no, 200000);
}

}  // namespace
}  // namespace wq
