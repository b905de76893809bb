// Packing blocks of codes into the dense bit stream of design.md §4, and back.
#pragma once

#include <cstdint>

namespace wq::detail {

/// Packs `count` codes (the first at a stream position that is a multiple of 8) into `out`.
void pack_block(const std::uint8_t* codes, std::uint64_t count, int bits, std::uint8_t* out);

/// Unpacks `count` codes from `in` (starting at a multiple of 8 codes).
void unpack_block(const std::uint8_t* in, std::uint64_t count, int bits, std::uint8_t* codes);

}  // namespace wq::detail
