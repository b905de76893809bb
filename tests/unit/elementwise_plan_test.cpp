// The CUDA backend's dequantize and cast planner (host code, runs without a GPU): every
// element of every job lands in exactly one piece, in order; a piece's codes start on a byte
// boundary; each slot's buffers, tables and statistics stay within its capacity; the offsets
// the kernels use point inside the slot's buffers without overlap.
#include <gtest/gtest.h>

#include <vector>

#include "elementwise_plan.h"
#include "wq/codec/pack.h"

namespace wq::cuda {
namespace {

template <typename Piece>
void check_slot_bounds(const ElementwiseSlot<Piece>& slot, const SlotCapacity& c) {
  ASSERT_FALSE(slot.pieces.empty());
  ASSERT_EQ(slot.jobs.size(), slot.pieces.size());
  ASSERT_EQ(slot.firsts.size(), slot.pieces.size());
  EXPECT_LE(slot.input_bytes, c.bytes);
  EXPECT_LE(slot.output_bytes, c.bytes);
  EXPECT_LE(slot.blocks, c.blocks);
  EXPECT_LE(slot.pieces.size(), c.pieces);
}

// Elements [begin, end) of each job, in piece order across slots: must tile [0, n) per job,
// jobs in order.
void expect_tiling(const std::vector<std::vector<std::pair<std::uint64_t, std::uint64_t>>>& runs,
                   const std::vector<std::uint64_t>& sizes, const std::vector<bool>& planned) {
  for (std::size_t j = 0; j < sizes.size(); ++j) {
    SCOPED_TRACE(::testing::Message() << "job " << j);
    if (!planned[j]) {
      EXPECT_TRUE(runs[j].empty());
      continue;
    }
    std::uint64_t next = 0;
    for (const auto& [begin, end] : runs[j]) {
      EXPECT_EQ(begin, next);
      EXPECT_EQ(begin % 8, 0u);
      EXPECT_GT(end, begin);
      next = end;
    }
    EXPECT_EQ(next, sizes[j]);
  }
}

struct DequantCase {
  Shape shape;
  std::uint64_t stored_group_size;  // 0: per tensor
  int bits;
  DType out;
  ScaleDType scales;
};

TEST(ElementwisePlan, DequantizePiecesCoverEveryElementOnceWithinTheSlot) {
  const std::vector<DequantCase> cases = {
      {{1}, 0, 8, DType::kF32, ScaleDType::kF32},
      {{7}, 64, 4, DType::kF16, ScaleDType::kF16},
      {{9}, 8, 1, DType::kBF16, ScaleDType::kF32},
      {{1023, 9}, 9, 3, DType::kF32, ScaleDType::kF32},
      {{(1u << 20) + 3}, 0, 7, DType::kF64, ScaleDType::kF32},
      {{4096, 4096}, 64, 4, DType::kF32, ScaleDType::kF32},
      {{13, 77}, 1, 2, DType::kF32, ScaleDType::kF16},  // a group per element: parameters dominate
      {{100003}, 1, 4, DType::kF16, ScaleDType::kF32},  // and outgrow the slot: pieces are halved
      {{50001}, 3, 6, DType::kBF16, ScaleDType::kF32},
      {{2, 300000}, 300000, 5, DType::kBF16, ScaleDType::kF32},
      {{0, 5}, 64, 4, DType::kF32, ScaleDType::kF32},   // empty: no pieces
      {{5, 5}, 64, 4, DType::kI32, ScaleDType::kF32},   // not floating: the backend reports it
  };
  for (const std::uint64_t bytes : {std::uint64_t{64} * 1024, std::uint64_t{4} << 20}) {
    const SlotCapacity c = SlotCapacity::for_bytes(bytes);
    SCOPED_TRACE(::testing::Message() << "slot " << bytes);
    std::vector<DequantizeJob> jobs;
    std::vector<std::uint64_t> sizes;
    std::vector<bool> planned;
    for (const DequantCase& k : cases) {
      DequantizeJob job;
      job.input.bits = k.bits;
      job.input.stored_group_size = k.stored_group_size;
      job.input.scale_dtype = k.scales;
      job.out = MutableTensorView{"t", k.out, k.shape, nullptr};
      jobs.push_back(job);
      sizes.push_back(element_count(k.shape));
      planned.push_back(is_floating(k.out) && sizes.back() > 0);
    }
    std::vector<std::vector<std::pair<std::uint64_t, std::uint64_t>>> runs(jobs.size());
    for (const DequantSlot& slot : plan_dequantize(jobs, c)) {
      check_slot_bounds(slot, c);
      std::uint64_t next_input = 0, next_output = 0, next_block = 0;
      for (std::size_t k = 0; k < slot.pieces.size(); ++k) {
        const DequantPiece& p = slot.pieces[k];
        const DequantizeJob& job = jobs[slot.jobs[k]];
        const GroupGeometry g = stored_group_geometry(job.out.shape, job.input.stored_group_size, job.input.bits);
        const std::uint64_t n = p.elem_end - p.elem_begin;
        const std::uint64_t param = job.input.scale_dtype == ScaleDType::kF16 ? 2 : 4;
        std::uint64_t first = 0, last = 0;
        overlapping_groups(g, p.elem_begin, p.elem_end, &first, &last);
        EXPECT_EQ(p.piece_index, k);
        EXPECT_EQ(slot.firsts[k], p.elem_begin);
        EXPECT_EQ(p.first_group, first);
        EXPECT_LE(last - first, c.groups);
        EXPECT_EQ(p.bits, job.input.bits);
        EXPECT_EQ(p.f16_params, param == 2 ? 1 : 0);
        EXPECT_EQ(p.type, element_type(job.out.dtype));
        // Codes, scales and mins follow one another, each 256-byte aligned, then the next piece.
        EXPECT_EQ(p.code_offset, next_input);
        EXPECT_EQ(p.code_offset % 256, 0u);
        EXPECT_EQ(p.scale_offset, p.code_offset + aligned_size(codec::packed_bytes(n, p.bits)));
        EXPECT_EQ(p.min_offset, p.scale_offset + aligned_size((last - first) * param));
        next_input = p.min_offset + aligned_size((last - first) * param);
        EXPECT_EQ(p.dst_offset, next_output);
        next_output += aligned_size(n * dtype_size(job.out.dtype));
        EXPECT_EQ(p.block_begin, next_block);
        next_block += blocks_for(n);
        runs[slot.jobs[k]].emplace_back(p.elem_begin, p.elem_end);
      }
      EXPECT_EQ(slot.input_bytes, next_input);
      EXPECT_EQ(slot.output_bytes, next_output);
      EXPECT_EQ(slot.blocks, next_block);
    }
    expect_tiling(runs, sizes, planned);
  }
}

TEST(ElementwisePlan, CastPiecesCoverEveryElementOnceWithinTheSlot) {
  struct CastCase {
    Shape shape;
    DType from, to;
    bool skip;
  };
  const std::vector<CastCase> cases = {
      {{1}, DType::kF32, DType::kF16, false},        {{7}, DType::kF16, DType::kF32, false},
      {{8}, DType::kBF16, DType::kF64, false},       {{9}, DType::kF64, DType::kBF16, true},
      {{1023}, DType::kF32, DType::kBF16, false},    {{(1u << 20) + 3}, DType::kF64, DType::kF16, false},
      {{0}, DType::kF32, DType::kF16, false},        {{300, 300}, DType::kF16, DType::kF64, false},
  };
  for (const std::uint64_t bytes : {std::uint64_t{64} * 1024, std::uint64_t{4} << 20}) {
    const SlotCapacity c = SlotCapacity::for_bytes(bytes);
    SCOPED_TRACE(::testing::Message() << "slot " << bytes);
    std::vector<CastJob> jobs;
    std::vector<bool> skip;
    std::vector<std::uint64_t> sizes;
    std::vector<bool> planned;
    for (const CastCase& k : cases) {
      jobs.push_back(CastJob{TensorView{"t", k.from, k.shape, nullptr}, MutableTensorView{"t", k.to, k.shape, nullptr}, true, {}});
      skip.push_back(k.skip);
      sizes.push_back(element_count(k.shape));
      planned.push_back(!k.skip && sizes.back() > 0);
    }
    std::vector<std::vector<std::pair<std::uint64_t, std::uint64_t>>> runs(jobs.size());
    for (const CastSlot& slot : plan_cast(jobs, skip, c)) {
      check_slot_bounds(slot, c);
      std::uint64_t next_input = 0, next_output = 0, next_block = 0;
      for (std::size_t k = 0; k < slot.pieces.size(); ++k) {
        const CastPiece& p = slot.pieces[k];
        const CastJob& job = jobs[slot.jobs[k]];
        EXPECT_EQ(p.piece_index, k);
        EXPECT_EQ(p.from, element_type(job.input.dtype));
        EXPECT_EQ(p.to, element_type(job.out.dtype));
        EXPECT_EQ(p.src_offset, next_input);
        next_input += aligned_size(p.count * dtype_size(job.input.dtype));
        EXPECT_EQ(p.dst_offset, next_output);
        next_output += aligned_size(p.count * dtype_size(job.out.dtype));
        EXPECT_EQ(p.block_begin, next_block);
        next_block += blocks_for(p.count);
        runs[slot.jobs[k]].emplace_back(slot.firsts[k], slot.firsts[k] + p.count);
      }
      EXPECT_EQ(slot.input_bytes, next_input);
      EXPECT_EQ(slot.output_bytes, next_output);
      EXPECT_EQ(slot.blocks, next_block);
    }
    expect_tiling(runs, sizes, planned);
  }
}

TEST(ElementwisePlan, ManySmallTensorsShareSlotsUpToThePieceTable) {
  // 10,000 tensors of 8 elements: one slot holds at most c.pieces of them.
  const SlotCapacity c = SlotCapacity::for_bytes(4u << 20);
  std::vector<CastJob> jobs(10000, CastJob{TensorView{"t", DType::kF32, {8}, nullptr},
                                           MutableTensorView{"t", DType::kF16, {8}, nullptr}, true, {}});
  const std::vector<CastSlot> slots = plan_cast(jobs, std::vector<bool>(jobs.size(), false), c);
  ASSERT_EQ(slots.size(), (jobs.size() + c.pieces - 1) / c.pieces);
  for (const CastSlot& slot : slots) EXPECT_LE(slot.pieces.size(), c.pieces);
  EXPECT_EQ(slots.front().pieces.size(), c.pieces);
}

}  // namespace
}  // namespace wq::cuda
