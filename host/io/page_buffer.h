// A large, uninitialised byte buffer in anonymous memory that asks for transparent huge pages.
//
// Why: the batch arenas and the input staging buffer (tens of MiB each, new per file) were
// first touched 4 KiB at a time, and on the cloud VM of bench/RESULTS.md a page fault costs a
// trip through the hypervisor: 7 % of a compressed-tensors export's CPU in perf. With 2 MiB
// pages a 90 MB buffer takes 45 faults instead of 22,000. Where the kernel gives no huge pages
// (transparent_hugepage=never), it is an ordinary mapping. Below 4 MiB (most small files'
// batches) it is heap memory, which the allocator reuses without mapping anything.
#pragma once

#include <cstddef>
#include <cstdint>

namespace wq::detail {

class PageBuffer {
 public:
  PageBuffer() = default;
  PageBuffer(const PageBuffer&) = delete;
  PageBuffer& operator=(const PageBuffer&) = delete;
  ~PageBuffer();

  std::byte* data() const noexcept { return data_; }
  std::uint64_t size() const noexcept { return size_; }
  /// At least `bytes` (contents not kept when it grows). Throws std::bad_alloc when the memory
  /// cannot be mapped.
  void reserve(std::uint64_t bytes);

 private:
  void free() noexcept;

  std::byte* data_ = nullptr;
  std::uint64_t size_ = 0;
  bool mapped_ = false;
};

}  // namespace wq::detail
