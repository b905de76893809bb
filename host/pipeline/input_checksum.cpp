#include "pipeline/input_checksum.h"

#include <algorithm>

#include "io/mapped_file.h"
#include "wq/error.h"

namespace wq::detail {
namespace {

constexpr std::uint64_t kChunk = 8u << 20;  // between polls of the cancel flag

void check_interrupted(const std::atomic<bool>* cancel) {
  if (cancel != nullptr && cancel->load(std::memory_order_relaxed)) throw Error(ErrorCode::kInterrupted, "interrupted");
}

}  // namespace

std::string checksum_file(const std::string& path, const std::atomic<bool>* cancel) {
  const MappedFile file(path);
  Xxh3 hash;
  for (std::uint64_t offset = 0; offset < file.size(); offset += kChunk) {
    check_interrupted(cancel);
    const std::uint64_t length = std::min(kChunk, file.size() - offset);
    hash.update(file.data() + offset, length);
    file.release(offset, length);
  }
  return hash.hex();
}

InputChecksum::InputChecksum(const CheckpointReader& reader, const std::string& path,
                             const std::atomic<bool>* cancel)
    : bytes_(reader.mapped_bytes()), cancel_(cancel) {
  if (bytes_.empty() && reader.file_bytes() != 0) own_ = std::async(std::launch::async, checksum_file, path, cancel);
}

void InputChecksum::hash_to(const std::byte* end) {
  if (bytes_.empty() || end <= bytes_.data() || end > bytes_.data() + bytes_.size()) return;
  const auto upto = static_cast<std::uint64_t>(end - bytes_.data());
  while (done_ < upto) {
    check_interrupted(cancel_);
    const std::uint64_t length = std::min(kChunk, upto - done_);
    hash_.update(bytes_.data() + done_, length);
    done_ += length;
  }
}

std::string InputChecksum::finish() {
  if (own_.valid()) return own_.get();
  hash_to(bytes_.data() + bytes_.size());
  return hash_.hex();
}

}  // namespace wq::detail
