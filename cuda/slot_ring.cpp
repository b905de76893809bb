#include "slot_ring.h"

#include <algorithm>
#include <cstring>

#include "cpu/thread_pool.h"

namespace wq::cuda {
namespace {

constexpr std::size_t kTableBytes =
    std::max({sizeof(QuantPiece), sizeof(DequantPiece), sizeof(CastPiece)});

// Copies smaller than this are not worth a thread hand-off.
constexpr std::size_t kParallelCopyBytes = 4u << 20;
constexpr std::size_t kCopyChunk = 2u << 20;

}  // namespace

Slot::Slot(const SlotCapacity& c)
    : input(c.bytes),
      output(c.bytes),
      tile_lo(c.tiles * 4),
      tile_hi(c.tiles * 4),
      scales(c.groups * 4),
      mins(c.groups * 4),
      stored_scales(c.groups * 4),
      stored_mins(c.groups * 4),
      status(c.pieces * 4),
      stats(c.blocks * sizeof(BlockStats)),
      host_input(c.bytes),
      host_output(c.bytes),
      host_tile_lo(c.tiles * 4),
      host_tile_hi(c.tiles * 4),
      host_stored_scales(c.groups * 4),
      host_stored_mins(c.groups * 4),
      host_status(c.pieces * 4),
      host_stats(c.blocks * sizeof(BlockStats)) {
  for (int l = 0; l < kQuantLaunches; ++l) {
    tables[l] = DeviceBuffer(c.pieces * kTableBytes);
    host_tables[l] = PinnedBuffer(c.pieces * kTableBytes);
  }
}

SlotRing::SlotRing(const SlotCapacity& capacity, unsigned staging_threads)
    : capacity_(capacity), staging_(std::make_unique<detail::ThreadPool>(staging_threads)) {
  for (int i = 0; i < kSlots; ++i) slots_.push_back(std::make_unique<Slot>(capacity));
}

SlotRing::~SlotRing() {
  for (auto& slot : slots_) cudaStreamSynchronize(slot->stream.get());
}

void SlotRing::run(std::size_t plans, const std::function<void(std::size_t, Slot&)>& enqueue,
                   const std::function<void(std::size_t, Slot&)>& harvest) {
  std::vector<std::ptrdiff_t> held(kSlots, -1);  // plan each slot holds
  try {
    for (std::size_t i = 0; i < plans; ++i) {
      Slot& slot = *slots_[i % kSlots];
      std::ptrdiff_t& previous = held[i % kSlots];
      if (previous >= 0) {
        slot.done.wait();
        const auto j = static_cast<std::size_t>(previous);
        previous = -1;
        harvest(j, slot);
      }
      enqueue(i, slot);
      slot.done.record(slot.stream.get());
      previous = static_cast<std::ptrdiff_t>(i);
    }
    // The last plans, oldest first.
    const std::size_t tail = std::min<std::size_t>(plans, kSlots);
    for (std::size_t i = plans - tail; i < plans; ++i) {
      Slot& slot = *slots_[i % kSlots];
      slot.done.wait();
      held[i % kSlots] = -1;
      harvest(i, slot);
    }
  } catch (...) {
    for (auto& slot : slots_) cudaStreamSynchronize(slot->stream.get());
    cudaGetLastError();
    throw;
  }
}

void SlotRing::copy_all(const std::vector<Copy>& copies) {
  std::size_t total = 0;
  for (const Copy& c : copies) total += c.bytes;
  if (total < kParallelCopyBytes || staging_->size() == 1) {
    for (const Copy& c : copies) std::memcpy(c.dst, c.src, c.bytes);
    return;
  }
  // Cut every region into chunks so threads share large and small regions evenly.
  std::vector<Copy> chunks;
  for (const Copy& c : copies) {
    for (std::size_t done = 0; done < c.bytes; done += kCopyChunk) {
      const std::size_t n = std::min(kCopyChunk, c.bytes - done);
      chunks.push_back({static_cast<std::uint8_t*>(c.dst) + done,
                        static_cast<const std::uint8_t*>(c.src) + done, n});
    }
  }
  staging_->parallel_for(chunks.size(), [&](std::size_t i) {
    std::memcpy(chunks[i].dst, chunks[i].src, chunks[i].bytes);
  });
}

}  // namespace wq::cuda
