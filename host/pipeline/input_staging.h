// The input bytes of the tensors a batch quantizes, read with pread(2) into one buffer that is
// reused from batch to batch, instead of through the reader's mapping; and, when asked, the
// whole file's XXH3-64 (the journal's checksum) from the same reads.
//
// Why: on the 2-vCPU cloud VM of bench/RESULTS.md (issue 17, second round) a first pass over
// freshly mapped page-cache pages ran at 3.2-4.2 GB/s (with MAP_POPULATE or without), pread()
// into a reused buffer at 12 GB/s, and a pass over that buffer at 18-22 GB/s. The quantizers'
// first pass over their input (the range) was 15 % of a compressed-tensors export in perf, and
// hashing the input through a mapping of its own 14 %. The bytes are the same: pread() reads
// the page cache that the mapping shows.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "container/checksum.h"
#include "io/page_buffer.h"
#include "io/pread_file.h"
#include "wq/checkpoint.h"
#include "wq/tensor.h"

namespace wq::detail {

class InputStaging {
 public:
  /// Reads through a descriptor of its own on the reader's file when the reader maps it
  /// (mapped_bytes()); otherwise, or when the file cannot be opened again, stages nothing.
  /// `checksum`: also hash the file (file_checksum()). `cancel` is polled while reading.
  InputStaging(const CheckpointReader& reader, bool checksum, const std::atomic<bool>* cancel);
  InputStaging(const InputStaging&) = delete;
  InputStaging& operator=(const InputStaging&) = delete;

  /// Whether this reads the file (it could be opened); else covers() is always false and
  /// file_checksum() may not be called.
  bool reads() const noexcept { return file_.ok(); }
  /// Whether `view` is bytes of the reader's mapping, which stage() reads, and fits the
  /// buffer from `offset`.
  bool covers(const TensorView& view, std::uint64_t offset) const noexcept;
  /// Room for `bytes` of staged input from offset 0; views staged before become invalid.
  void reserve(std::uint64_t bytes);
  /// Reads `view`'s bytes (covers(view, offset)) to `offset` of the buffer and returns the
  /// view of them there. Throws Error(kInputMissing) naming the file and tensor when the read
  /// fails or comes up short (the file changed under the run).
  TensorView stage(const TensorView& view, std::uint64_t offset);
  /// The XXH3-64 of the whole file (16 hex digits), reading what the staged tensors did not
  /// cover. Once, after the last stage().
  std::string file_checksum();

 private:
  // Reads exactly [offset, offset + size) of the file to `to`; `what` names it in errors.
  void read_exact(std::uint64_t offset, std::byte* to, std::uint64_t size, std::string_view what);
  // Hashes the file's bytes [hashed_, end) through a scratch buffer.
  void hash_up_to(std::uint64_t end);

  std::span<const std::byte> mapped_;
  const std::atomic<bool>* cancel_;
  PreadFile file_;
  PageBuffer buffer_;  // uninitialised: every staged byte is read into it
  bool hashing_ = false;
  Xxh3 hash_;
  std::uint64_t hashed_ = 0;  ///< the file's bytes [0, hashed_) are in hash_
  std::unique_ptr<std::byte[]> scratch_;  // for the bytes no tensor stages
};

}  // namespace wq::detail
