#include "pipeline/input_checksum.h"

#include <algorithm>
#include <cstdint>

#include "container/checksum.h"
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

InputChecksum::InputChecksum(const CheckpointReader& reader, const std::string& path, bool one_batch,
                             const std::atomic<bool>* cancel)
    : cancel_(cancel) {
  if (one_batch && (!reader.mapped_bytes().empty() || reader.file_bytes() == 0)) {
    bytes_ = reader.mapped_bytes();
  } else {
    own_ = std::async(std::launch::async, checksum_file, path, cancel);
  }
}

std::string InputChecksum::finish() {
  if (own_.valid()) return own_.get();
  Xxh3 hash;
  for (std::uint64_t offset = 0; offset < bytes_.size(); offset += kChunk) {
    check_interrupted(cancel_);
    hash.update(bytes_.data() + offset, std::min<std::uint64_t>(kChunk, bytes_.size() - offset));
  }
  return hash.hex();
}

}  // namespace wq::detail
