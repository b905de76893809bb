// Dense little-endian bit packing of design.md §4.
//
// Code i of a tensor occupies stream bits [i*b, i*b + b), least significant bit first; stream
// bit k is bit k % 8 of byte k / 8. Eight codes always fill exactly b bytes, so any run of
// codes that starts at a multiple of 8 starts on a byte boundary: backends split work there.
#pragma once

#include <cstdint>

#include "wq/codec/config.h"

namespace wq::codec {

/// Bytes taken by n codes of b bits: ceil(n * b / 8), exact for every n < 2^64. Computed as
/// whole octets of codes (b bytes each) plus the tail, because n * b wraps for n >= 2^61: a
/// container claiming such a shape must be refused for its missing code bytes, not pass.
WQ_HD inline std::uint64_t packed_bytes(std::uint64_t n, int bits) {
  const std::uint64_t b = static_cast<std::uint64_t>(bits);
  return n / 8u * b + ((n % 8u) * b + 7u) / 8u;
}

/// The 8*bits-bit little-endian word that 8 codes (each < 2^b) pack into: code i at bits
/// [i*b, i*b + b). Byte j of the stream is bits [8j, 8j + 8) of the word.
WQ_HD inline std::uint64_t pack8_word(const std::uint8_t* codes, int bits) {
  if (bits <= 4) {  // fits 32 bits: cheaper shifts on 32-bit machines and GPUs
    std::uint32_t word = 0;
    for (int i = 0; i < 8; ++i) word |= static_cast<std::uint32_t>(codes[i]) << (i * bits);
    return word;
  }
  std::uint64_t word = 0;
  for (int i = 0; i < 8; ++i) word |= static_cast<std::uint64_t>(codes[i]) << (i * bits);
  return word;
}

/// Packs 8 codes (each < 2^b) into exactly `bits` bytes at `out`.
WQ_HD inline void pack8(const std::uint8_t* codes, int bits, std::uint8_t* out) {
  const std::uint64_t word = pack8_word(codes, bits);
  for (int j = 0; j < bits; ++j) out[j] = static_cast<std::uint8_t>(word >> (8 * j));
}

/// Unpacks the 8 codes stored in the `bits` bytes at `in`.
WQ_HD inline void unpack8(const std::uint8_t* in, int bits, std::uint8_t* codes) {
  std::uint64_t word = 0;
  for (int j = 0; j < bits; ++j) word |= static_cast<std::uint64_t>(in[j]) << (8 * j);
  const std::uint64_t mask = (1u << bits) - 1u;
  for (int i = 0; i < 8; ++i) codes[i] = static_cast<std::uint8_t>((word >> (i * bits)) & mask);
}

/// Packs the last `count` (< 8) codes of a stream into packed_bytes(count, bits) bytes; the
/// unused high bits of the last byte are zero.
WQ_HD inline void pack_tail(const std::uint8_t* codes, int count, int bits, std::uint8_t* out) {
  std::uint8_t padded[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int i = 0; i < count; ++i) padded[i] = codes[i];
  std::uint8_t bytes[8];
  pack8(padded, bits, bytes);
  const int used = static_cast<int>(packed_bytes(static_cast<std::uint64_t>(count), bits));
  for (int j = 0; j < used; ++j) out[j] = bytes[j];
}

/// Unpacks the last `count` (< 8) codes of a stream stored in packed_bytes(count, bits) bytes.
WQ_HD inline void unpack_tail(const std::uint8_t* in, int count, int bits, std::uint8_t* codes) {
  std::uint8_t bytes[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  const int used = static_cast<int>(packed_bytes(static_cast<std::uint64_t>(count), bits));
  for (int j = 0; j < used; ++j) bytes[j] = in[j];
  std::uint8_t all[8];
  unpack8(bytes, bits, all);
  for (int i = 0; i < count; ++i) codes[i] = all[i];
}

}  // namespace wq::codec
