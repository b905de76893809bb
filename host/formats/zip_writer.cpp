#include "formats/zip_writer.h"

#include <zlib.h>

#include "wq/error.h"

namespace wq::detail {
namespace {

constexpr std::uint32_t kLocalSig = 0x04034b50;
constexpr std::uint32_t kCentralSig = 0x02014b50;
constexpr std::uint32_t kEnd64Sig = 0x06064b50;
constexpr std::uint32_t kLocator64Sig = 0x07064b50;
constexpr std::uint32_t kEndSig = 0x06054b50;
constexpr std::uint16_t kFlagUtf8 = 0x0800;
constexpr std::uint16_t kDosDate1980 = (0 << 9) | (1 << 5) | 1;  // 1980-01-01: reproducible output
constexpr std::uint16_t kMadeByUnix = (3 << 8) | 45;
constexpr std::uint32_t kUnixFileMode = 0100644u << 16;
constexpr std::uint64_t kMax32 = 0xFFFFFFFFu;
constexpr std::uint64_t kLocalHeaderBytes = 30;

// Little-endian record building.
class Bytes {
 public:
  Bytes& u16(std::uint64_t v) { return put(v, 2); }
  Bytes& u32(std::uint64_t v) { return put(v, 4); }
  Bytes& u64(std::uint64_t v) { return put(v, 8); }
  Bytes& raw(const std::string& s) {
    data_ += s;
    return *this;
  }
  const std::string& str() const { return data_; }
  std::size_t size() const { return data_.size(); }

 private:
  Bytes& put(std::uint64_t v, int n) {
    for (int i = 0; i < n; ++i) data_ += static_cast<char>((v >> (8 * i)) & 0xFF);
    return *this;
  }
  std::string data_;
};

std::uint16_t version_needed(bool zip64) { return zip64 ? 45 : 20; }

}  // namespace

ZipWriter::ZipWriter(AtomicFile& out, std::uint64_t alignment) : out_(out), alignment_(alignment) {}

void ZipWriter::begin_entry(const std::string& name, std::uint64_t size) {
  if (open_) end_entry();
  if (name.empty() || name.size() > 0xFFFF) {
    throw Error(ErrorCode::kUnsupported, out_.destination() + ": zip entry name of " +
                                             std::to_string(name.size()) + " bytes cannot be stored");
  }
  Entry e{name, size, out_.size(), 0};
  const bool zip64 = size >= kMax32;
  Bytes extra;
  if (zip64) extra.u16(0x0001).u16(16).u64(size).u64(size);
  if (alignment_ > 1) {
    const std::uint64_t data_at = e.offset + kLocalHeaderBytes + name.size() + extra.size();
    std::uint64_t pad = (alignment_ - data_at % alignment_) % alignment_;
    if (pad > 0 && pad < 4) pad += alignment_;  // the block's own id and length take 4 bytes
    if (pad > 0) extra.u16(0x4246).u16(pad - 4).raw(std::string(pad - 4, 'Z'));  // "FB"
  }
  if (extra.size() > 0xFFFF) {
    throw Error(ErrorCode::kInternal, out_.destination() + ": zip alignment too large");
  }
  Bytes local;
  local.u32(kLocalSig).u16(version_needed(zip64)).u16(kFlagUtf8).u16(0 /* stored */)
      .u16(0).u16(kDosDate1980).u32(0 /* CRC, patched in end_entry */)
      .u32(zip64 ? kMax32 : size).u32(zip64 ? kMax32 : size)
      .u16(name.size()).u16(extra.size()).raw(name).raw(extra.str());
  out_.write(local.str().data(), local.size());
  entries_.push_back(std::move(e));
  open_ = true;
  written_ = 0;
  crc_ = static_cast<std::uint32_t>(crc32_z(0, nullptr, 0));
}

void ZipWriter::write(const void* data, std::size_t size) {
  if (!open_ || written_ + size > entries_.back().size) {
    throw Error(ErrorCode::kInternal, out_.destination() + ": more zip entry data than declared");
  }
  if (size == 0) return;
  out_.write(data, size);
  crc_ = static_cast<std::uint32_t>(crc32_z(crc_, static_cast<const Bytef*>(data), size));
  written_ += size;
}

void ZipWriter::end_entry() {
  Entry& e = entries_.back();
  if (written_ != e.size) {
    throw Error(ErrorCode::kInternal, out_.destination() + ": zip entry '" + e.name + "' got " +
                                          std::to_string(written_) + " of its " + std::to_string(e.size) + " bytes");
  }
  e.crc = crc_;
  Bytes crc;
  crc.u32(e.crc);
  out_.write_at(e.offset + 14, crc.str().data(), crc.size());
  open_ = false;
}

void ZipWriter::finish() {
  if (open_) end_entry();
  const std::uint64_t cd_offset = out_.size();
  for (const Entry& e : entries_) {
    const bool big_size = e.size >= kMax32;
    const bool big_offset = e.offset >= kMax32;
    Bytes extra;
    if (big_size || big_offset) {
      extra.u16(0x0001).u16((big_size ? 16 : 0) + (big_offset ? 8 : 0));
      if (big_size) extra.u64(e.size).u64(e.size);
      if (big_offset) extra.u64(e.offset);
    }
    // The version needed must not be below the local header's (libzip checks).
    Bytes central;
    central.u32(kCentralSig).u16(kMadeByUnix).u16(version_needed(big_size || big_offset)).u16(kFlagUtf8)
        .u16(0).u16(0).u16(kDosDate1980).u32(e.crc)
        .u32(big_size ? kMax32 : e.size).u32(big_size ? kMax32 : e.size)
        .u16(e.name.size()).u16(extra.size()).u16(0 /* comment */).u16(0 /* disk */)
        .u16(0 /* internal attributes */).u32(kUnixFileMode).u32(big_offset ? kMax32 : e.offset)
        .raw(e.name).raw(extra.str());
    out_.write(central.str().data(), central.size());
  }
  const std::uint64_t cd_size = out_.size() - cd_offset;
  const std::uint64_t end64_offset = out_.size();
  const std::uint64_t n = entries_.size();
  Bytes tail;
  // An empty archive must start with the classic end record's "PK\5\6": numpy tells zips
  // from pickles by their first four bytes.
  if (n > 0) {
    tail.u32(kEnd64Sig).u64(44).u16(kMadeByUnix).u16(45).u32(0).u32(0).u64(n).u64(n).u64(cd_size).u64(cd_offset);
    tail.u32(kLocator64Sig).u32(0).u64(end64_offset).u32(1);
  }
  // The classic record keeps the real values where they fit, so readers without zip64 agree.
  tail.u32(kEndSig).u16(0).u16(0).u16(n >= 0xFFFF ? 0xFFFF : n).u16(n >= 0xFFFF ? 0xFFFF : n)
      .u32(cd_size >= kMax32 ? kMax32 : cd_size).u32(cd_offset >= kMax32 ? kMax32 : cd_offset).u16(0);
  out_.write(tail.str().data(), tail.size());
}

}  // namespace wq::detail
