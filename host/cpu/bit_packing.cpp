#include "cpu/bit_packing.h"

#include <cstring>

#include "wq/codec/pack.h"

namespace wq::detail {
namespace {

// Widths that divide 8 pack whole codes per byte: the same bit layout as pack8 (code i at
// stream bits [i*B, i*B+B), LSB first), written as a loop the compiler vectorises; 8 bits is
// a copy. The tests check every width against the bit-level definition.
template <int B>
void pack_block_t(const std::uint8_t* codes, std::uint64_t count, std::uint8_t* out) {
  const std::uint64_t full = count / 8;
  if constexpr (B == 8) {
    std::memcpy(out, codes, full * 8);
  } else if constexpr (8 % B == 0) {
    constexpr int kPerByte = 8 / B;
    for (std::uint64_t k = 0; k < full * B; ++k) {
      std::uint8_t byte = 0;
      for (int t = 0; t < kPerByte; ++t) byte |= static_cast<std::uint8_t>(codes[k * kPerByte + t] << (t * B));
      out[k] = byte;
    }
  } else {
    for (std::uint64_t k = 0; k < full; ++k) codec::pack8(codes + 8 * k, B, out + k * B);
  }
  const int tail = static_cast<int>(count % 8);
  if (tail != 0) codec::pack_tail(codes + 8 * full, tail, B, out + full * B);
}

template <int B>
void unpack_block_t(const std::uint8_t* in, std::uint64_t count, std::uint8_t* codes) {
  const std::uint64_t full = count / 8;
  if constexpr (B == 8) {
    std::memcpy(codes, in, full * 8);
  } else if constexpr (8 % B == 0) {
    constexpr int kPerByte = 8 / B;
    constexpr unsigned kMask = (1u << B) - 1u;
    for (std::uint64_t k = 0; k < full * B; ++k) {
      for (int t = 0; t < kPerByte; ++t) codes[k * kPerByte + t] = static_cast<std::uint8_t>((in[k] >> (t * B)) & kMask);
    }
  } else {
    for (std::uint64_t k = 0; k < full; ++k) codec::unpack8(in + k * B, B, codes + 8 * k);
  }
  const int tail = static_cast<int>(count % 8);
  if (tail != 0) codec::unpack_tail(in + full * B, tail, B, codes + 8 * full);
}

template <template <int> class Op, typename... Args>
void with_width(int bits, Args... args) {
  switch (bits) {
    case 1: return Op<1>::run(args...);
    case 2: return Op<2>::run(args...);
    case 3: return Op<3>::run(args...);
    case 4: return Op<4>::run(args...);
    case 5: return Op<5>::run(args...);
    case 6: return Op<6>::run(args...);
    case 7: return Op<7>::run(args...);
    default: return Op<8>::run(args...);
  }
}

template <int B>
struct PackOp {
  static void run(const std::uint8_t* codes, std::uint64_t count, std::uint8_t* out) {
    pack_block_t<B>(codes, count, out);
  }
};

template <int B>
struct UnpackOp {
  static void run(const std::uint8_t* in, std::uint64_t count, std::uint8_t* codes) {
    unpack_block_t<B>(in, count, codes);
  }
};

}  // namespace

void pack_block(const std::uint8_t* codes, std::uint64_t count, int bits, std::uint8_t* out) {
  with_width<PackOp>(bits, codes, count, out);
}

void unpack_block(const std::uint8_t* in, std::uint64_t count, int bits, std::uint8_t* codes) {
  with_width<UnpackOp>(bits, in, count, codes);
}

}  // namespace wq::detail
