// The CUDA backend's planner (host code, runs without a GPU): every element lands in exactly
// one piece, pieces start on byte boundaries of the code stream, fit their slot, and the
// single-pass kernel only gets pieces made of whole groups of 8..256 elements.
#include <gtest/gtest.h>

#include <random>

#include "work_plan.h"

namespace wq::cuda {
namespace {

QuantSpec spec_of(int bits, Granularity g, std::uint64_t group = 64) {
  QuantSpec spec;
  spec.bits = bits;
  spec.granularity = g;
  spec.group_size = group;
  return spec;
}

std::uint64_t group_start(const GroupGeometry& g, std::uint64_t k) {
  return (k / g.groups_per_row) * g.cols + (k % g.groups_per_row) * g.group_size;
}

void check_cut(const Shape& shape, const QuantSpec& spec, unsigned element_bytes, const SlotCapacity& c) {
  SCOPED_TRACE(::testing::Message() << "shape[0] " << shape[0] << " G " << spec.group_size << " "
                                    << granularity_name(spec.granularity) << " slot " << c.bytes);
  const GroupGeometry g = group_geometry(shape, spec);
  const std::uint64_t n = element_count(shape);
  const TensorCut cut = cut_tensor(g, n, element_bytes, c);
  ASSERT_FALSE(cut.pieces.empty());
  std::uint64_t expected_begin = 0;
  for (const ElementRange& r : cut.pieces) {
    ASSERT_EQ(r.begin, expected_begin);
    ASSERT_GT(r.end, r.begin);
    ASSERT_EQ(r.begin % 8, 0u);
    ASSERT_LE((r.end - r.begin) * element_bytes, c.bytes);
    std::uint64_t first = 0, last = 0;
    overlapping_groups(g, r.begin, r.end, &first, &last);
    ASSERT_LE(last - first, c.groups);
    if (cut.kind != PieceKind::kHostRanges) {  // whole groups only
      ASSERT_EQ(group_start(g, first), r.begin);
      ASSERT_EQ(last == g.groups ? n : group_start(g, last), r.end);
    }
    expected_begin = r.end;
  }
  ASSERT_EQ(expected_begin, n);
  if (cut.kind != PieceKind::kGeneral && cut.kind != PieceKind::kHostRanges) {  // single pass
    EXPECT_EQ(g.group_size % 8, 0u);
    EXPECT_EQ(g.cols % g.group_size, 0u);
    EXPECT_EQ(g.group_size <= 8 * kMaxWarpGroupOctets, cut.kind != PieceKind::kBlockGroups);
    EXPECT_LE(g.group_size, 8 * kMaxBlockGroupOctets);
  }

  // Packing: offsets inside the slot, no overlap, tables within capacity; each launch's
  // blocks follow one another from 0.
  QuantTensor t;
  t.geometry = g;
  t.bits = spec.bits;
  t.type = element_bytes == 4 ? ElementType::kF32 : ElementType::kF16;
  t.cut = cut;
  for (bool range_pass : {false, true}) {
    for (const QuantSlot& slot : pack_quant_slots({t, t}, c, range_pass)) {
      ASSERT_LE(slot.input_bytes, c.bytes);
      ASSERT_LE(slot.code_bytes, c.bytes);
      ASSERT_LE(slot.groups, c.groups);
      ASSERT_LE(slot.tiles, c.tiles);
      ASSERT_LE(slot.blocks(), c.blocks);
      std::uint64_t next_input = 0, next_param = 0;
      for (const PlacedQuantPiece& p : slot.pieces) {
        EXPECT_EQ(p.desc.src_offset, next_input);
        EXPECT_EQ(p.desc.src_offset % 256, 0u);
        EXPECT_EQ(p.desc.param_index, next_param);
        next_input += aligned_size((p.desc.elem_end - p.desc.elem_begin) * element_bytes);
        next_param += p.desc.last_group - p.desc.first_group;
      }
    }
  }
}

TEST(CudaPlan, PiecesCoverEveryElementOnceWithinTheSlot) {
  const SlotCapacity small = SlotCapacity::for_bytes(64 * 1024);
  const SlotCapacity large = SlotCapacity::for_bytes(64u << 20);
  for (const SlotCapacity& c : {small, large}) {
    for (const Shape& shape : {Shape{1}, Shape{7}, Shape{(1u << 20) + 3}, Shape{4096, 4096}, Shape{13, 77},
                               Shape{1023, 9}, Shape{3, 5, 7}, Shape{100000, 3}, Shape{2, 300000}}) {
      for (Granularity gr : {Granularity::kTensor, Granularity::kChannel, Granularity::kGroup}) {
        for (std::uint64_t group : {1ull, 7ull, 32ull, 64ull, 128ull, 512ull, 5000ull}) {
          if (gr != Granularity::kGroup && group != 64) continue;
          check_cut(shape, spec_of(4, gr, group), 4, c);
          check_cut(shape, spec_of(3, gr, group), 2, c);
        }
      }
    }
  }
}

TEST(CudaPlan, KindFollowsTheGroupLayout) {
  const SlotCapacity c = SlotCapacity::for_bytes(1u << 20);
  auto kind = [&](const Shape& shape, const QuantSpec& spec) {
    return cut_tensor(group_geometry(shape, spec), element_count(shape), 4, c).kind;
  };
  EXPECT_EQ(kind({64, 128}, spec_of(4, Granularity::kGroup, 64)), PieceKind::kSmallGroups);
  EXPECT_EQ(kind({64, 128}, spec_of(4, Granularity::kChannel)), PieceKind::kSmallGroups);
  EXPECT_EQ(kind({64, 100}, spec_of(4, Granularity::kGroup, 64)), PieceKind::kGeneral);   // short last group
  EXPECT_EQ(kind({64, 4096}, spec_of(4, Granularity::kChannel)), PieceKind::kBlockGroups);
  EXPECT_EQ(kind({64, 4096}, spec_of(4, Granularity::kGroup, 512)), PieceKind::kWarpGroups);
  EXPECT_EQ(kind({64, 120}, spec_of(4, Granularity::kGroup, 24)), PieceKind::kWarpGroups);    // 3 octets
  EXPECT_EQ(kind({4, 32768}, spec_of(4, Granularity::kChannel)), PieceKind::kBlockGroups);
  EXPECT_EQ(kind({4, 65536}, spec_of(4, Granularity::kChannel)), PieceKind::kBlockGroups);
  EXPECT_EQ(kind({4, 65544}, spec_of(4, Granularity::kChannel)), PieceKind::kGeneral);    // too long
  EXPECT_EQ(kind({64, 4100}, spec_of(4, Granularity::kChannel)), PieceKind::kGeneral);    // cols % 8
  EXPECT_EQ(kind({64, 128}, spec_of(4, Granularity::kGroup, 48)), PieceKind::kGeneral);   // 128 % 48
  EXPECT_EQ(kind({1u << 20}, spec_of(4, Granularity::kTensor)), PieceKind::kHostRanges);  // > 1 MiB slot
  EXPECT_EQ(kind({1u << 16}, spec_of(4, Granularity::kTensor)), PieceKind::kBlockGroups);  // one block
  EXPECT_EQ(kind({1u << 17}, spec_of(4, Granularity::kTensor)), PieceKind::kGeneral);
}

}  // namespace
}  // namespace wq::cuda
