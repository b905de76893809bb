#include "pipeline/input_staging.h"

#include <algorithm>
#include <string>

#include "pipeline/output_path.h"
#include "wq/error.h"

namespace wq::detail {
namespace {

// Reads of this size stay in L2 between pread() and the hash.
constexpr std::uint64_t kChunk = 1ull << 20;

}  // namespace

InputStaging::InputStaging(const CheckpointReader& reader, bool checksum, const std::atomic<bool>* cancel)
    : mapped_(reader.mapped_bytes()),
      cancel_(cancel),
      file_(mapped_.empty() ? std::string() : reader.path()),  // nothing to stage: not opened
      hashing_(checksum) {}

bool InputStaging::covers(const TensorView& view, std::uint64_t offset) const noexcept {
  if (!reads() || view.data == nullptr) return false;
  const std::byte* begin = mapped_.data();
  const std::byte* end = begin + mapped_.size();
  const std::uint64_t size = view.nbytes();
  return view.data >= begin && view.data <= end && size <= static_cast<std::uint64_t>(end - view.data) &&
         offset <= buffer_.size() && size <= buffer_.size() - offset;
}

void InputStaging::reserve(std::uint64_t bytes) { buffer_.reserve(bytes); }

TensorView InputStaging::stage(const TensorView& view, std::uint64_t offset) {
  std::byte* to = buffer_.data() + offset;
  const std::uint64_t at = static_cast<std::uint64_t>(view.data - mapped_.data());
  const std::string what = "tensor '" + std::string(view.name) + "'";
  // In chunks that stay in L2 between pread() and the hash; a chunk that continues the file
  // in order is hashed (after the bytes between: headers, tensors stored as they are).
  for (std::uint64_t done = 0; done < view.nbytes();) {
    const std::uint64_t n = std::min(kChunk, view.nbytes() - done);
    read_exact(at + done, to + done, n, what);
    if (hashing_ && at + done >= hashed_) {
      hash_up_to(at + done);
      hash_.update(to + done, n);
      hashed_ += n;
    }
    done += n;
  }
  TensorView staged = view;
  staged.data = to;
  return staged;
}

void InputStaging::read_exact(std::uint64_t offset, std::byte* to, std::uint64_t size, std::string_view what) {
  if (file_.read_at(offset, to, size, what) < size) {
    throw Error(ErrorCode::kInputMissing, file_.path() + (what.empty() ? "" : ": " + std::string(what)) +
                                              ": reading the file failed (the file got shorter)");
  }
}

void InputStaging::hash_up_to(std::uint64_t end) {
  if (hashed_ >= end) return;
  if (!scratch_) scratch_.reset(new std::byte[kChunk]);
  while (hashed_ < end) {
    if (hashed_ % (8 * kChunk) == 0) check_cancel(cancel_);
    const std::uint64_t n = std::min(kChunk, end - hashed_);
    read_exact(hashed_, scratch_.get(), n, {});
    hash_.update(scratch_.get(), n);
    hashed_ += n;
  }
}

std::string InputStaging::file_checksum() {
  hash_up_to(mapped_.size());
  return hash_.hex();
}

}  // namespace wq::detail
