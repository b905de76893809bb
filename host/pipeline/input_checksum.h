// The XXH3-64 checksum of an input file, for tree mode's journal (a rerun skips an input
// whose checksum is unchanged), computed while quantize_file() works on the file.
#pragma once

#include <atomic>
#include <future>
#include <span>
#include <string>

#include "wq/checkpoint.h"

namespace wq::detail {

/// XXH3-64 of the whole file at `path`, 16 hex digits, through a mapping of its own whose
/// pages are released as they are hashed. Polls `cancel` every 8 MiB. Throws
/// Error(kInputMissing) or Error(kInterrupted).
std::string checksum_file(const std::string& path, const std::atomic<bool>* cancel);

/// The checksum of the file a reader reads.
/// - A file quantized in one batch (most small files) is hashed at the end through the
///   reader's own mapping, whose pages are then still in place: mapping it once more cost
///   about a fifth of a small file's time in tree mode.
/// - A larger file, or one the reader does not map whole (zip formats), is hashed by
///   checksum_file() on a thread beside the work. Sharing the reader's pages there would
///   keep a batch's input in memory until it is hashed.
class InputChecksum {
 public:
  InputChecksum(const CheckpointReader& reader, const std::string& path, bool one_batch,
                const std::atomic<bool>* cancel);
  /// The checksum (hashing the reader's mapping now, or waiting for the thread).
  std::string finish();

 private:
  std::span<const std::byte> bytes_;  ///< the reader's mapping, when it is hashed at the end
  const std::atomic<bool>* cancel_;
  std::future<std::string> own_;
};

}  // namespace wq::detail
