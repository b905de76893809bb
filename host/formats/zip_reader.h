// Reading members of a zip archive (libzip), as torch .pt files and numpy .npz files are.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/mapped_file.h"

struct zip;

namespace wq::detail {

class ZipReader {
 public:
  /// Opens the archive; throws Error(kBadFormat) naming `path` when it is not a readable zip
  /// (zip64 included).
  explicit ZipReader(const std::string& path);
  ~ZipReader();
  ZipReader(const ZipReader&) = delete;
  ZipReader& operator=(const ZipReader&) = delete;

  const std::string& path() const noexcept { return path_; }
  /// Member names in archive order.
  const std::vector<std::string>& names() const noexcept { return names_; }
  /// Index of a member, or -1.
  std::int64_t find(const std::string& name) const;
  /// Uncompressed size of member `index`.
  std::uint64_t size(std::size_t index) const;
  /// Reads member `index` whole into `out` (resized). Stored members are read raw, without a
  /// CRC check (torch may write CRC 0); compressed ones are inflated and CRC-checked.
  void read(std::size_t index, std::vector<std::byte>* out) const;
  /// The bytes of a stored (uncompressed) member in place in the mapped file, or nullptr for
  /// a compressed one. Located through the central directory and the member's local header,
  /// as torch's own reader does; no copy, no CRC check (torch may write CRC 0).
  const std::byte* stored_data(std::size_t index) const;
  /// Lets the pages of a stored member leave the resident set (after stored_data()).
  void release_stored(std::size_t index) const;

 private:
  std::string path_;
  MappedFile file_;  // libzip reads from the mapping: a member read is a copy, not syscalls
  struct zip* archive_ = nullptr;
  std::vector<std::string> names_;
  std::vector<std::uint64_t> local_header_;  // offset of each member's local header
};

}  // namespace wq::detail
