// The ggml block types that GGUF files hold: their type ids, their block layouts (defined once
// here, with size asserts) and their sizes. docs/ggml-types.md has the layouts in words and
// the sources they were read from.
//
// A block is a fixed run of elements along a row (ggml's ne[0]) stored in a fixed number of
// bytes; blocks never cross a row. Every half-precision field is an IEEE binary16 bit pattern,
// little-endian like the rest of the block. The structs have no padding and are 2-byte
// aligned: GGUF data is 32-byte aligned and every block size is even, so a pointer to the
// k-th block of a tensor's data is always suitably aligned.
#pragma once

#include <cstdint>

#include "wq/codec/config.h"

namespace wq::codec::ggml {

/// ggml's `enum ggml_type` values for the types wq reads and writes. The ids are part of the
/// GGUF format and never change; ids missing here are other ggml types (I-quants, ternary and
/// FP4 types, ...) that wq does not handle.
enum class Type : std::uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kI8 = 24,  // plain integers and F64: raw tensors (a step counter, an index table)
  kI16 = 25,
  kI32 = 26,
  kI64 = 27,
  kF64 = 28,
  kBF16 = 30,
};

inline constexpr int kLegacyBlock = 32;  // QK4_0 = QK4_1 = QK5_0 = QK5_1 = QK8_0
inline constexpr int kSuperBlock = 256;  // QK_K, the k-quants' super-block
inline constexpr int kKScaleBytes = 12;  // K_SCALE_SIZE: eight 6-bit scales and eight 6-bit mins

/// Q4_0: x = (q - 8) * d; byte j holds element j (low nibble) and element j + 16 (high).
struct BlockQ4_0 {
  static constexpr int kElements = kLegacyBlock;
  std::uint16_t d;
  std::uint8_t qs[kLegacyBlock / 2];
};

/// Q4_1: x = q * d + m; nibbles as Q4_0.
struct BlockQ4_1 {
  static constexpr int kElements = kLegacyBlock;
  std::uint16_t d;
  std::uint16_t m;
  std::uint8_t qs[kLegacyBlock / 2];
};

/// Q5_0: x = (q - 16) * d; low nibbles as Q4_0, bit 4 of element j is bit j of qh (read as a
/// little-endian u32).
struct BlockQ5_0 {
  static constexpr int kElements = kLegacyBlock;
  std::uint16_t d;
  std::uint8_t qh[4];
  std::uint8_t qs[kLegacyBlock / 2];
};

/// Q5_1: x = q * d + m; bits as Q5_0.
struct BlockQ5_1 {
  static constexpr int kElements = kLegacyBlock;
  std::uint16_t d;
  std::uint16_t m;
  std::uint8_t qh[4];
  std::uint8_t qs[kLegacyBlock / 2];
};

/// Q8_0: x = q * d, q a signed byte.
struct BlockQ8_0 {
  static constexpr int kElements = kLegacyBlock;
  std::uint16_t d;
  std::int8_t qs[kLegacyBlock];
};

/// Q2_K: 16 sub-blocks of 16; scales[j] = 4-bit scale | 4-bit min << 4;
/// x = d * (scales[j] & 15) * q - dmin * (scales[j] >> 4), q in 0..3.
struct BlockQ2_K {
  static constexpr int kElements = kSuperBlock;
  std::uint8_t scales[kSuperBlock / 16];
  std::uint8_t qs[kSuperBlock / 4];
  std::uint16_t d;
  std::uint16_t dmin;
};

/// Q3_K: 16 sub-blocks of 16; codes 0..7 (low 2 bits in qs, bit 2 in hmask); 6-bit scales
/// stored + 32; x = d * (sc - 32) * (q - 4).
struct BlockQ3_K {
  static constexpr int kElements = kSuperBlock;
  std::uint8_t hmask[kSuperBlock / 8];
  std::uint8_t qs[kSuperBlock / 4];
  std::uint8_t scales[kKScaleBytes];
  std::uint16_t d;
};

/// Q4_K: 8 sub-blocks of 32; 6-bit scale and min each; x = d * sc * q - dmin * m, q in 0..15.
struct BlockQ4_K {
  static constexpr int kElements = kSuperBlock;
  std::uint16_t d;
  std::uint16_t dmin;
  std::uint8_t scales[kKScaleBytes];
  std::uint8_t qs[kSuperBlock / 2];
};

/// Q5_K: Q4_K with a fifth bit per code in qh.
struct BlockQ5_K {
  static constexpr int kElements = kSuperBlock;
  std::uint16_t d;
  std::uint16_t dmin;
  std::uint8_t scales[kKScaleBytes];
  std::uint8_t qh[kSuperBlock / 8];
  std::uint8_t qs[kSuperBlock / 2];
};

/// Q6_K: 16 sub-blocks of 16; signed 8-bit scales; x = d * sc * (q - 32), q in 0..63.
struct BlockQ6_K {
  static constexpr int kElements = kSuperBlock;
  std::uint8_t ql[kSuperBlock / 2];
  std::uint8_t qh[kSuperBlock / 4];
  std::int8_t scales[kSuperBlock / 16];
  std::uint16_t d;
};

