// Base64 (RFC 4648 §4: the standard alphabet, '=' padding), for binary data that a JSON string
// must carry exactly: a WQ container's GGUF metadata (docs/container-format.md §2).
//
// Written here rather than taken from a library: the only packaged ones are OpenSSL's EVP
// coder (a dependency far larger than its use) and libb64 (unmaintained, and lenient on
// input that this reader must refuse).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace wq::detail {

std::string base64_encode(std::string_view bytes);

/// The bytes of canonical base64 text: length a multiple of 4, only the alphabet and at most
/// two '=' at the end, and zero bits where padding leaves some unused (so every byte string
/// has exactly one encoding). nullopt for anything else, whitespace included.
std::optional<std::string> base64_decode(std::string_view text);

}  // namespace wq::detail
