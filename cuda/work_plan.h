// Host-side planning of the CUDA backend's work: how each tensor is cut into pieces and how
// pieces are packed into slots (one device round trip each) within the slot's capacity.
// Pure C++ with no CUDA calls, so it is unit-tested on machines without a GPU.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "work_items.h"
#include "wq/quant_spec.h"

namespace wq::cuda {

/// What one slot's buffers hold at most.
struct SlotCapacity {
  std::uint64_t bytes = 0;    ///< input buffer, output buffer (each)
  std::uint64_t groups = 0;   ///< parameter entries
  std::uint64_t tiles = 0;    ///< range tiles
  std::uint64_t blocks = 0;   ///< blocks of a slot's launches together (statistics entries)
  std::uint32_t pieces = 0;   ///< piece descriptors

  /// The capacity of a slot whose input and output buffers hold `bytes` each.
  static SlotCapacity for_bytes(std::uint64_t bytes);
  /// Device bytes one slot takes (buffers and tables), for budgeting.
  std::uint64_t device_bytes() const;
};

/// How a quantized tensor's pieces are computed.
enum class PieceKind {
  kSmallGroups,  ///< single pass: groups of 8, 16, ..., 256 elements tile every row; a group's
                 ///< octets belong to adjacent lanes of a warp
  kWarpGroups,   ///< single pass: one warp per group of up to 2048 elements that tile rows
  kBlockGroups,  ///< single pass: one block per group of 2056..65536 elements that tile rows
  kGeneral,      ///< range tiles, parameters, then codes
  kHostRanges,   ///< groups larger than a slot: ranges come from a first pass (range_pass)
};

/// The quantize kernels: one launch of each per slot, their statistics stored in this order.
enum class QuantLaunch : int { kGeneral = 0, kSmallGroups, kWarpGroups, kBlockGroups };
inline constexpr int kQuantLaunches = 4;

/// The launch that computes pieces of a kind (kHostRanges pieces are general ones).
QuantLaunch launch_of(PieceKind kind);

/// Groups one block of the warp-per-group kernel handles.
inline constexpr std::uint64_t kWarpGroupsPerBlock = kBlockThreads / 32;

/// Blocks of a piece of `elements` elements in `groups` groups in its kind's launch.
std::uint64_t blocks_of(PieceKind kind, std::uint64_t elements, std::uint64_t groups);

struct ElementRange {
  std::uint64_t begin = 0, end = 0;
};

/// How a tensor of geometry `g` and `n` elements of `element_bytes` is cut: pieces that start
/// at multiples of 8, fit `capacity`, and (unless kHostRanges) hold whole groups.
struct TensorCut {
  PieceKind kind = PieceKind::kGeneral;
  std::vector<ElementRange> pieces;
};
TensorCut cut_tensor(const GroupGeometry& g, std::uint64_t n, unsigned element_bytes,
                     const SlotCapacity& capacity);

/// The tensor's group layout as the kernels see it.
GroupLayout layout_of(const GroupGeometry& g);

/// The kernels' code for a floating dtype (F32 for anything else: such jobs never reach them).
ElementType element_type(DType dtype);

/// Groups [first, last) overlapping elements [begin, end) (end > begin).
void overlapping_groups(const GroupGeometry& g, std::uint64_t begin, std::uint64_t end,
                        std::uint64_t* first, std::uint64_t* last);

/// Range tiles per group of a piece of `length` elements.
std::uint32_t tiles_per_group(const GroupGeometry& g, std::uint64_t length);

/// Bytes reserved for n bytes in a slot buffer: rounded up to 256 so every piece starts
/// aligned for 16-byte vector loads.
inline std::uint64_t aligned_size(std::uint64_t n) { return (n + 255) & ~std::uint64_t{255}; }

/// Blocks of an element-wise launch over n elements.
inline std::uint64_t blocks_for(std::uint64_t n) { return (n + kBlockElements - 1) / kBlockElements; }

/// A piece of a quantize job placed in a slot.
struct PlacedQuantPiece {
  std::size_t job = 0;
  PieceKind kind = PieceKind::kGeneral;
  QuantPiece desc;  ///< offsets relative to the slot
};

/// The content of one quantize slot: every piece in job order. Each launch has its own piece
/// table (sorted by block_begin); their statistics follow one another in the slot's array in
/// QuantLaunch order.
struct QuantSlot {
  std::vector<PlacedQuantPiece> pieces;
  std::uint64_t input_bytes = 0, code_bytes = 0, groups = 0, tiles = 0;
  std::array<std::uint64_t, kQuantLaunches> launch_blocks{};
  bool host_ranges = false;
  std::uint32_t max_tiles_per_group = 0;  ///< over the pieces that have range tiles
  std::uint32_t piece_count() const { return static_cast<std::uint32_t>(pieces.size()); }
  std::uint64_t blocks() const;
  /// Where a launch's statistics start in the slot's array.
  std::uint64_t first_block(QuantLaunch launch) const;
};

/// One tensor to place: its cut, geometry and dtype code.
struct QuantTensor {
  std::size_t job = 0;
  GroupGeometry geometry;
  ElementType type = ElementType::kF32;
  int bits = 8;
  bool f16_params = false;
  codec::RangeRule rule = codec::RangeRule::kMinMax;
  TensorCut cut;
};

/// Packs the pieces of `tensors` (in order) into slots. With `range_pass`, only range tiles
/// are planned (no codes or blocks): the first pass of kHostRanges tensors.
std::vector<QuantSlot> pack_quant_slots(const std::vector<QuantTensor>& tensors,
                                        const SlotCapacity& capacity, bool range_pass);

}  // namespace wq::cuda