// The sizes are the format (ggml-common.h asserts the same numbers).
static_assert(sizeof(BlockQ4_0) == 18);
static_assert(sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ5_0) == 22);
static_assert(sizeof(BlockQ5_1) == 24);
static_assert(sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ2_K) == 84);
static_assert(sizeof(BlockQ3_K) == 110);
static_assert(sizeof(BlockQ4_K) == 144);
static_assert(sizeof(BlockQ5_K) == 176);
static_assert(sizeof(BlockQ6_K) == 210);

/// What a type's data looks like: `block_elements` values stored in `block_bytes` bytes.
struct TypeLayout {
  std::uint32_t block_elements = 0;  // 0: not a type wq handles
  std::uint32_t block_bytes = 0;
  bool quantized = false;  // a block type rather than a plain float
};

WQ_HD constexpr TypeLayout layout_of(Type type) {
  switch (type) {
    case Type::kF32: return {1, 4, false};
    case Type::kF16: return {1, 2, false};
    case Type::kBF16: return {1, 2, false};
    case Type::kI8: return {1, 1, false};
    case Type::kI16: return {1, 2, false};
    case Type::kI32: return {1, 4, false};
    case Type::kI64: return {1, 8, false};
    case Type::kF64: return {1, 8, false};
    case Type::kQ4_0: return {kLegacyBlock, sizeof(BlockQ4_0), true};
    case Type::kQ4_1: return {kLegacyBlock, sizeof(BlockQ4_1), true};
    case Type::kQ5_0: return {kLegacyBlock, sizeof(BlockQ5_0), true};
    case Type::kQ5_1: return {kLegacyBlock, sizeof(BlockQ5_1), true};
    case Type::kQ8_0: return {kLegacyBlock, sizeof(BlockQ8_0), true};
    case Type::kQ2_K: return {kSuperBlock, sizeof(BlockQ2_K), true};
    case Type::kQ3_K: return {kSuperBlock, sizeof(BlockQ3_K), true};
    case Type::kQ4_K: return {kSuperBlock, sizeof(BlockQ4_K), true};
    case Type::kQ5_K: return {kSuperBlock, sizeof(BlockQ5_K), true};
    case Type::kQ6_K: return {kSuperBlock, sizeof(BlockQ6_K), true};
  }
  return {};
}

/// True for the ids above; GGUF readers check a file's type ids with it.
WQ_HD constexpr bool is_known_type(std::uint32_t id) {
  return layout_of(static_cast<Type>(id)).block_elements != 0;
}

/// Every quantized type, in type-id order (tests and the CLI's --help iterate over it).
inline constexpr Type kQuantizedTypes[] = {Type::kQ4_0, Type::kQ4_1, Type::kQ5_0, Type::kQ5_1,
                                           Type::kQ8_0, Type::kQ2_K, Type::kQ3_K, Type::kQ4_K,
                                           Type::kQ5_K, Type::kQ6_K};

/// Calls `f(Block{})` with the block struct of a quantized type (so that code templated on the
/// block runs for `type`) and returns true; returns false, calling nothing, for the plain types.
template <typename Visitor>
bool visit_block_type(Type type, const Visitor& f) {
  switch (type) {
    case Type::kQ4_0: f(BlockQ4_0{}); return true;
    case Type::kQ4_1: f(BlockQ4_1{}); return true;
    case Type::kQ5_0: f(BlockQ5_0{}); return true;
    case Type::kQ5_1: f(BlockQ5_1{}); return true;
    case Type::kQ8_0: f(BlockQ8_0{}); return true;
    case Type::kQ2_K: f(BlockQ2_K{}); return true;
    case Type::kQ3_K: f(BlockQ3_K{}); return true;
    case Type::kQ4_K: f(BlockQ4_K{}); return true;
    case Type::kQ5_K: f(BlockQ5_K{}); return true;
    case Type::kQ6_K: f(BlockQ6_K{}); return true;
    default: return false;
  }
}

/// ggml's name of a type ("Q4_K", "F16", ...), or "" for an id wq does not handle.
constexpr const char* type_name(Type type) {
  switch (type) {
    case Type::kF32: return "F32";
    case Type::kF16: return "F16";
    case Type::kBF16: return "BF16";
    case Type::kI8: return "I8";
    case Type::kI16: return "I16";
    case Type::kI32: return "I32";
    case Type::kI64: return "I64";
    case Type::kF64: return "F64";
    case Type::kQ4_0: return "Q4_0";
    case Type::kQ4_1: return "Q4_1";
    case Type::kQ5_0: return "Q5_0";
    case Type::kQ5_1: return "Q5_1";
    case Type::kQ8_0: return "Q8_0";
    case Type::kQ2_K: return "Q2_K";
    case Type::kQ3_K: return "Q3_K";
    case Type::kQ4_K: return "Q4_K";
    case Type::kQ5_K: return "Q5_K";
    case Type::kQ6_K: return "Q6_K";
  }
  return "";
}

}  // namespace wq::codec::ggml
