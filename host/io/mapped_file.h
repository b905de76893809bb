// A read-only memory-mapped file whose pages can be handed back as they are consumed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace wq::detail {

/// Maps a whole file read-only. Move-only. Throws Error(kInputMissing) when the file cannot be
/// opened or mapped (the message names the path and the OS reason).
class MappedFile {
 public:
  explicit MappedFile(const std::string& path);
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&&) = delete;
  MappedFile(const MappedFile&) = delete;
  ~MappedFile();

  const std::string& path() const noexcept { return path_; }
  const std::byte* data() const noexcept { return data_; }
  std::uint64_t size() const noexcept { return size_; }
  /// Device and inode, to tell whether two paths name the same file.
  std::uint64_t device() const noexcept { return device_; }
  std::uint64_t inode() const noexcept { return inode_; }

  /// Drops the resident pages wholly inside [offset, offset + length) from this process (the
  /// page cache keeps them), so reading a large file does not grow the resident set.
  void release(std::uint64_t offset, std::uint64_t length) const noexcept;

 private:
  std::string path_;
  std::byte* data_ = nullptr;
  std::uint64_t size_ = 0;
  std::uint64_t device_ = 0;
  std::uint64_t inode_ = 0;
};

}  // namespace wq::detail
