// Host-side planning of the CUDA backend's element-wise work (dequantize and cast): each
// job's elements are cut into pieces that fit a slot, and the pieces are packed into slots in
// job order. Pure C++ with no CUDA calls, so it is unit-tested on machines without a GPU.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "work_items.h"
#include "work_plan.h"
#include "wq/backend.h"

namespace wq::cuda {

/// The element-wise pieces of one slot (one device round trip).
template <typename Piece>
struct ElementwiseSlot {
  std::vector<Piece> pieces;
  std::vector<std::size_t> jobs;       ///< per piece: the job it belongs to
  std::vector<std::uint64_t> firsts;   ///< per piece: its first element within the job's tensor
  std::uint64_t input_bytes = 0, output_bytes = 0, blocks = 0;
};
using DequantSlot = ElementwiseSlot<DequantPiece>;
using CastSlot = ElementwiseSlot<CastPiece>;

/// Dequantize pieces: whole octets of codes (pieces start at multiples of 8), with the scales
/// and mins of the groups they overlap; jobs whose output is not floating are left out (the
/// backend reports them).
std::vector<DequantSlot> plan_dequantize(std::span<const DequantizeJob> jobs, const SlotCapacity& capacity);

/// Cast pieces; jobs with `skip[j]` set are left out.
std::vector<CastSlot> plan_cast(std::span<const CastJob> jobs, const std::vector<bool>& skip,
                                const SlotCapacity& capacity);

}  // namespace wq::cuda
