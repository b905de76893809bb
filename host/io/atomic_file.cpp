#include "io/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "wq/atomic_write.h"
#include "wq/error.h"

namespace wq::detail {
namespace {

std::string folder_of(const std::string& path) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  return parent.empty() ? std::string(".") : parent.string();
}

}  // namespace

AtomicFile::AtomicFile(std::string destination) : destination_(std::move(destination)) {
  const std::filesystem::path dest(destination_);
  const std::string folder = folder_of(destination_);
  // Hidden, and named after the destination, so a crash leaves an obvious leftover.
  std::string pattern = folder + "/." + dest.filename().string() + ".wq-tmp.XXXXXX";
  std::vector<char> name(pattern.begin(), pattern.end());
  name.push_back('\0');
  fd_ = ::mkostemp(name.data(), O_CLOEXEC);
  if (fd_ < 0) {
    const int err = errno;
    throw Error(ErrorCode::kOutput, destination_ + ": cannot create output in folder '" + folder +
                                        "': " + std::strerror(err));
  }
  temp_path_ = name.data();
  ::fchmod(fd_, 0644);  // mkstemp's 0600 would make outputs private to the user
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_ && !temp_path_.empty()) ::unlink(temp_path_.c_str());
}

void AtomicFile::fail(const std::string& what, int err) const {
  throw Error(ErrorCode::kOutput, destination_ + ": " + what + ": " + std::strerror(err));
}

void AtomicFile::write(const void* data, std::size_t size) {
  const auto* p = static_cast<const char*>(data);
  std::size_t left = size;
  while (left > 0) {
    const ssize_t n = ::write(fd_, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("write failed", errno);
    }
    if (n == 0) fail("write failed", ENOSPC);
    p += n;
    left -= static_cast<std::size_t>(n);
  }
  size_ += size;
}

void AtomicFile::write_at(std::uint64_t offset, const void* data, std::size_t size) {
  const auto* p = static_cast<const char*>(data);
  std::size_t done = 0;
  while (done < size) {
    const ssize_t n = ::pwrite(fd_, p + done, size - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("write failed", errno);
    }
    if (n == 0) fail("write failed", ENOSPC);
    done += static_cast<std::size_t>(n);
  }
}

void AtomicFile::start_writeback() noexcept {
  if (fd_ >= 0) ::sync_file_range(fd_, 0, 0, SYNC_FILE_RANGE_WRITE);
}

void AtomicFile::commit(bool durable) {
  if (durable && ::fsync(fd_) != 0) fail("fsync failed", errno);
  if (::close(fd_) != 0) {
    fd_ = -1;
    fail("close failed", errno);
  }
  fd_ = -1;
  if (::rename(temp_path_.c_str(), destination_.c_str()) != 0) fail("rename failed", errno);
  committed_ = true;
  if (!durable) return;
  // Make the rename itself durable.
  const int dir = ::open(folder_of(destination_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
}

}  // namespace wq::detail

namespace wq {

void write_file_atomically(const std::string& path, std::string_view bytes) {
  detail::AtomicFile file(path);
  file.write(bytes.data(), bytes.size());
  file.commit();
}

}  // namespace wq
