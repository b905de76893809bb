// A streaming writer of STORED (uncompressed) zip archives, the container of torch .pt files
// and numpy .npz files.
//
// Each entry's size is given up front, so its local header carries the real size; the CRC-32
// is computed while the data streams through and patched into the local header afterwards
// (no data descriptors). Sizes or offsets of 4 GiB and more get zip64 extra fields; the zip64
// end record and locator are always written (as torch does), except in an empty archive.
// Memory holds one small record per entry, never entry data.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "io/atomic_file.h"

namespace wq::detail {

class ZipWriter {
 public:
  /// Writes to `out` (which the caller commits after finish()). With `alignment` > 1 the data
  /// of every entry starts at a file offset that is a multiple of it: the local header's extra
  /// field is padded with an 'FB' block of 'Z' bytes, exactly as torch's writer does.
  ZipWriter(AtomicFile& out, std::uint64_t alignment);

  /// Starts an entry that will hold exactly `size` bytes. `name` is stored as UTF-8.
  /// Throws Error(kInternal) if the previous entry did not receive its size.
  void begin_entry(const std::string& name, std::uint64_t size);
  /// Appends data to the current entry; an entry may be written in any number of pieces.
  void write(const void* data, std::size_t size);
  /// Ends the last entry and writes the central directory and end records. Call once.
  void finish();

 private:
  struct Entry {
    std::string name;
    std::uint64_t size = 0;
    std::uint64_t offset = 0;  // of the local header
    std::uint32_t crc = 0;
  };

  void end_entry();

  AtomicFile& out_;
  std::uint64_t alignment_;
  std::vector<Entry> entries_;
  bool open_ = false;      // an entry is being written
  std::uint64_t written_ = 0;
  std::uint32_t crc_ = 0;
};

}  // namespace wq::detail
