#include "pipeline/input_staging.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "wq/error.h"

namespace wq::detail {

InputStaging::InputStaging(const CheckpointReader& reader) : path_(reader.path()), mapped_(reader.mapped_bytes()) {
  if (mapped_.empty()) return;
  fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ >= 0) ::posix_fadvise(fd_, 0, 0, POSIX_FADV_SEQUENTIAL);
}

InputStaging::~InputStaging() {
  if (fd_ >= 0) ::close(fd_);
}

bool InputStaging::covers(const TensorView& view, std::uint64_t offset) const noexcept {
  if (fd_ < 0 || view.data == nullptr) return false;
  const std::byte* begin = mapped_.data();
  const std::byte* end = begin + mapped_.size();
  const std::uint64_t size = view.nbytes();
  return view.data >= begin && view.data <= end && size <= static_cast<std::uint64_t>(end - view.data) &&
         offset <= capacity_ && size <= capacity_ - offset;
}

void InputStaging::reserve(std::uint64_t bytes) {
  if (bytes <= capacity_) return;
  buffer_.reset(new std::byte[bytes]);
  capacity_ = bytes;
}

TensorView InputStaging::stage(const TensorView& view, std::uint64_t offset) {
  const std::uint64_t size = view.nbytes();
  std::uint64_t file_offset = static_cast<std::uint64_t>(view.data - mapped_.data());
  std::byte* to = buffer_.get() + offset;
  for (std::uint64_t done = 0; done < size;) {
    const ssize_t n = ::pread(fd_, to + done, size - done, static_cast<off_t>(file_offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      throw Error(ErrorCode::kInputMissing, path_ + ": tensor '" + std::string(view.name) + "': reading its data failed (" +
                                           (n < 0 ? std::string(std::strerror(errno)) : std::string("the file got shorter")) + ")");
    }
    done += static_cast<std::uint64_t>(n);
  }
  TensorView staged = view;
  staged.data = to;
  return staged;
}

}  // namespace wq::detail
