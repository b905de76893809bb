// The XXH3-64 checksum of an input file, for tree mode's journal (a rerun skips an input
// whose checksum is unchanged), computed while quantize_file() reads the file.
#pragma once

#include <atomic>
#include <cstdint>
#include <future>
#include <span>
#include <string>

#include "container/checksum.h"
#include "wq/checkpoint.h"

namespace wq::detail {

/// XXH3-64 of the whole file at `path`, 16 hex digits, through a mapping of its own whose
/// pages are released as they are hashed. Polls `cancel` every 8 MiB. Throws
/// Error(kInputMissing) or Error(kInterrupted).
std::string checksum_file(const std::string& path, const std::atomic<bool>* cancel);

/// The checksum of the file a reader reads, hashed in file order as the batches go, through
/// the reader's own mapping: the file's pages are faulted in once (a pass of its own cost a
/// fifth of a small file's time in tree mode). A reader that does not map the file whole
/// (zip formats) gets checksum_file() on a thread beside the work instead.
class InputChecksum {
 public:
  InputChecksum(const CheckpointReader& reader, const std::string& path, const std::atomic<bool>* cancel);

  /// Hashes the file up to `end`, a pointer into the reader's mapping (anything else is
  /// ignored). Calls must not overlap; each may come from another thread than the last.
  void hash_to(const std::byte* end);
  /// Hashes the rest; returns the checksum.
  std::string finish();

 private:
  std::span<const std::byte> bytes_;  ///< the reader's mapping; empty: own_ hashes the file
  std::uint64_t done_ = 0;
  Xxh3 hash_;
  const std::atomic<bool>* cancel_;
  std::future<std::string> own_;
};

}  // namespace wq::detail
