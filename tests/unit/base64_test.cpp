// core/base64: RFC 4648's test vectors, a round trip of every length and byte, and the texts
// the strict decoder must refuse (each one a way two texts could otherwise give one byte string).
#include "core/base64.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

namespace wq::detail {
namespace {

TEST(Base64, Rfc4648Vectors) {
  const std::pair<std::string, std::string> vectors[] = {{"", ""},         {"f", "Zg=="},         {"fo", "Zm8="},
                                                         {"foo", "Zm9v"},  {"foob", "Zm9vYg=="},   {"fooba", "Zm9vYmE="},
                                                         {"foobar", "Zm9vYmFy"}};
  for (const auto& [bytes, text] : vectors) {
    EXPECT_EQ(base64_encode(bytes), text);
    EXPECT_EQ(base64_decode(text), bytes) << text;
  }
}

TEST(Base64, EveryLengthAndByteRoundTrips) {
  std::mt19937 rng(7);
  for (std::size_t n = 0; n < 300; ++n) {
    std::string bytes(n, '\0');
    for (char& c : bytes) c = static_cast<char>(rng() & 0xff);
    if (n == 256) for (std::size_t i = 0; i < n; ++i) bytes[i] = static_cast<char>(i);  // every byte value
    const std::string text = base64_encode(bytes);
    EXPECT_EQ(text.size(), (n + 2) / 3 * 4);
    EXPECT_EQ(base64_decode(text), bytes) << n;
  }
}

TEST(Base64, RefusesAnythingButCanonicalText) {
  for (const char* text : {"Zg=", "Zg", "Z===", "====", "Zh==", "Zm9=", "Zm9v YmFy", "Zm9v\nYmFy", "Zm=v", "Zg==Zg==",
                           "Zm9-", "Zm9_", "Zm9v\xc3\xa9\x41\x41"}) {
    EXPECT_FALSE(base64_decode(text).has_value()) << text;
  }
}

}  // namespace
}  // namespace wq::detail
