// core/utf8.h and core/json_text.h: what counts as UTF-8 (tensor names, rule patterns, file names going into JSON),
// checked against the byte sequences of RFC 3629 (each list also checked with Python's bytes.decode).
#include <string>

#include <gtest/gtest.h>

#include "core/json_text.h"
#include "core/utf8.h"

namespace wq::detail {
namespace {

TEST(Utf8, WellFormedSequencesOfEveryLength) {
  EXPECT_TRUE(is_valid_utf8(""));
  EXPECT_TRUE(is_valid_utf8("layers.0.weight"));
  EXPECT_TRUE(is_valid_utf8("caf\xc3\xa9"));              // U+00E9
  EXPECT_TRUE(is_valid_utf8("\xe2\x82\xac"));             // U+20AC
  EXPECT_TRUE(is_valid_utf8("\xed\x9f\xbf"));             // U+D7FF, the last before the surrogates
  EXPECT_TRUE(is_valid_utf8("\xee\x80\x80"));             // U+E000, the first after them
  EXPECT_TRUE(is_valid_utf8("\xf0\x9f\x98\x80"));         // U+1F600
  EXPECT_TRUE(is_valid_utf8("\xf4\x8f\xbf\xbf"));         // U+10FFFF, the last code point
  EXPECT_TRUE(is_valid_utf8(std::string("a\0b", 3)));    // NUL is a character (JSON escapes it)
}

TEST(Utf8, IllFormedSequencesAreRefused) {
  for (const char* bad : {
           "\x80",              // a lone continuation byte
           "\xc3",              // a lead byte without its tail
           "\xe2\x82",          // a three-byte sequence cut short
           "\xc0\xaf",          // overlong '/'
           "\xc1\xbf",          // overlong U+007F
           "\xe0\x80\xaf",      // overlong, three bytes
           "\xf0\x80\x80\xaf",  // overlong, four bytes
           "\xed\xa0\x80",      // U+D800, a surrogate (what Python's "surrogatepass" would write)
           "\xed\xbf\xbf",      // U+DFFF
           "\xf4\x90\x80\x80",  // U+110000, beyond Unicode
           "\xf5\x80\x80\x80",  // a lead byte no sequence starts with
           "\xff",              // nor this one
           "caf\xe9",           // Latin-1
       }) {
    EXPECT_FALSE(is_valid_utf8(bad)) << printable_utf8(bad);
  }
}

TEST(Utf8, JsonTextAndPrintableFormsKeepTheValidParts) {
  using nlohmann::ordered_json;
  EXPECT_EQ(json_text(ordered_json("caf\xe9.safetensors")), "\"caf\xef\xbf\xbd.safetensors\"");
  EXPECT_EQ(json_text(ordered_json("\xc3\xa9\xff\xc3\xa9")), "\"\xc3\xa9\xef\xbf\xbd\xc3\xa9\"");
  EXPECT_EQ(json_text(ordered_json("plain")), "\"plain\"");
  EXPECT_TRUE(is_valid_utf8(json_text(ordered_json("\xed\xa0\x80\xf4\x90\x80\x80\x80"))));
  EXPECT_EQ(printable_utf8("caf\xe9"), "caf\\xe9");
  EXPECT_EQ(printable_utf8("\xc3\xa9"), "\xc3\xa9");
}

}  // namespace
}  // namespace wq::detail
