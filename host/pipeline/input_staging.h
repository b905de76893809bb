// The input bytes of the tensors a batch quantizes, read with pread(2) into one buffer that is
// reused from batch to batch, instead of through the reader's mapping.
//
// Why: on the 2-vCPU cloud VM of bench/RESULTS.md (issue 17, second round) a first pass over
// freshly mapped page-cache pages ran at 3.2-4.2 GB/s (with MAP_POPULATE or without), pread()
// into a reused buffer at 12 GB/s, and a pass over that buffer at 18-22 GB/s. The quantizers'
// first pass over their input (the range) was 15 % of a compressed-tensors export in perf.
// The bytes are the same: pread() reads the page cache that the mapping shows.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "wq/checkpoint.h"
#include "wq/tensor.h"

namespace wq::detail {

class InputStaging {
 public:
  /// Reads through a descriptor of its own on the reader's file when the reader maps it
  /// (mapped_bytes()); otherwise, or when the file cannot be opened again, stages nothing.
  explicit InputStaging(const CheckpointReader& reader);
  InputStaging(const InputStaging&) = delete;
  InputStaging& operator=(const InputStaging&) = delete;
  ~InputStaging();

  /// Whether `view` is bytes of the reader's mapping, which stage() reads, and fits the
  /// buffer from `offset`.
  bool covers(const TensorView& view, std::uint64_t offset) const noexcept;
  /// Room for `bytes` of staged input from offset 0; views staged before become invalid.
  void reserve(std::uint64_t bytes);
  /// Reads `view`'s bytes (covers(view, offset)) to `offset` of the buffer and returns the view of
  /// them there. Throws Error(kInputMissing) naming the file and tensor when the read fails or
  /// comes up short (the file changed under the run).
  TensorView stage(const TensorView& view, std::uint64_t offset);

 private:
  std::string path_;
  std::span<const std::byte> mapped_;
  int fd_ = -1;
  std::unique_ptr<std::byte[]> buffer_;  // uninitialised: every staged byte is read into it
  std::uint64_t capacity_ = 0;
};

}  // namespace wq::detail
