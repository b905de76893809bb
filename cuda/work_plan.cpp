#include "work_plan.h"

#include <algorithm>

#include "wq/codec/pack.h"
#include "wq/error.h"

namespace wq::cuda {
namespace {

std::uint64_t group_start(const GroupGeometry& g, std::uint64_t k) {
  return (k / g.groups_per_row) * g.cols + (k % g.groups_per_row) * g.group_size;
}

std::uint64_t group_of(const GroupGeometry& g, std::uint64_t e) {
  const std::uint64_t row = e / g.cols;
  return row * g.groups_per_row + (e - row * g.cols) / g.group_size;
}

// Groups made of whole octets that tile every row: each group starts at a multiple of 8.
bool groups_tile_rows(const GroupGeometry& g) {
  return g.group_size % 8 == 0 && g.cols % g.group_size == 0;
}

PieceKind kind_of_layout(const GroupGeometry& g) {
  if (!groups_tile_rows(g)) return PieceKind::kGeneral;
  const std::uint64_t w = g.group_size / 8;
  if (w <= 32 && (w & (w - 1)) == 0) return PieceKind::kSmallGroups;
  if (w <= kMaxWarpGroupOctets) return PieceKind::kWarpGroups;
  if (w <= kMaxBlockGroupOctets) return PieceKind::kBlockGroups;
  return PieceKind::kGeneral;
}

// Pieces of at most max_elems elements that end at multiples of 8 (or at n), ignoring groups.
std::vector<ElementRange> cut_anywhere(const GroupGeometry& g, std::uint64_t n,
                                       std::uint64_t max_elems, std::uint64_t max_groups) {
  std::vector<ElementRange> pieces;
  for (std::uint64_t begin = 0; begin < n;) {
    std::uint64_t end = std::min(n, begin + max_elems);
    // Few groups overlap a piece of a tensor with huge groups, but stay within the tables.
    for (;;) {
      std::uint64_t first, last;
      overlapping_groups(g, begin, end, &first, &last);
      if (last - first <= max_groups || end - begin <= 8) break;
      end = begin + std::max<std::uint64_t>(8, (end - begin) / 2 / 8 * 8);
    }
    pieces.push_back({begin, end});
    begin = end;
  }
  return pieces;
}

}  // namespace

SlotCapacity SlotCapacity::for_bytes(std::uint64_t bytes) {
  SlotCapacity c;
  c.bytes = bytes;
  c.groups = std::max<std::uint64_t>(bytes / 16, 64);
  c.pieces = 4096;
  const std::uint64_t max_elements = bytes / 2;  // F16 inputs have the most elements per byte
  c.tiles = c.groups + max_elements / kRangeTile + 2 * std::uint64_t{c.pieces};
  // Eight groups of >= 16 elements per block (the warp-per-group kernel) is the most blocks
  // per element of any launch.
  c.blocks = max_elements / 128 + 2 * std::uint64_t{c.pieces};
  return c;
}

std::uint64_t SlotCapacity::device_bytes() const {
  return 2 * bytes + groups * 16 + tiles * 8 + blocks * sizeof(BlockStats) +
         std::uint64_t{pieces} * (sizeof(QuantPiece) + 4);
}

std::uint64_t blocks_of(PieceKind kind, std::uint64_t elements, std::uint64_t groups) {
  switch (kind) {
    case PieceKind::kBlockGroups: return groups;
    case PieceKind::kWarpGroups: return (groups + kWarpGroupsPerBlock - 1) / kWarpGroupsPerBlock;
    default: return blocks_for(elements);
  }
}

QuantLaunch launch_of(PieceKind kind) {
  switch (kind) {
    case PieceKind::kSmallGroups: return QuantLaunch::kSmallGroups;
    case PieceKind::kWarpGroups: return QuantLaunch::kWarpGroups;
    case PieceKind::kBlockGroups: return QuantLaunch::kBlockGroups;
    default: return QuantLaunch::kGeneral;
  }
}

std::uint64_t QuantSlot::blocks() const {
  std::uint64_t total = 0;
  for (std::uint64_t b : launch_blocks) total += b;
  return total;
}

std::uint64_t QuantSlot::first_block(QuantLaunch launch) const {
  std::uint64_t first = 0;
  for (int l = 0; l < static_cast<int>(launch); ++l) first += launch_blocks[l];
  return first;
}

ElementType element_type(DType dtype) {
  switch (dtype) {
    case DType::kF64: return ElementType::kF64;
    case DType::kF16: return ElementType::kF16;
    case DType::kBF16: return ElementType::kBF16;
    default: return ElementType::kF32;
  }
}

GroupLayout layout_of(const GroupGeometry& g) {
  return {g.cols, g.group_size, g.groups_per_row};
}

void overlapping_groups(const GroupGeometry& g, std::uint64_t begin, std::uint64_t end,
                        std::uint64_t* first, std::uint64_t* last) {
  *first = group_of(g, begin);
  *last = group_of(g, end - 1) + 1;
}

std::uint32_t tiles_per_group(const GroupGeometry& g, std::uint64_t length) {
  const std::uint64_t longest = std::min({g.group_size, g.cols, length});
  return static_cast<std::uint32_t>(std::max<std::uint64_t>(1, (longest + kRangeTile - 1) / kRangeTile));
}

TensorCut cut_tensor(const GroupGeometry& g, std::uint64_t n, unsigned element_bytes,
                     const SlotCapacity& capacity) {
  TensorCut cut;
  const std::uint64_t max_elems = capacity.bytes / element_bytes / 8 * 8;
  const std::uint64_t max_groups = capacity.groups;
  cut.kind = kind_of_layout(g);
  if (n <= max_elems && g.groups <= max_groups) {
    cut.pieces.push_back({0, n});
    return cut;
  }
  // Whole groups per piece, cut at the last group boundary that is a multiple of 8 before a
  // limit is reached.
  std::uint64_t begin = 0, first_group = 0;
  std::uint64_t ok_group = 0, ok_start = 0;  // last usable boundary (ok_start > begin)
  for (std::uint64_t k = 1; k <= g.groups; ++k) {
    const std::uint64_t start = k == g.groups ? n : group_start(g, k);
    const bool boundary = k == g.groups || start % 8 == 0;
    for (;;) {
      if (start - begin <= max_elems && k - first_group <= max_groups) {
        if (boundary) {
          ok_group = k;
          ok_start = start;
        }
        break;
      }
      if (ok_start <= begin) {  // no boundary fits: groups are larger than a slot
        cut.kind = PieceKind::kHostRanges;
        cut.pieces = cut_anywhere(g, n, max_elems, max_groups);
        return cut;
      }
      cut.pieces.push_back({begin, ok_start});
      begin = ok_start;
      first_group = ok_group;
    }
  }
  cut.pieces.push_back({begin, n});
  return cut;
}

namespace {

class SlotPacker {
 public:
  SlotPacker(const SlotCapacity& capacity, bool range_pass)
      : capacity_(capacity), range_pass_(range_pass) {}

