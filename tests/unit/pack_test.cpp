// Bit packing (design.md §4): hand-computed vectors and round trips at every width.
#include <gtest/gtest.h>

#include <random>

#include "test_support.h"
#include "wq/codec/pack.h"

namespace wq {
namespace {

TEST(Pack, HandComputedVectors) {
  // 3 bits: codes 5,1,7,2,0,6,3,4 give the stream (LSB first, 3 bits per code)
  //   101 100 111 010 000 011 110 001
  // byte 0 = stream bits 0-7  = 1,0,1,1,0,0,1,1 -> 0xcd
  // byte 1 = stream bits 8-15 = 1,0,1,0,0,0,0,0 -> 0x05
  // byte 2 = stream bits16-23 = 1,1,1,1,0,0,0,1 -> 0x8f
  const std::uint8_t codes3[8] = {5, 1, 7, 2, 0, 6, 3, 4};
  std::uint8_t out[8] = {};
  codec::pack8(codes3, 3, out);
  EXPECT_EQ(test::to_hex(out, 3), "cd058f");
  // Plain literals, computed by hand:
  const std::uint8_t ones[8] = {1, 0, 1, 1, 0, 0, 0, 1};
  codec::pack8(ones, 1, out);
  EXPECT_EQ(out[0], 0x8d);  // bits 0,2,3,7
  const std::uint8_t nibbles[8] = {0x1, 0x2, 0x3, 0x4, 0x5, 0x6, 0x7, 0xf};
  codec::pack8(nibbles, 4, out);
  EXPECT_EQ(test::to_hex(out, 4), "214365f7");
  const std::uint8_t twos[8] = {3, 0, 1, 2, 2, 1, 0, 3};
  codec::pack8(twos, 2, out);
  EXPECT_EQ(test::to_hex(out, 2), "93c6");  // 11 00 01 10 -> 0b10010011; 10 01 00 11 -> 0b11000110
  const std::uint8_t sevens[8] = {127, 0, 0, 0, 0, 0, 0, 1};
  codec::pack8(sevens, 7, out);
  EXPECT_EQ(test::to_hex(out, 7), "7f000000000002");  // code 7 starts at bit 49 = byte 6 bit 1
}

TEST(Pack, TailLeavesUnusedBitsZero) {
  const std::uint8_t codes[3] = {7, 7, 7};
  std::uint8_t out[3] = {0xaa, 0xaa, 0xaa};
  codec::pack_tail(codes, 3, 3, out);  // 9 bits -> 2 bytes
  EXPECT_EQ(out[0], 0xff);
  EXPECT_EQ(out[1], 0x01);
  EXPECT_EQ(out[2], 0xaa);  // untouched
  EXPECT_EQ(codec::packed_bytes(3, 3), 2u);
}

TEST(Pack, RoundTripEveryWidthAndLength) {
  std::mt19937 rng(3);
  for (int bits = 1; bits <= 8; ++bits) {
    for (int count : {1, 7, 8, 9, 1023}) {
      std::vector<std::uint8_t> codes(count);
      for (auto& c : codes) c = static_cast<std::uint8_t>(rng() & ((1u << bits) - 1));
      std::vector<std::uint8_t> packed(codec::packed_bytes(count, bits) + 1, 0xee);
      int i = 0;
      for (; i + 8 <= count; i += 8) codec::pack8(&codes[i], bits, &packed[i / 8 * bits]);
      if (i < count) codec::pack_tail(&codes[i], count - i, bits, &packed[i / 8 * bits]);
      EXPECT_EQ(packed.back(), 0xee) << "wrote past ceil(n*b/8)";
      std::vector<std::uint8_t> back(count + 8);
      for (i = 0; i + 8 <= count; i += 8) codec::unpack8(&packed[i / 8 * bits], bits, &back[i]);
      if (i < count) codec::unpack_tail(&packed[i / 8 * bits], count - i, bits, &back[i]);
      back.resize(count);
      EXPECT_EQ(back, codes) << "bits " << bits << " count " << count;
      // Bit-level definition: code i occupies stream bits [i*b, i*b+b), LSB first.
      for (int k = 0; k < count; ++k) {
        for (int j = 0; j < bits; ++j) {
          const int bit = k * bits + j;
          ASSERT_EQ((packed[bit / 8] >> (bit % 8)) & 1, (codes[k] >> j) & 1);
        }
      }
    }
  }
}

// ceil(n * b / 8) for every n < 2^64: n * b wraps from n = 2^61 on, and a container whose
// shape claimed such a count passed verification with no code bytes at all.
TEST(Pack, PackedBytesIsExactForEveryCountUpTo2To64) {
  __extension__ typedef unsigned __int128 Wide;  // an independent reference: no wrap at all
  const auto exact = [](std::uint64_t n, int bits) {
    const Wide total = static_cast<Wide>(n) * static_cast<unsigned>(bits) + 7;
    return static_cast<std::uint64_t>(total / 8);
  };
  std::mt19937_64 rng(13);
  std::vector<std::uint64_t> counts = {0, 1, 7, 8, 9, 1023, (1ull << 20) + 3, 1ull << 61, (1ull << 61) + 1,
                                       (1ull << 62) + 5, UINT64_MAX - 7, UINT64_MAX};
  for (int i = 0; i < 1000; ++i) counts.push_back(rng() >> (rng() % 64));
  for (const std::uint64_t n : counts) {
    for (int bits = 1; bits <= 8; ++bits) ASSERT_EQ(codec::packed_bytes(n, bits), exact(n, bits)) << n << " x " << bits;
  }
  EXPECT_EQ(codec::packed_bytes(1ull << 61, 8), 1ull << 61);  // (2^61 * 8 + 7) / 8 was 0
}

}  // namespace
}  // namespace wq
