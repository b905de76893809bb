// wq's ggml block types against known-answer vectors computed by ggml's own library
// (tests/data/ggml_vectors.json, made by tests/reference/make_ggml_vectors.py): the blocks of
// quantize_row_*_ref and the values of dequantize_row_*, byte for byte, through the shared
// per-block codec and through the CPU backend's kernels.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>

#include "cpu/cpu_features.h"
#include "cpu/ggml_kernels.h"
#include "cpu/ggml_legacy_avx2.h"
#include "cpu/lanes.h"
#include "cpu/thread_pool.h"
#include "ggml_test_support.h"
#include "test_support.h"
#include "wq/codec/ggml_blocks.h"
#include "wq/codec/ggml_kquants.h"
#include "wq/codec/ggml_legacy.h"

namespace wq {
namespace {

namespace ggml = codec::ggml;
using test::from_hex;
using test::from_hex_as;
using test::to_hex;

nlohmann::json load_vectors() {
  std::ifstream in(std::string(WQ_TEST_DATA_DIR) + "/ggml_vectors.json");
  EXPECT_TRUE(in) << "tests/data/ggml_vectors.json missing";
  return nlohmann::json::parse(in);
}

ggml::Type type_of(const nlohmann::json& c) { return static_cast<ggml::Type>(c["type_id"].get<std::uint32_t>()); }

TEST(GgmlVectors, CoverEveryQuantizedType) {
  const nlohmann::json v = load_vectors();
  std::set<std::uint32_t> seen;
  for (const auto& c : v["cases"]) seen.insert(c["type_id"].get<std::uint32_t>());
  for (ggml::Type t : ggml::kQuantizedTypes) EXPECT_TRUE(seen.count(static_cast<std::uint32_t>(t))) << ggml::type_name(t);
}

TEST(GgmlVectors, CodecWritesGgmlsBlocksAndDecodesLikeGgml) {
  const nlohmann::json v = load_vectors();
  for (const auto& c : v["cases"]) {
    SCOPED_TRACE(c["type"].get<std::string>() + "/" + c["name"].get<std::string>());
    const std::vector<float> x = from_hex_as<float>(c["input_f32_hex"]);
    std::vector<std::uint8_t> blocks;
    std::vector<float> decoded;
    test::ggml_reference(type_of(c), x, &blocks, &decoded);
    EXPECT_EQ(to_hex(blocks.data(), blocks.size()), c["blocks_hex"].get<std::string>());
    // Decoding ggml's own blocks (equal to ours when the line above passes, but checked on
    // its own so that a decoder bug is reported as one).
    const std::vector<std::uint8_t> reference = from_hex(c["blocks_hex"]);
    std::vector<float> from_reference(x.size());
    detail::decode_ggml_blocks(type_of(c), reference.data(), x.size(), from_reference.data(), nullptr);
    EXPECT_EQ(to_hex(from_reference.data(), from_reference.size() * 4), c["decoded_f32_hex"].get<std::string>());
  }
}

TEST(GgmlVectors, CpuKernelsMatchOnOneAndManyThreads) {
  const nlohmann::json v = load_vectors();
  detail::ThreadPool pool(3);
  for (const auto& c : v["cases"]) {
    SCOPED_TRACE(c["type"].get<std::string>() + "/" + c["name"].get<std::string>());
    const ggml::TypeLayout layout = ggml::layout_of(type_of(c));
    // The case's input repeated to many blocks, so that the pool splits it into several runs.
    const std::vector<float> one = from_hex_as<float>(c["input_f32_hex"]);
    const std::size_t copies = (1u << 18) / one.size() + 1;
    std::vector<float> x;
    for (std::size_t k = 0; k < copies; ++k) x.insert(x.end(), one.begin(), one.end());
    std::vector<std::uint8_t> blocks(x.size() / layout.block_elements * layout.block_bytes);
    std::vector<float> decoded(x.size());
    for (detail::ThreadPool* p : {static_cast<detail::ThreadPool*>(nullptr), &pool}) {
      std::fill(blocks.begin(), blocks.end(), 0xa5);
      detail::quantize_ggml_blocks(type_of(c), x.data(), x.size(), blocks.data(), p);
      detail::decode_ggml_blocks(type_of(c), blocks.data(), x.size(), decoded.data(), p);
      const std::string want_blocks = c["blocks_hex"];
      const std::string want_decoded = c["decoded_f32_hex"];
      const std::size_t block_bytes = want_blocks.size() / 2;
      for (std::size_t k = 0; k < copies; k += copies / 7 + 1) {
        ASSERT_EQ(to_hex(blocks.data() + k * block_bytes, block_bytes), want_blocks) << "copy " << k;
        ASSERT_EQ(to_hex(decoded.data() + k * one.size(), one.size() * 4), want_decoded) << "copy " << k;
      }
    }
  }
}

TEST(GgmlLayouts, SizesNamesAndIdsAreGgmls) {
  EXPECT_EQ(ggml::layout_of(ggml::Type::kQ4_K).block_bytes, 144u);
  EXPECT_EQ(ggml::layout_of(ggml::Type::kQ6_K).block_elements, 256u);
  EXPECT_EQ(ggml::layout_of(ggml::Type::kQ8_0).block_bytes, 34u);
  EXPECT_EQ(ggml::layout_of(ggml::Type::kBF16).block_bytes, 2u);
  EXPECT_EQ(ggml::layout_of(ggml::Type::kI64).block_bytes, 8u);
  EXPECT_FALSE(ggml::layout_of(ggml::Type::kF64).quantized);
  EXPECT_STREQ(ggml::type_name(ggml::Type::kQ5_1), "Q5_1");
  // Removed ggml ids (4, 5) and types wq does not handle are not known.
  for (std::uint32_t id : {4u, 5u, 9u, 15u, 16u, 23u, 29u, 31u, 39u, 1000u}) EXPECT_FALSE(ggml::is_known_type(id)) << id;
  for (std::uint32_t id : {0u, 1u, 2u, 3u, 6u, 7u, 8u, 10u, 11u, 12u, 13u, 14u, 24u, 25u, 26u, 27u, 28u, 30u}) {
    EXPECT_TRUE(ggml::is_known_type(id)) << id;
  }
}

// ggml_rounding.h against the x86-64 behaviour it spells out.
// Q8_0's roundf on AVX2 (host/cpu/ggml_legacy_avx2.cpp: truncation of p + (1/2 - 2^-25), signed)
// against the codec's std::round. A block whose largest magnitude is 127 has d = 1 and 1/d = 1,
// so every other element is the product p itself: here every binary32 within 64 ulps of each
// half k + 1/2 (k < 127) and of each integer, both signs, and zeros and subnormals.
TEST(GgmlRounding, Q8_0RoundfOnAvx2IsTheCodecs) {
  if (!detail::use_f16c()) GTEST_SKIP() << "no AVX2/F16C on this CPU: the codec runs instead";
  std::vector<float> values = {0.0f, -0.0f, 1e-45f, -1e-45f, 1e-38f, 0.49999997f, -0.49999997f};
  for (int k = 0; k <= 127; ++k) {
    for (const float centre : {static_cast<float>(k) + 0.5f, static_cast<float>(k)}) {
      float up = centre, down = centre;
      for (int step = 0; step < 64; ++step) {
        values.push_back(up);
        values.push_back(-up);
        values.push_back(down);
        values.push_back(-down);
        up = std::nextafter(up, 1000.0f);
        down = std::nextafter(down, -1000.0f);
      }
    }
  }
  std::vector<float> x;
  for (std::size_t i = 0; i < values.size(); i += 31) {
    x.push_back(127.0f);
    for (std::size_t j = i; j < i + 31; ++j) x.push_back(j < values.size() && std::fabs(values[j]) <= 127.0f ? values[j] : 0.0f);
  }
  std::vector<std::uint8_t> want, got(x.size() / 32 * sizeof(ggml::BlockQ8_0));
  std::vector<float> decoded;
  test::ggml_reference(ggml::Type::kQ8_0, x, &want, &decoded);
  detail::quantize_q8_0_blocks_avx2(x.data(), x.size() / 32, got.data());
  EXPECT_EQ(got, want);
  for (std::size_t b = 0; b < x.size() / 32; ++b) {
    ggml::BlockQ8_0 one;
    detail::quantize_q8_0_avx2(x.data() + 32 * b, &one);
    ASSERT_EQ(std::memcmp(&one, want.data() + b * sizeof one, sizeof one), 0) << "block " << b;
  }
}

// The eight-block Q8_0 path packs codes with signed saturation only where every amax and 1/d of
// the eight blocks is finite; a batch with one block that breaks that takes the masked path.
// Each such block is alone in its batch of normal weights here, and the bytes must be the
// one-block function's (which always masks): an infinity (1/d = 0, inf * 0 = NaN), a NaN first
// or last in its block (the integer maximum keeps either), a subnormal d with an infinite 1/d,
// and one with a finite 1/d (in a byte: the fast path).
TEST(GgmlRounding, Q8_0EightBlocksEqualOneBlockOnNonFiniteAndSubnormalBlocks) {
  if (!detail::use_f16c()) GTEST_SKIP() << "no AVX2/F16C on this CPU: the codec runs instead";
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<std::pair<int, float>> odd = {{0, inf}, {31, -inf}, {0, nan}, {31, nan}, {5, 1e-40f}, {9, 4e-37f}};
  for (const auto& [index, value] : odd) {
    SCOPED_TRACE(::testing::Message() << value << " at " << index);
    std::vector<float> x = test::random_normal(8 * 32, 21, 0.02f);
    const int block = 3;
    if (std::fabs(value) < 1e-30f) {  // a subnormal block: every element that small
      for (int i = 0; i < 32; ++i) x[32 * block + i] = value * (static_cast<float>(i % 7) - 3.0f) / 3.0f;
    }
    x[32 * block + index] = value;
    std::vector<std::uint8_t> eight(8 * sizeof(ggml::BlockQ8_0)), one(eight.size());
    detail::quantize_q8_0_blocks_avx2(x.data(), 8, eight.data());
    for (int b = 0; b < 8; ++b) {
      ggml::BlockQ8_0 y;
      detail::quantize_q8_0_avx2(x.data() + 32 * b, &y);
      std::memcpy(one.data() + b * sizeof y, &y, sizeof y);
    }
    EXPECT_EQ(eight, one);
  }
}

// The legacy types' chunk with its statistics (the backend's path on AVX2): the blocks of the
// eight-block functions, and the sums that LaneStats<8> gives over the values the codec decodes
// those blocks to, bit for bit (the backend sums other chunks that way). Normal weights of two
// scales, a block of tiny values (a subnormal or zero d), a constant block, and non-finite
// blocks. Where a function declines a chunk (Q8_0's codes out of a byte, or sums that are not
// finite, as every non-finite block's are), it must have written the blocks all the same and
// left the statistics alone. The sums are added lane by lane to what the accumulator holds.
template <typename Block>
void expect_chunk_statistics_of_decoded_blocks(void (*blocks_avx2)(const float*, std::uint64_t, std::uint8_t*),
                                               bool (*chunk_avx2)(const float*, std::uint8_t*,
                                                                  detail::WideLaneStats*)) {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  struct Case {
    float value;
    bool must_sum;
  };
  const auto same = [](double a, double b) { return a == b || (std::isnan(a) && std::isnan(b)); };
  int summed_cases = 0;
  for (const Case c : {Case{0.5f, true}, Case{4e-37f, true}, Case{1e-41f, false}, Case{0.0f, true}, Case{inf, false},
                       Case{nan, false}}) {
    SCOPED_TRACE(::testing::Message() << c.value);
    for (std::uint32_t seed = 1; seed <= 20; ++seed) {
      std::vector<float> x = test::random_normal(8 * 32, seed, seed % 2 ? 0.02f : 3.0f);
      const int block = static_cast<int>(seed % 8);
      if (std::fabs(c.value) < 1e-30f) {  // a block of tiny values, or of zeros
        for (int i = 0; i < 32; ++i) x[32 * block + i] = c.value * static_cast<float>(i % 5);
      } else {
        x[32 * block + static_cast<int>(seed % 32)] = c.value;
      }
      std::vector<std::uint8_t> want(8 * sizeof(Block)), got(want.size(), 0xa5);
      blocks_avx2(x.data(), 8, want.data());
      detail::WideLaneStats held;  // what earlier chunks left: added to, or left alone
      held.count = 12345;
      for (int l = 0; l < 8; ++l) {
        held.signal[l] = l + 0.25;
        held.error[l] = 2 * l + 0.5;
        held.max_error[l] = l == 5 ? 1e30f : 0.0f;
      }
      const detail::WideLaneStats before = held;
      const bool summed = chunk_avx2(x.data(), got.data(), &held);
      ASSERT_TRUE(summed || !c.must_sum);
      if (!std::isfinite(c.value)) {
        EXPECT_FALSE(summed) << "sums that are not finite are the caller's to check";
      }
      ASSERT_EQ(got, want);
      if (!summed) {
        EXPECT_EQ(std::memcmp(&held, &before, sizeof held), 0);
        continue;
      }
      detail::LaneStats<8> lanes;
      for (int b = 0; b < 8; ++b) {
        Block y;
        std::memcpy(&y, want.data() + b * sizeof y, sizeof y);
        float decoded[32];
        ggml::decode_block(y, decoded);
        for (int k = 0; k < 32; k += 8) {
          detail::FloatLanes<8> xv, dv;
          std::memcpy(&xv, x.data() + 32 * b + k, sizeof xv);
          std::memcpy(&dv, decoded + k, sizeof dv);
          lanes.add(xv, dv);
        }
      }
      EXPECT_EQ(held.count, 12345u + 256u);
      for (int l = 0; l < 8; ++l) {
        EXPECT_PRED2(same, held.signal[l], before.signal[l] + static_cast<double>(lanes.signal[l])) << l;
        EXPECT_PRED2(same, held.error[l], before.error[l] + static_cast<double>(lanes.error[l])) << l;
        EXPECT_PRED2(same, held.max_error[l], std::max(before.max_error[l], lanes.max_error[l])) << l;
      }
      ErrorStats expected;
      lanes.fold_into(&expected, 256);
      detail::WideLaneStats alone;
      ASSERT_TRUE(chunk_avx2(x.data(), got.data(), &alone));
      const ErrorStats fused = alone.folded();
      EXPECT_EQ(fused.count, 256u);
      EXPECT_PRED2(same, fused.signal_energy, expected.signal_energy);
      EXPECT_PRED2(same, fused.error_energy, expected.error_energy);
      EXPECT_PRED2(same, fused.max_abs_error, expected.max_abs_error);
      if (std::isfinite(c.value)) {
        EXPECT_GT(fused.error_energy, 0.0) << "a test that sums nothing cannot fail";
      }
      ++summed_cases;
    }
  }
  EXPECT_GE(summed_cases, 3 * 20);  // at least the cases that must be summed
}

TEST(GgmlRounding, LegacyChunkStatisticsAreThoseOfTheirDecodedBlocks) {
  if (!detail::use_f16c()) GTEST_SKIP() << "no AVX2/F16C on this CPU: the codec runs instead";
  const auto check = [](const char* type, auto block, auto blocks_avx2, auto chunk_avx2) {
    SCOPED_TRACE(type);
    expect_chunk_statistics_of_decoded_blocks<decltype(block)>(blocks_avx2, chunk_avx2);
  };
  check("Q8_0", ggml::BlockQ8_0{}, detail::quantize_q8_0_blocks_avx2, detail::quantize_q8_0_chunk_avx2);
  check("Q4_0", ggml::BlockQ4_0{}, detail::quantize_q4_0_blocks_avx2, detail::quantize_q4_0_chunk_avx2);
  check("Q4_1", ggml::BlockQ4_1{}, detail::quantize_q4_1_blocks_avx2, detail::quantize_q4_1_chunk_avx2);
  check("Q5_0", ggml::BlockQ5_0{}, detail::quantize_q5_0_blocks_avx2, detail::quantize_q5_0_chunk_avx2);
  check("Q5_1", ggml::BlockQ5_1{}, detail::quantize_q5_1_blocks_avx2, detail::quantize_q5_1_chunk_avx2);
}

TEST(GgmlRounding, ConversionsFollowX86) {
  EXPECT_EQ(ggml::nearest_int(2.5f), 2);  // half to even
  EXPECT_EQ(ggml::nearest_int(3.5f), 4);
  EXPECT_EQ(ggml::nearest_int(-2.5f), -2);
  EXPECT_EQ(ggml::truncate_like_x86(-0.7f), 0);
  EXPECT_EQ(ggml::truncate_like_x86(3e9f), INT32_MIN);
  EXPECT_EQ(ggml::truncate_like_x86(-3e9f), INT32_MIN);
  EXPECT_EQ(ggml::truncate_like_x86(std::numeric_limits<float>::infinity()), INT32_MIN);
  EXPECT_EQ(ggml::truncate_like_x86(std::numeric_limits<float>::quiet_NaN()), INT32_MIN);
  EXPECT_EQ(ggml::to_int8_like_x86(300.0f), 44);  // modular, as the low byte of cvttss2si
  EXPECT_EQ(ggml::round_half_away(2.5f), 3.0f);
  EXPECT_EQ(ggml::round_half_away(-2.5f), -3.0f);
}

}  // namespace
}  // namespace wq
