#include "elementwise_plan.h"

#include <algorithm>

#include "wq/codec/pack.h"

namespace wq::cuda {
namespace {

// Where a new piece goes: the last slot if the piece fits next to what it holds, else a new
// slot. The piece gets the slot's next output offset, first block and index; the slot's
// counters advance. Returns the piece (for the caller's own fields) and its input offset.
template <typename Piece>
struct Placed {
  Piece& piece;
  std::uint64_t input_offset;
};

template <typename Piece>
Placed<Piece> place(std::vector<ElementwiseSlot<Piece>>& slots, const SlotCapacity& capacity, std::size_t job,
                    std::uint64_t first, std::uint64_t in_bytes, std::uint64_t out_bytes, std::uint64_t blocks) {
  if (slots.empty()) slots.emplace_back();
  ElementwiseSlot<Piece>* slot = &slots.back();
  if (!slot->pieces.empty() &&
      (slot->input_bytes + in_bytes > capacity.bytes || slot->output_bytes + out_bytes > capacity.bytes ||
       slot->blocks + blocks > capacity.blocks || slot->pieces.size() >= capacity.pieces)) {
    slot = &slots.emplace_back();
  }
  Piece& p = slot->pieces.emplace_back();
  p.dst_offset = slot->output_bytes;
  p.block_begin = slot->blocks;
  p.piece_index = static_cast<std::uint32_t>(slot->pieces.size() - 1);
  slot->jobs.push_back(job);
  slot->firsts.push_back(first);
  const std::uint64_t input_offset = slot->input_bytes;
  slot->input_bytes += in_bytes;
  slot->output_bytes += out_bytes;
  slot->blocks += blocks;
  return {p, input_offset};
}

}  // namespace

std::vector<DequantSlot> plan_dequantize(std::span<const DequantizeJob> jobs, const SlotCapacity& capacity) {
  std::vector<DequantSlot> slots;
  for (std::size_t j = 0; j < jobs.size(); ++j) {
    const AffineTensor& in = jobs[j].input;
    const MutableTensorView& out = jobs[j].out;
    if (!is_floating(out.dtype)) continue;
    const GroupGeometry g = stored_group_geometry(out.shape, in.stored_group_size, in.bits);
    const std::uint64_t n = out.numel();
    if (g.groups == 0) continue;
    const std::uint64_t out_size = dtype_size(out.dtype);
    const std::uint64_t param_size = in.scale_dtype == ScaleDType::kF16 ? 2 : 4;
    for (std::uint64_t begin = 0; begin < n;) {
      // The most elements whose output fits, halved while codes and parameters do not.
      std::uint64_t end = std::min(n, begin + capacity.bytes / out_size / 8 * 8);
      std::uint64_t first = 0, last = 0, in_bytes = 0;
      for (;;) {
        overlapping_groups(g, begin, end, &first, &last);
        in_bytes = aligned_size(codec::packed_bytes(end - begin, in.bits)) + 2 * aligned_size((last - first) * param_size);
        if ((in_bytes <= capacity.bytes && last - first <= capacity.groups) || end - begin <= 8) break;
        end = begin + std::max<std::uint64_t>(8, (end - begin) / 2 / 8 * 8);
      }
      const auto [p, input_offset] = place(slots, capacity, j, begin, in_bytes, aligned_size((end - begin) * out_size),
                                           blocks_for(end - begin));
      p.layout = layout_of(g);
      p.elem_begin = begin;
      p.elem_end = end;
      p.first_group = first;
      p.code_offset = input_offset;
      p.scale_offset = p.code_offset + aligned_size(codec::packed_bytes(end - begin, in.bits));
      p.min_offset = p.scale_offset + aligned_size((last - first) * param_size);
      p.type = element_type(out.dtype);
      p.bits = in.bits;
      p.f16_params = in.scale_dtype == ScaleDType::kF16 ? 1 : 0;
      p.symmetric = in.mins == nullptr ? 1 : 0;
      begin = end;
    }
  }
  return slots;
}

std::vector<CastSlot> plan_cast(std::span<const CastJob> jobs, const std::vector<bool>& skip,
                                const SlotCapacity& capacity) {
  std::vector<CastSlot> slots;
  for (std::size_t j = 0; j < jobs.size(); ++j) {
    if (skip[j]) continue;
    const std::uint64_t n = jobs[j].input.numel();
    const std::uint64_t in_size = dtype_size(jobs[j].input.dtype);
    const std::uint64_t out_size = dtype_size(jobs[j].out.dtype);
    const std::uint64_t step = capacity.bytes / std::max(in_size, out_size) / 8 * 8;
    for (std::uint64_t begin = 0; begin < n; begin += step) {
      const std::uint64_t count = std::min(step, n - begin);
      const auto [p, input_offset] = place(slots, capacity, j, begin, aligned_size(count * in_size),
                                           aligned_size(count * out_size), blocks_for(count));
      p.count = count;
      p.src_offset = input_offset;
      p.from = element_type(jobs[j].input.dtype);
      p.to = element_type(jobs[j].out.dtype);
    }
  }
  return slots;
}

}  // namespace wq::cuda
