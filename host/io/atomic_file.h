// An output file that appears only complete: written to a temporary file in the destination's
// folder, flushed with fsync and renamed into place by commit(). Destroyed without commit(),
// it removes the temporary file, so an error or cancellation leaves nothing behind.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace wq::detail {

class AtomicFile {
 public:
  /// Creates the temporary file. Throws Error(kOutput) naming `destination` when its folder
  /// does not exist or is not writable.
  explicit AtomicFile(std::string destination);
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile();

  const std::string& destination() const noexcept { return destination_; }
  const std::string& temp_path() const noexcept { return temp_path_; }

  /// Appends bytes at the current end. Throws Error(kOutput) on any short or failed write
  /// (disk full, quota, I/O error), naming the destination.
  void write(const void* data, std::size_t size);
  /// Overwrites bytes at `offset` (must lie inside what was written).
  void write_at(std::uint64_t offset, const void* data, std::size_t size);
  std::uint64_t size() const noexcept { return size_; }

  /// Starts writing what was written so far to disk without waiting (sync_file_range), so
  /// that commit()'s fsync finds little left to do. A hint: errors surface at commit().
  void start_writeback() noexcept;

  /// fsyncs the data, renames the file to its destination and fsyncs the folder. Without
  /// `durable`, only the rename: the file is still never seen half-written, but a crash of the
  /// machine (not of the process) may lose it, as with any write that is not fsynced.
  void commit(bool durable = true);

 private:
  [[noreturn]] void fail(const std::string& what, int err) const;

  std::string destination_;
  std::string temp_path_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
  bool committed_ = false;
};

}  // namespace wq::detail
