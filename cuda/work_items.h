// The work descriptors the CUDA backend's planner (host) hands to its kernels (device).
//
// A "slot" is one round trip through the device: a set of pieces whose inputs were copied
// into one device buffer. A piece is a run of elements [elem_begin, elem_end) of one tensor,
// elem_begin a multiple of 8 so that its codes start on a byte boundary and no two pieces
// write the same byte. Plain structs: identical layout on host and device.
#pragma once

#include <cstdint>

namespace wq::cuda {

/// Elements one warp reduces in the range kernel.
inline constexpr std::uint64_t kRangeTile = 8192;
/// Threads per block of the element-wise kernels. A thread owns runs of 8 elements (octets):
/// kOctetsPerThread of them, kBlockThreads octets apart so that a warp's loads stay coalesced;
/// more than one per thread spreads each block's fixed costs (finding its piece, reducing
/// its statistics) over more elements.
inline constexpr unsigned kBlockThreads = 256;
inline constexpr unsigned kOctetsPerThread = 4;
/// Elements one block of an element-wise kernel covers.
inline constexpr std::uint64_t kBlockElements = 8ull * kBlockThreads * kOctetsPerThread;
/// Longest groups (in octets) the one-warp-per-group and one-block-per-group kernels take.
/// Both read a group once for its range and again (from L1/L2) for its codes, so the limit is
/// not registers: a warp takes up to 8 octets per lane, a block up to 65536 elements (rows of
/// the widest LLM matrices, e.g. 28672 columns, per channel); longer groups take the general
/// two-pass schedule.
inline constexpr std::uint64_t kMaxWarpGroupOctets = 8ull * 32;
inline constexpr std::uint64_t kMaxBlockGroupOctets = 65536 / 8;

/// Bits of a piece's status word, set by the kernels; the host turns any of them into the
/// error the CPU backend reports for the same tensor.
enum StatusBits : std::uint32_t {
  kStatusNonFinite = 1u,      ///< a NaN or infinite element (or range)
  kStatusRangeOverflow = 2u,  ///< hi - lo overflows binary32
  kStatusF16Overflow = 4u,    ///< a scale or min has no finite binary16
  kStatusCastOverflow = 8u,   ///< a cast produced a non-finite value
};

/// Tensor dtype codes as the kernels see them (wq::DType values are not relied on).
enum class ElementType : std::int32_t { kF32 = 0, kF64 = 1, kF16 = 2, kBF16 = 3 };

/// Group layout of a tensor (design.md §3), as in wq::GroupGeometry.
struct GroupLayout {
  std::uint64_t cols = 1;
  std::uint64_t group_size = 1;
  std::uint64_t groups_per_row = 1;
};

/// One piece of an affine quantization.
struct QuantPiece {
  GroupLayout layout;
  std::uint64_t elem_begin = 0, elem_end = 0;      ///< elements of the tensor
  std::uint64_t first_group = 0, last_group = 0;   ///< groups overlapping the piece, [first, last)
  std::uint64_t src_offset = 0;    ///< byte offset of element elem_begin in the input buffer
  std::uint64_t code_offset = 0;   ///< byte offset of the piece's codes in the code buffer
  std::uint64_t param_index = 0;   ///< slot-wide index of group first_group's parameters
  std::uint64_t tile_begin = 0;    ///< slot-wide index of the piece's first range tile
  std::uint64_t block_begin = 0;   ///< first block of the piece in its element-wise launch
  std::uint32_t tiles_per_group = 1;  ///< range tiles per group (>= 1)
  std::int32_t host_ranges = 0;  ///< 1: the host wrote the groups' ranges into the tiles
  ElementType type = ElementType::kF32;
  std::int32_t bits = 8;
  std::int32_t f16_params = 0;
  std::int32_t rule = 0;          ///< codec::RangeRule of the tensor's method
  std::uint32_t piece_index = 0;  ///< index into the slot's status and per-piece arrays
};

/// One piece of a dequantization: codes and the stored parameters of the groups it overlaps.
struct DequantPiece {
  GroupLayout layout;
  std::uint64_t elem_begin = 0, elem_end = 0;
  std::uint64_t first_group = 0;
  std::uint64_t code_offset = 0;   ///< byte offset of the piece's codes in the input buffer
  std::uint64_t scale_offset = 0;  ///< byte offset of group first_group's scale
  std::uint64_t min_offset = 0;    ///< byte offset of group first_group's min
  std::uint64_t dst_offset = 0;    ///< byte offset of element elem_begin in the output buffer
  std::uint64_t block_begin = 0;
  ElementType type = ElementType::kF32;  ///< output dtype
  std::int32_t bits = 8;
  std::int32_t f16_params = 0;
  std::int32_t symmetric = 0;  ///< no stored mins: each is codec::symmetric_min(scale)
  std::uint32_t piece_index = 0;
};

/// One piece of a floating-point cast.
struct CastPiece {
  std::uint64_t count = 0;         ///< elements
  std::uint64_t src_offset = 0, dst_offset = 0;
  std::uint64_t block_begin = 0;
  ElementType from = ElementType::kF32, to = ElementType::kF16;
  std::uint32_t piece_index = 0;
};

/// Error statistics of one block, summed by the host per piece in block order (reproducible).
struct BlockStats {
  double signal = 0.0;
  double error = 0.0;
  double max_abs = 0.0;
};

}  // namespace wq::cuda
