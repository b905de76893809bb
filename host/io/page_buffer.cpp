#include "io/page_buffer.h"

#include <sys/mman.h>

#include <new>

namespace wq::detail {

namespace {
constexpr std::uint64_t kHugePage = 2ull << 20;
constexpr std::uint64_t kMapFrom = 4ull << 20;
}  // namespace

PageBuffer::~PageBuffer() { free(); }

void PageBuffer::free() noexcept {
  if (data_ != nullptr) {
    if (mapped_) {
      ::munmap(data_, size_);
    } else {
      delete[] data_;
    }
  }
  data_ = nullptr;
  size_ = 0;
  mapped_ = false;
}

void PageBuffer::reserve(std::uint64_t bytes) {
  if (bytes <= size_) return;
  free();
  if (bytes < kMapFrom) {
    data_ = new std::byte[bytes];  // default-initialised: no memset
    size_ = bytes;
    return;
  }
  // Whole huge pages, mapped with room to align the start to one.
  const std::uint64_t size = (bytes + kHugePage - 1) / kHugePage * kHugePage;
  void* p = ::mmap(nullptr, size + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  const auto start = reinterpret_cast<std::uintptr_t>(p);
  const std::uintptr_t aligned = (start + kHugePage - 1) / kHugePage * kHugePage;
  if (aligned > start) ::munmap(p, aligned - start);
  const std::uintptr_t end = start + size + kHugePage;
  if (end > aligned + size) ::munmap(reinterpret_cast<void*>(aligned + size), end - (aligned + size));
  data_ = reinterpret_cast<std::byte*>(aligned);
  size_ = size;
  mapped_ = true;
  ::madvise(data_, size_, MADV_HUGEPAGE);
}

}  // namespace wq::detail
