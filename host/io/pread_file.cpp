#include "io/pread_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "wq/error.h"

namespace wq::detail {

PreadFile::PreadFile(std::string path) : path_(std::move(path)) {
  fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ >= 0) ::posix_fadvise(fd_, 0, 0, POSIX_FADV_SEQUENTIAL);
}

PreadFile::~PreadFile() {
  if (fd_ >= 0) ::close(fd_);
}

std::uint64_t PreadFile::read_at(std::uint64_t offset, std::byte* to, std::uint64_t size, std::string_view what) const {
  std::uint64_t got = 0;
  while (got < size) {
    const ssize_t n = ::pread(fd_, to + got, size - got, static_cast<off_t>(offset + got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      throw Error(ErrorCode::kInputMissing, path_ + (what.empty() ? "" : ": " + std::string(what)) +
                                                ": reading the file failed: " + std::strerror(errno));
    }
    if (n == 0) break;  // the end of the file
    got += static_cast<std::uint64_t>(n);
  }
  return got;
}

}  // namespace wq::detail
