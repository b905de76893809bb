// Reading members of a zip archive (libzip), as torch .pt files and numpy .npz files are.
//
// The archive comes from the internet, so every size it claims is checked before memory is
// sized by it: a member is read only when its method can produce what it claims from the
// compressed bytes it has (docs/input-limits.md), and the buffer grows with the bytes that
// actually arrive. Stored members are used in place in the mapping; where each one starts is
// taken from the central directory and the member's local header, and both must agree with
// what libzip itself read.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/mapped_file.h"

struct zip;

namespace wq::detail {

/// What the central directory says about one member (as libzip read it).
struct ZipMember {
  std::string name;
  std::uint64_t size = 0;             ///< uncompressed bytes, as claimed
  std::uint64_t compressed_size = 0;  ///< bytes in the file
  bool stored = false;                ///< method 0: the bytes are in the file as they are
  bool deflated = false;              ///< method 8
  bool encrypted = false;
  bool has_crc = false;
  std::uint32_t crc = 0;
};

class ZipReader {
 public:
  /// Largest uncompressed / compressed ratio deflate can reach (1032:1, zlib's technical
  /// details); a member claiming more is refused before anything is allocated.
  static constexpr std::uint64_t kMaxDeflateRatio = 1032;

  /// Opens the archive; throws Error(kBadFormat) naming `path` when it is not a readable zip
  /// (zip64 included). `check_consistency`: libzip's ZIP_CHECKCONS (local headers against the
  /// central directory, duplicate names), as numpy's own reader would refuse such files.
  explicit ZipReader(const std::string& path, bool check_consistency = false);
  ~ZipReader();
  ZipReader(const ZipReader&) = delete;
  ZipReader& operator=(const ZipReader&) = delete;

  const std::string& path() const noexcept { return path_; }
  std::uint64_t file_size() const noexcept { return file_.size(); }
  /// Member names in archive order.
  const std::vector<std::string>& names() const noexcept { return names_; }
  /// Member `index` (< names().size()).
  const ZipMember& member(std::size_t index) const { return members_.at(index); }
  /// Index of a member, or -1.
  std::int64_t find(const std::string& name) const;
  /// Uncompressed size of member `index`.
  std::uint64_t size(std::size_t index) const { return member(index).size; }
  /// Reads the first min(`limit`, size) bytes of member `index` into `out` (resized).
  /// Members other than stored and deflated ones are Error(kUnsupported); a size the method
  /// cannot produce, or data that ends early, Error(kBadFormat). `verify_crc`: read a whole
  /// member to its end through libzip, which then checks its CRC-32 (torch may write CRC 0,
  /// so its stored records are read raw, unchecked).
  void read(std::size_t index, std::vector<std::byte>* out, bool verify_crc,
            std::uint64_t limit = UINT64_MAX) const;
  /// The bytes of a stored (uncompressed) member in place in the mapped file, or nullptr for
  /// a compressed one. Located through the central directory and the member's local header,
  /// as torch's own reader does; no copy, no CRC check (torch may write CRC 0).
  const std::byte* stored_data(std::size_t index) const;
  /// Lets the pages of a stored member leave the resident set (after stored_data()).
  void release_stored(std::size_t index) const;

 private:
  std::string member_label(std::size_t index) const;

  std::string path_;
  MappedFile file_;  // libzip reads from the mapping: a member read is a copy, not syscalls
  struct zip* archive_ = nullptr;
  std::vector<std::string> names_;
  std::vector<ZipMember> members_;
  std::vector<std::uint64_t> data_start_;  // where each member's bytes start in the file
};

}  // namespace wq::detail
