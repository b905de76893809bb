// The CUDA backend's streaming machinery: a ring of slots, each a pinned host buffer pair, a
// device buffer pair, tables and its own stream. While the device works on one slot, the host
// fills the next (the copy out of the memory-mapped input is the file read) and empties the
// one before, so host copies, host-to-device copies, kernels and device-to-host copies of
// different slots overlap.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "device_memory.h"
#include "work_plan.h"

namespace wq::detail {
class ThreadPool;
}

namespace wq::cuda {

/// One slot's resources, sized by a SlotCapacity.
struct Slot {
  explicit Slot(const SlotCapacity& capacity);

  Stream stream;
  Event done;
  // Device side.
  DeviceBuffer input, output;
  DeviceBuffer tables[kQuantLaunches];  ///< piece descriptors, one table per launch
  DeviceBuffer tile_lo, tile_hi;
  DeviceBuffer scales, mins;                ///< binary32 parameters
  DeviceBuffer stored_scales, stored_mins;  ///< stored bits, one uint32 per group
  DeviceBuffer status, stats;
  // Host side (pinned), same sizes.
  PinnedBuffer host_input, host_output;
  PinnedBuffer host_tables[kQuantLaunches];
  PinnedBuffer host_tile_lo, host_tile_hi;
  PinnedBuffer host_stored_scales, host_stored_mins;
  PinnedBuffer host_status, host_stats;
};

/// The ring. run() drives a sequence of slot plans through it.
class SlotRing {
 public:
  static constexpr int kSlots = 3;

  /// Allocates kSlots slots on the current device; `staging_threads` copy into and out of
  /// pinned memory.
  SlotRing(const SlotCapacity& capacity, unsigned staging_threads);
  ~SlotRing();

  const SlotCapacity& capacity() const { return capacity_; }

  /// For each plan i in order: waits until slot i % kSlots is free, calls harvest(j, slot)
  /// for the plan j it last held, then enqueue(i, slot) fills it and enqueues its work on
  /// slot.stream. Every plan is harvested, in order, before run() returns. If anything
  /// throws, all streams are drained first so no copy still targets host memory.
  void run(std::size_t plans, const std::function<void(std::size_t, Slot&)>& enqueue,
           const std::function<void(std::size_t, Slot&)>& harvest);

  /// memcpy of many regions, spread over the staging threads when large.
  struct Copy {
    void* dst;
    const void* src;
    std::size_t bytes;
  };
  void copy_all(const std::vector<Copy>& copies);

 private:
  SlotCapacity capacity_;
  std::vector<std::unique_ptr<Slot>> slots_;
  std::unique_ptr<detail::ThreadPool> staging_;
};

}  // namespace wq::cuda