  void add(const QuantTensor& t, ElementRange range) {
    QuantPiece d;
    d.layout = layout_of(t.geometry);
    d.elem_begin = range.begin;
    d.elem_end = range.end;
    overlapping_groups(t.geometry, range.begin, range.end, &d.first_group, &d.last_group);
    d.type = t.type;
    d.bits = t.bits;
    d.f16_params = t.f16_params ? 1 : 0;
    d.rule = static_cast<std::int32_t>(t.rule);
    const PieceKind kind = range_pass_ ? PieceKind::kGeneral : t.cut.kind;
    d.host_ranges = kind == PieceKind::kHostRanges ? 1 : 0;
    d.tiles_per_group = kind == PieceKind::kHostRanges ? 1 : tiles_per_group(t.geometry, range.end - range.begin);

    const std::uint64_t n = range.end - range.begin;
    const std::uint64_t in_bytes = aligned_size(n * (t.type == ElementType::kF64 ? 8 : t.type == ElementType::kF32 ? 4 : 2));
    const std::uint64_t code_bytes = range_pass_ ? 0 : aligned_size(codec::packed_bytes(n, t.bits));
    const std::uint64_t groups = d.last_group - d.first_group;
    const bool single_pass = kind == PieceKind::kSmallGroups || kind == PieceKind::kWarpGroups ||
                             kind == PieceKind::kBlockGroups;
    const std::uint64_t tiles = single_pass ? 0 : groups * d.tiles_per_group;
    const std::uint64_t blocks = range_pass_ ? 0 : blocks_of(kind, n, groups);
    if (in_bytes > capacity_.bytes || code_bytes > capacity_.bytes || groups > capacity_.groups ||
        tiles > capacity_.tiles || blocks > capacity_.blocks) {
      throw Error(ErrorCode::kInternal, "CUDA planner: a piece exceeds an empty slot");
    }
    QuantSlot* slot = slots_.empty() ? nullptr : &slots_.back();
    if (slot == nullptr || slot->input_bytes + in_bytes > capacity_.bytes ||
        slot->code_bytes + code_bytes > capacity_.bytes || slot->groups + groups > capacity_.groups ||
        slot->tiles + tiles > capacity_.tiles || slot->piece_count() >= capacity_.pieces ||
        slot->blocks() + blocks > capacity_.blocks) {
      slots_.emplace_back();
      slot = &slots_.back();
    }
    d.src_offset = slot->input_bytes;
    d.code_offset = slot->code_bytes;
    d.param_index = slot->groups;
    d.tile_begin = slot->tiles;
    d.piece_index = slot->piece_count();
    std::uint64_t& launch_blocks = slot->launch_blocks[static_cast<int>(launch_of(kind))];
    d.block_begin = launch_blocks;
    launch_blocks += blocks;
    slot->input_bytes += in_bytes;
    slot->code_bytes += code_bytes;
    slot->groups += groups;
    slot->tiles += tiles;
    slot->host_ranges |= d.host_ranges != 0;
    if (tiles > 0) slot->max_tiles_per_group = std::max(slot->max_tiles_per_group, d.tiles_per_group);
    slot->pieces.push_back({t.job, kind, d});
  }

  std::vector<QuantSlot> take() { return std::move(slots_); }

 private:
  SlotCapacity capacity_;
  bool range_pass_;
  std::vector<QuantSlot> slots_;
};

}  // namespace

std::vector<QuantSlot> pack_quant_slots(const std::vector<QuantTensor>& tensors,
                                        const SlotCapacity& capacity, bool range_pass) {
  SlotPacker packer(capacity, range_pass);
  for (const QuantTensor& t : tensors) {
    for (const ElementRange& r : t.cut.pieces) packer.add(t, r);
  }
  return packer.take();
}

}  // namespace wq::cuda
