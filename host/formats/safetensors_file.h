// safetensors: a validating, memory-mapped, zero-copy reader.
//
// Stricter than the reference reader (formats.md §1): besides its rules (header length bounds,
// contiguous data offsets from 0, sizes equal to shape x dtype, no trailing bytes) it rejects
// duplicate tensor names and a header that does not start with '{'.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "formats/safetensors_header.h"
#include "io/mapped_file.h"
#include "wq/tensor.h"

namespace wq::detail {

class SafetensorsFile {
 public:
  /// Largest header the reference reader accepts (100,000,000 bytes).
  static constexpr std::uint64_t kMaxHeaderBytes = 100000000;

  /// Maps and validates `path`. Throws Error(kInputMissing) or Error(kBadFormat) naming the
  /// file and, where it applies, the tensor.
  explicit SafetensorsFile(const std::string& path);
  /// The same over a file already mapped (by open_checkpoint()'s format probe).
  explicit SafetensorsFile(MappedFile file);

  /// Whether the bytes look like the start of a safetensors file (a plausible header length
  /// followed by '{'); says nothing about validity.
  static bool sniff(const std::byte* data, std::uint64_t size);

  /// Whether the mapped file is a valid safetensors file whose header metadata has `key`
  /// ("wq": a WQ container); false for anything else. Parses through the given mapping.
  static bool has_metadata(MappedFile file, const std::string& key);

  const MappedFile& file() const noexcept { return file_; }
  const std::string& path() const noexcept { return file_.path(); }
  /// Entries in the order of their data in the file.
  const std::vector<SafetensorsEntry>& entries() const noexcept { return entries_; }
  const std::map<std::string, std::string>& metadata() const noexcept { return metadata_; }
  std::optional<std::size_t> find(const std::string& name) const;

  std::uint64_t data_start() const noexcept { return data_start_; }
  const std::byte* data(const SafetensorsEntry& entry) const {
    return file_.data() + data_start_ + entry.begin;
  }
  /// Lets an entry's pages leave the resident set.
  void release(const SafetensorsEntry& entry) const {
    file_.release(data_start_ + entry.begin, entry.bytes());
  }

 private:
  void check_layout();

  MappedFile file_;
  std::uint64_t data_start_ = 0;
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, std::size_t> index_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace wq::detail
