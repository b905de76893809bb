#include "pipeline/input_checksum.h"

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>

#include "container/checksum.h"
#include "io/mapped_file.h"
#include "io/pread_file.h"
#include "pipeline/output_path.h"

namespace wq::detail {
namespace {

// XXH3 of [data, data + size) in chunks, polling `cancel` between them; `file`, when given,
// gets each chunk's pages back once hashed.
std::string checksum_chunks(const std::byte* data, std::uint64_t size, const std::atomic<bool>* cancel,
                            const MappedFile* file) {
  constexpr std::uint64_t kChunk = 8u << 20;
  Xxh3 hash;
  for (std::uint64_t offset = 0; offset < size; offset += kChunk) {
    check_cancel(cancel);
    const std::uint64_t length = std::min(kChunk, size - offset);
    hash.update(data + offset, length);
    if (file != nullptr) file->release(offset, length);
  }
  return hash.hex();
}

}  // namespace

// A small file through a mapping, not read(): no copy of every byte into a buffer first (on
// 1,000 files of 1 MiB the copy was a tenth of the run). Pages are handed back as they are
// hashed, so a large input does not grow the resident set. A large file with pread() into one
// buffer: a first pass over freshly mapped pages ran at a third of pread()'s speed on the
// cloud VM of bench/RESULTS.md (input_staging.h), and the hash was 14 % of an export's CPU.
std::string checksum_file(const std::string& path, const std::atomic<bool>* cancel) {
  constexpr std::uint64_t kReadAbove = 64ull << 20;
  std::error_code ec;
  const std::uintmax_t size = std::filesystem::file_size(path, ec);
  std::optional<PreadFile> file;
  if (!ec && size > kReadAbove) file.emplace(path);
  if (!file || !file->ok()) {  // small, or not openable: the mapping (which names the reason)
    const MappedFile mapped(path);
    return checksum_chunks(mapped.data(), mapped.size(), cancel, &mapped);
  }
  constexpr std::uint64_t kBuffer = 1ull << 20;  // stays in L2 between the read and the hash
  const std::unique_ptr<std::byte[]> buffer(new std::byte[kBuffer]);
  Xxh3 hash;
  for (std::uint64_t offset = 0;;) {
    if (offset % (8 * kBuffer) == 0) check_cancel(cancel);
    const std::uint64_t n = file->read_at(offset, buffer.get(), kBuffer);
    if (n == 0) break;
    hash.update(buffer.get(), n);
    offset += n;
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
  return checksum_chunks(bytes_.data(), bytes_.size(), cancel_, nullptr);
}

}  // namespace wq::detail
