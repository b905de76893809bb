#include "pipeline/input_staging.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "pipeline/output_path.h"
#include "wq/error.h"

namespace wq::detail {
namespace {

// Reads of this size stay in L2 between pread() and the hash.
constexpr std::uint64_t kChunk = 1ull << 20;

}  // namespace

InputStaging::InputStaging(const CheckpointReader& reader, bool checksum, const std::atomic<bool>* cancel)
    : path_(reader.path()), mapped_(reader.mapped_bytes()), cancel_(cancel) {
  if (mapped_.empty()) return;
  fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) return;
  ::posix_fadvise(fd_, 0, 0, POSIX_FADV_SEQUENTIAL);
  hashing_ = checksum;
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
         offset <= buffer_.size() && size <= buffer_.size() - offset;
}

void InputStaging::reserve(std::uint64_t bytes) { buffer_.reserve(bytes); }

TensorView InputStaging::stage(const TensorView& view, std::uint64_t offset) {
  std::byte* to = buffer_.data() + offset;
  read(static_cast<std::uint64_t>(view.data - mapped_.data()), to, view.nbytes(), view.name);
  TensorView staged = view;
  staged.data = to;
  return staged;
}

void InputStaging::read(std::uint64_t offset, std::byte* to, std::uint64_t size, std::string_view tensor) {
  for (std::uint64_t done = 0; done < size;) {
    const std::uint64_t want = std::min(kChunk, size - done);
    std::uint64_t got = 0;
    while (got < want) {
      const ssize_t n = ::pread(fd_, to + done + got, want - got, static_cast<off_t>(offset + done + got));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        const std::string what = tensor.empty() ? std::string() : ": tensor '" + std::string(tensor) + "'";
        throw Error(ErrorCode::kInputMissing, path_ + what + ": reading the file failed (" +
                                                  (n < 0 ? std::string(std::strerror(errno)) : "the file got shorter") + ")");
      }
      got += static_cast<std::uint64_t>(n);
    }
    if (hashing_ && offset + done >= hashed_) {
      hash_up_to(offset + done);  // the bytes in between: headers, tensors stored as they are
      hash_.update(to + done, want);
      hashed_ += want;
    }
    done += want;
  }
}

void InputStaging::hash_up_to(std::uint64_t end) {
  if (hashed_ >= end) return;
  if (!scratch_) scratch_.reset(new std::byte[kChunk]);
  const bool was_hashing = hashing_;
  hashing_ = false;  // read() below must not hash the scratch buffer itself
  while (hashed_ < end) {
    if (hashed_ % (8 * kChunk) == 0) check_cancel(cancel_);
    const std::uint64_t n = std::min(kChunk, end - hashed_);
    read(hashed_, scratch_.get(), n, {});
    hash_.update(scratch_.get(), n);
    hashed_ += n;
  }
  hashing_ = was_hashing;
}

std::string InputStaging::file_checksum() {
  hash_up_to(mapped_.size());
  hashing_ = false;
  return hash_.hex();
}

}  // namespace wq::detail
