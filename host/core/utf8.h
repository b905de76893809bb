// UTF-8 validity, for text from files that ends up in JSON (tensor names, rule patterns, file
// names: a POSIX file name is any bytes but '/' and NUL).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace wq::detail {

/// Length of the well-formed UTF-8 sequence at the start of `s` (RFC 3629, Unicode table 3-7:
/// no overlong forms, no surrogates, nothing above U+10FFFF), or 0 when there is none.
inline std::size_t utf8_sequence_length(std::string_view s) {
  if (s.empty()) return 0;
  const auto b = [&](std::size_t i) { return i < s.size() ? static_cast<std::uint8_t>(s[i]) : 0u; };
  const auto tail = [&](std::size_t i) { return (b(i) & 0xc0u) == 0x80u; };
  const unsigned c = b(0);
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) return tail(1) ? 2 : 0;
  if (c >= 0xe0 && c <= 0xef) {
    const unsigned lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;  // overlong, surrogates
    return b(1) >= lo && b(1) <= hi && tail(2) ? 3 : 0;
  }
  if (c >= 0xf0 && c <= 0xf4) {
    const unsigned lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;  // overlong, > U+10FFFF
    return b(1) >= lo && b(1) <= hi && tail(2) && tail(3) ? 4 : 0;
  }
  return 0;
}

/// Whether all of `s` is well-formed UTF-8 (what JSON output accepts).
inline bool is_valid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = utf8_sequence_length(s.substr(i));
    if (n == 0) return false;
    i += n;
  }
  return true;
}

/// `s` with every byte that is not part of well-formed UTF-8 written as \xNN, for messages.
inline std::string printable_utf8(std::string_view s) {
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = utf8_sequence_length(s.substr(i));
    if (n == 0) {
      const auto c = static_cast<std::uint8_t>(s[i++]);
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out.append(s.substr(i, n));
      i += n;
    }
  }
  return out;
}

}  // namespace wq::detail
