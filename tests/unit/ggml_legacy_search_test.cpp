// wq's search in the legacy ggml layouts (codec/ggml_legacy_search.h): on every block it is
// never further from the input than ggml's reference block, it keeps the reference's bytes
// where nothing is strictly better, its codes stay inside what llama.cpp reads, and on
// weight-like data it is measurably closer (a search that did nothing would fail here).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "cpu/cpu_features.h"
#include "cpu/ggml_legacy_search_avx2.h"
#include "wq/codec/ggml_legacy.h"
#include "wq/codec/ggml_legacy_search.h"

namespace wq {
namespace {

namespace ggml = codec::ggml;

// sum (x - decoded)^2 in binary64, in the plainest order: an error measure that does not share
// the search's own (block_error()).
template <typename Block>
double plain_error(const float* x, const Block& block) {
  float decoded[32];
  ggml::decode_block(block, decoded);
  double sum = 0.0;
  for (int i = 0; i < 32; ++i) {
    const double e = static_cast<double>(x[i]) - static_cast<double>(decoded[i]);
    sum += e * e;
  }
  return sum;
}

// Blocks of many kinds: weight-like (heavy tails), uniform, all positive, with one outlier,
// constant, zero, subnormal, huge, and values right on a reference grid.
std::vector<float> test_blocks(std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::student_t_distribution<float> heavy(4.0f);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<float> x;
  const auto block = [&](auto make) {
    for (int i = 0; i < 32; ++i) x.push_back(make(i));
  };
  for (int b = 0; b < 3000; ++b) {
    const float scale = std::ldexp(1.0f, static_cast<int>(rng() % 24) - 16);
    switch (b % 10) {
      case 0: case 1: case 2: case 3: block([&](int) { return scale * heavy(rng); }); break;
      case 4: block([&](int) { return scale * uniform(rng); }); break;
      case 5: block([&](int) { return scale * (1.5f + uniform(rng)); }); break;
      case 6: block([&](int i) { return i == 7 ? 40.0f * scale : scale * heavy(rng); }); break;
      case 7: block([&](int) { return b % 20 == 7 ? 0.0f : -0.375f * scale; }); break;
      case 8: block([&](int) { return std::ldexp(uniform(rng), b % 20 == 8 ? -140 : 100); }); break;
      default: block([&](int) { return std::ldexp(static_cast<float>(static_cast<int>(rng() % 16) - 8), -5); });
    }
  }
  return x;
}

template <typename Block>
void check_type(const char* name, double min_gain_db) {
  SCOPED_TRACE(name);
  const std::vector<float> x = test_blocks(20261206);
  const std::size_t blocks = x.size() / 32;
  double ref_total = 0.0, search_total = 0.0;
  int better = 0;
  for (std::size_t b = 0; b < blocks; ++b) {
    const float* xb = x.data() + 32 * b;
    Block ref, found;
    std::memset(&ref, 0xa5, sizeof ref);
    std::memset(&found, 0x5a, sizeof found);
    ggml::quantize_block(xb, &ref);
    ggml::search_block(xb, &found);
    const double ref_err = ggml::decoded_block_error(xb, ref), found_err = ggml::decoded_block_error(xb, found);
    if (std::isnan(ref_err)) {
      // Values beyond binary16 steps (2^100): the reference stores an infinite step, and no
      // candidate has a stored step at all, so the bytes stay ggml's.
      ASSERT_EQ(std::memcmp(&found, &ref, sizeof ref), 0) << "block " << b;
      continue;
    }
    ASSERT_LE(found_err, ref_err) << "block " << b;
    ASSERT_LE(plain_error(xb, found), plain_error(xb, ref) * (1.0 + 1e-12)) << "block " << b;
    if (found_err == ref_err) {
      // Nothing strictly better: the reference's own bytes, not an equal-error lookalike.
      ASSERT_EQ(std::memcmp(&found, &ref, sizeof ref), 0) << "block " << b;
    } else {
      ++better;
    }
    if constexpr (std::is_same_v<Block, ggml::BlockQ8_0>) {
      for (std::int8_t q : found.qs) ASSERT_NE(q, -128) << "block " << b;
    }
    double signal = 0.0;
    for (int i = 0; i < 32; ++i) signal += static_cast<double>(xb[i]) * xb[i];
    if (signal > 0.0 && ref_err > 0.0 && std::isfinite(ref_err) && b % 10 < 4) {  // the weight-like blocks  // scale-free: each block weighs by its own energy
      ref_total += ref_err / signal;
      search_total += found_err / signal;
    }
  }
  const double gain_db = 10.0 * std::log10(ref_total / search_total);
  EXPECT_GT(better, static_cast<int>(blocks / 3)) << "blocks improved";
  EXPECT_GT(gain_db, min_gain_db) << "mean per-block error, reference / search";
  std::printf("%s: %d of %zu blocks closer, mean gain %.2f dB\n", name, better, blocks, gain_db);
}

TEST(GgmlLegacySearch, NeverWorseThanTheReferenceAndCloserOnWeights) {
  // Measured: +0.33, +0.21, +4.3 (steps below binary16's normal range, which the reference
  // codes with its unrounded step), +0.89, +0.89 dB; the bounds leave room for nothing else.
  check_type<ggml::BlockQ4_0>("Q4_0", 0.25);
  check_type<ggml::BlockQ5_0>("Q5_0", 0.15);
  check_type<ggml::BlockQ8_0>("Q8_0", 1.0);
  check_type<ggml::BlockQ4_1>("Q4_1", 0.6);
  check_type<ggml::BlockQ5_1>("Q5_1", 0.6);
}

template <typename Block>
void expect_reference_bytes(const std::vector<float>& x, const char* what) {
  Block ref, found;
  ggml::quantize_block(x.data(), &ref);
  ggml::search_block(x.data(), &found);
  EXPECT_EQ(std::memcmp(&found, &ref, sizeof ref), 0) << what;
}

template <typename Block>
void expect_reference_on_hostile_blocks() {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  std::vector<float> x(32, 0.0f);
  expect_reference_bytes<Block>(x, "zeros");
  std::vector<float> with_nan(32, 0.25f);
  with_nan[3] = nan;
  with_nan[9] = -1.0f;
  expect_reference_bytes<Block>(with_nan, "a NaN (the backend refuses the tensor; the block stays bounded)");
  std::vector<float> with_inf(32, 0.25f);
  with_inf[5] = -inf;
  expect_reference_bytes<Block>(with_inf, "an infinity");
  std::vector<float> huge(32, 3e38f);
  huge[0] = -3e38f;
  expect_reference_bytes<Block>(huge, "a range beyond binary16 (no stored step)");
}

TEST(GgmlLegacySearch, KeepsTheReferenceWhereItCannotSearch) {
  expect_reference_on_hostile_blocks<ggml::BlockQ4_0>();
  expect_reference_on_hostile_blocks<ggml::BlockQ5_0>();
  expect_reference_on_hostile_blocks<ggml::BlockQ8_0>();
  expect_reference_on_hostile_blocks<ggml::BlockQ4_1>();
  expect_reference_on_hostile_blocks<ggml::BlockQ5_1>();
  // A constant block decodes exactly under the affine types' reference: nothing beats it.
  expect_reference_bytes<ggml::BlockQ4_1>(std::vector<float>(32, -0.375f), "constant Q4_1");
  expect_reference_bytes<ggml::BlockQ5_1>(std::vector<float>(32, 7.0f), "constant Q5_1");
}

// The AVX2 candidates (host/cpu/ggml_legacy_search_avx2.cpp) against the codec's, on blocks
// whose quotients land next to halves, where a reordered operation would pick another code,
// and on clamped, zero, subnormal and NaN elements.
TEST(GgmlLegacySearch, Avx2CandidatesAreTheCodecs) {
  if (!detail::use_avx2()) GTEST_SKIP() << "no AVX2 on this CPU: the scalar kernels run everywhere";
  const detail::Avx2SearchKernels avx2;
  const ggml::ScalarSearchKernels scalar;
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> mantissa(1.0f, 2.0f);
  std::uniform_int_distribution<int> exponent(-30, 10), code(-140, 140), wobble(-2, 2);
  int near_halves = 0;
  for (int trial = 0; trial < 20000; ++trial) {
    const float d = std::ldexp(mantissa(rng), exponent(rng)) * (trial % 2 ? -1.0f : 1.0f);
    float x[32];
    for (int i = 0; i < 32; ++i) {
      const float half = (static_cast<float>(code(rng)) + 0.5f) * d;
      x[i] = std::nextafter(half, wobble(rng) > 0 ? INFINITY : -INFINITY);
      if (wobble(rng) == 2) x[i] = half;
      if (std::fabs(x[i] / d - std::nearbyint(x[i] / d)) > 0.49f) ++near_halves;
    }
    if (trial % 97 == 0) x[trial % 32] = 0.0f;
    if (trial % 89 == 0) x[(trial + 3) % 32] = 1e-42f;
    if (trial % 1009 == 0) x[5] = NAN;
    for (const auto& [low, high] : {std::pair{8, 7}, std::pair{16, 15}, std::pair{127, 127}}) {
      ggml::SymmetricCodes a, b;
      const double ea = avx2.symmetric(x, d, low, high, &a), eb = scalar.symmetric(x, d, low, high, &b);
      ASSERT_TRUE(ea == eb || (std::isnan(ea) && std::isnan(eb))) << trial << ": " << ea << " vs " << eb;
      ASSERT_EQ(std::memcmp(a.q, b.q, sizeof a.q), 0) << trial;
    }
    for (int bits : {4, 5}) {
      const codec::AffineParams p{std::fabs(d), -std::fabs(d) * static_cast<float>(code(rng) & 15)};
      std::uint8_t qa[32], qb[32];
      const double ea = avx2.affine(x, p, bits, qa), eb = scalar.affine(x, p, bits, qb);
      ASSERT_TRUE(ea == eb || (std::isnan(ea) && std::isnan(eb))) << trial;
      ASSERT_EQ(std::memcmp(qa, qb, 32), 0) << trial;
    }
  }
  EXPECT_GT(near_halves, 100000) << "the inputs must reach the halves";
  // Whole blocks: the search with either kernels writes the same bytes.
  const std::vector<float> blocks = test_blocks(99);
  for (std::size_t b = 0; b < blocks.size() / 32; ++b) {
    const float* xb = blocks.data() + 32 * b;
    const auto same = [&](auto tag) {
      using Block = decltype(tag);
      Block a, c;
      ggml::search_block(xb, &a, avx2);
      ggml::search_block(xb, &c, scalar);
      return std::memcmp(&a, &c, sizeof a) == 0;
    };
    ASSERT_TRUE(same(ggml::BlockQ4_0{}) && same(ggml::BlockQ5_0{}) && same(ggml::BlockQ8_0{}) &&
                same(ggml::BlockQ4_1{}) && same(ggml::BlockQ5_1{})) << "block " << b;
  }
}

TEST(GgmlLegacySearch, TypesWithASearchAreTheLegacyOnes) {
  for (ggml::Type t : ggml::kQuantizedTypes) {
    const bool legacy = ggml::layout_of(t).block_elements == 32;
    EXPECT_EQ(ggml::has_mse_search(t), legacy) << ggml::type_name(t);
  }
  EXPECT_TRUE(ggml::kHasSearch<ggml::BlockQ4_0>);
  EXPECT_FALSE(ggml::kHasSearch<ggml::BlockQ4_K>);
}

}  // namespace
}  // namespace wq
