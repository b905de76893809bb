// signed_extreme_lanes() (host/cpu/ggml_kquant_lane_ops.h) finds each lane's element of largest
// magnitude from the lane's largest and smallest elements, and scans again in order only where
// both attain it. It must give what the codec's signed_extreme() gives lane by lane, bits
// included: the first of equal magnitudes (+a before -a or after it), +0 for a lane of zeros,
// NaNs never chosen, infinities, subnormals. Weights almost never hold +a and -a as their
// largest magnitude, so these lanes are built to, in either order and at either width.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "cpu/ggml_kquant_lane_ops.h"
#include "wq/codec/ggml_kquant_search.h"

namespace wq {
namespace {

namespace ggml = codec::ggml;

// One lane's elements: random weights, then what the case asks for.
std::vector<float> lane_elements(int n, int kind, std::mt19937& rng) {
  std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
  std::uniform_int_distribution<int> position(0, n - 1);
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  std::vector<float> x(n);
  for (float& v : x) v = unit(rng);
  switch (kind) {
    case 0: break;  // plain weights
    case 1:         // +a and -a, the largest, in either order (and sometimes more of them)
    case 2: {
      const float a = 2.0f + std::abs(unit(rng));
      x[position(rng)] = a;
      x[position(rng)] = -a;
      if (kind == 2) x[position(rng)] = (rng() & 1) != 0 ? a : -a;
      break;
    }
    case 3:  // zeros of both signs only, or with NaNs
      for (float& v : x) v = (rng() & 1) != 0 ? 0.0f : -0.0f;
      if ((rng() & 1) != 0) x[position(rng)] = nan;
      break;
    case 4:  // NaNs among weights, one of them first
      x[0] = nan;
      x[position(rng)] = nan;
      break;
    case 5: {  // an infinity, sometimes both
      const float first = (rng() & 1) != 0 ? inf : -inf;
      x[position(rng)] = first;
      if ((rng() & 1) != 0) x[position(rng)] = -first;
      break;
    }
    case 6:  // subnormal lanes, ties among them
      for (float& v : x) v = unit(rng) * 1e-39f;
      x[position(rng)] = 3e-39f;
      x[position(rng)] = -3e-39f;
      break;
    default:  // the largest magnitude repeated with one sign
      x[position(rng)] = 5.0f;
      x[position(rng)] = 5.0f;
      break;
  }
  return x;
}

template <typename Vec>
void expect_codec_lane_by_lane(const char* width) {
  constexpr int kLanes = static_cast<int>(sizeof(Vec) / sizeof(float));
  constexpr int n = 16;
  std::mt19937 rng(20261208);
  std::uniform_int_distribution<int> kind(0, 7);
  int ties = 0, lanes_with_tie_first_negative = 0;
  for (int trial = 0; trial < 20000; ++trial) {
    Vec X[n];
    std::vector<float> lane[kLanes];
    // Most registers plain, so that the register-wide rescan is not always taken.
    const bool mixed = trial % 3 != 0;
    for (int j = 0; j < kLanes; ++j) {
      lane[j] = lane_elements(n, mixed ? kind(rng) : 0, rng);
      for (int i = 0; i < n; ++i) X[i][j] = lane[j][i];
    }
    Vec amax;
    const Vec max = detail::signed_extreme_lanes(X, n, &amax);
    for (int j = 0; j < kLanes; ++j) {
      float want_amax;
      const float want = ggml::signed_extreme(lane[j].data(), n, &want_amax);
      ASSERT_EQ(codec::float_bits(max[j]), codec::float_bits(want)) << width << " trial " << trial << " lane " << j;
      ASSERT_EQ(codec::float_bits(amax[j]), codec::float_bits(want_amax)) << width << " trial " << trial << " lane " << j;
      float high = 0, low = 0;
      for (float v : lane[j]) {
        high = v > high ? v : high;
        low = v < low ? v : low;
      }
      if (high != 0 && high == -low) {
        ++ties;
        lanes_with_tie_first_negative += want < 0 ? 1 : 0;
      }
    }
  }
  // Both orders of +a and -a were asked.
  EXPECT_GT(ties, 1000) << width;
  EXPECT_GT(lanes_with_tie_first_negative, 300) << width;
  EXPECT_LT(lanes_with_tie_first_negative, ties - 300) << width;
}

TEST(SignedExtremeLanes, IsTheCodecsLoopInEveryLaneAtEightLanes) { expect_codec_lane_by_lane<detail::V>("8 lanes"); }

TEST(SignedExtremeLanes, IsTheCodecsLoopInEveryLaneAtSixteenLanes) {
  expect_codec_lane_by_lane<detail::V16>("16 lanes");
}

}  // namespace
}  // namespace wq
