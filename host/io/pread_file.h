// A file read with pread(2) at explicit offsets into the caller's buffers, for passes that must
// not go through a fresh mapping (pipeline/input_staging.h says why).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace wq::detail {

class PreadFile {
 public:
  /// Opens `path` read-only for sequential reading; ok() is false when it cannot be opened
  /// (callers then read their mapping, which names the reason).
  explicit PreadFile(std::string path);
  PreadFile(const PreadFile&) = delete;
  PreadFile& operator=(const PreadFile&) = delete;
  ~PreadFile();

  bool ok() const noexcept { return fd_ >= 0; }
  const std::string& path() const noexcept { return path_; }

  /// Reads `size` bytes at `offset` into `to`, fewer only where the file ends; returns how
  /// many. Throws Error(kInputMissing) naming the file, and `what` when given ("tensor 'w'"),
  /// when the read fails.
  std::uint64_t read_at(std::uint64_t offset, std::byte* to, std::uint64_t size, std::string_view what = {}) const;

 private:
  std::string path_;
  int fd_ = -1;
};

}  // namespace wq::detail
