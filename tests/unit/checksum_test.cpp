// The container's streaming XXH3-64 checksums (container/checksum.h) equal the one-shot
// reference XXH3_64bits() for every length class of the algorithm and however the data is
// split into updates (the writer hashes each tensor's parts as they are appended).
#include <gtest/gtest.h>

#include <random>
#include <vector>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "container/checksum.h"

namespace wq {
namespace {

TEST(Checksum, EqualsTheReferenceXxh3ForEveryLengthAndSplit) {
  std::mt19937 rng(3);
  std::vector<unsigned char> data((1u << 20) + 3);
  for (unsigned char& b : data) b = static_cast<unsigned char>(rng());
  // Lengths across XXH3's paths: short (0-16, 17-128, 129-240 bytes), one stripe, one block
  // (1 KiB), many blocks, and not a multiple of anything.
  const std::size_t lengths[] = {0, 1, 3, 16, 17, 128, 129, 240, 241, 1023, 1024, 1025, 4099, 65536, data.size()};
  for (std::size_t n : lengths) {
    for (std::size_t pieces : {1, 2, 7}) {
      detail::Xxh3 h;
      std::size_t done = 0;
      for (std::size_t k = 0; k < pieces; ++k) {
        const std::size_t take = k + 1 == pieces ? n - done : (n - done) / (pieces - k) + k % 3;
        const std::size_t part = std::min(take, n - done);
        h.update(data.data() + done, part);
        done += part;
      }
      ASSERT_EQ(h.digest(), XXH3_64bits(data.data(), n)) << "length " << n << " in " << pieces << " updates";
    }
  }
  detail::Xxh3 empty;
  EXPECT_EQ(empty.hex(), "2d06800538d394c2");  // XXH3-64 of nothing, from the reference
}

}  // namespace
}  // namespace wq
