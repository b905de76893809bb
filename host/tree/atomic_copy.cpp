#include "tree/atomic_copy.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "container/checksum.h"
#include "io/atomic_file.h"
#include "wq/error.h"

namespace wq::detail {
namespace {

// Closes the input however the copy ends.
struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

std::string copy_file_atomically(const std::string& input, const std::string& output, const std::atomic<bool>* cancel) {
  const Fd in{::open(input.c_str(), O_RDONLY | O_CLOEXEC)};
  if (in.fd < 0) throw Error(ErrorCode::kInputMissing, input + ": cannot read: " + std::strerror(errno));
  detail::AtomicFile out(output);
  detail::Xxh3 hash;
  std::vector<char> buffer(1u << 20);
  for (;;) {
    if (cancel != nullptr && cancel->load()) throw Error(ErrorCode::kInterrupted, output + ": interrupted");
    const ssize_t n = ::read(in.fd, buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw Error(ErrorCode::kInputMissing, input + ": read failed: " + std::strerror(errno));
    if (n == 0) break;
    hash.update(buffer.data(), static_cast<std::size_t>(n));
    out.write(buffer.data(), static_cast<std::size_t>(n));
  }
  out.commit();
  return hash.hex();
}

}  // namespace wq::detail
