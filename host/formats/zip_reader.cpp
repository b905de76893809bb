#include "formats/zip_reader.h"

#include <zip.h>

#include <algorithm>

#include "core/checked_math.h"
#include "wq/error.h"

namespace wq::detail {
namespace {

constexpr std::uint32_t kCentralSignature = 0x02014b50u;
constexpr std::uint32_t kLocalSignature = 0x04034b50u;
constexpr std::uint32_t kEndSignature = 0x06054b50u;
constexpr std::uint32_t kEnd64Signature = 0x06064b50u;
constexpr std::uint32_t kEnd64LocatorSignature = 0x07064b50u;
constexpr std::uint64_t kCentralBytes = 46, kLocalBytes = 30, kEndBytes = 22, kEnd64Bytes = 56, kLocatorBytes = 20;

std::uint64_t le(const std::byte* p, int n) {
  std::uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<std::uint8_t>(p[i]);
  return v;
}

std::string libzip_message(zip_error_t* error) {
  if (zip_error_code_zip(error) == ZIP_ER_EXISTS) return "two members have the same name";  // ZIP_CHECKCONS
  return zip_error_strerror(error);
}

// Where the central directory starts: from the end record (the last one within the 64 KiB a
// comment may take), or the zip64 end record when the 32-bit field says to look there. Every
// offset is checked against the file before it is read.
std::uint64_t central_directory(const std::byte* d, std::uint64_t size, const std::string& path) {
  const auto bad = [&](const char* what) { return Error(ErrorCode::kBadFormat, path + ": " + what); };
  if (size < kEndBytes) throw bad("zip archive too short");
  std::uint64_t eocd = size - kEndBytes;
  while (le(d + eocd, 4) != kEndSignature) {
    if (eocd == 0 || size - eocd > kEndBytes + 65535) throw bad("zip end record not found");
    --eocd;
  }
  std::uint64_t cd = le(d + eocd + 16, 4);
  if (cd == 0xffffffffu && eocd >= kLocatorBytes && le(d + eocd - kLocatorBytes, 4) == kEnd64LocatorSignature) {
    const std::uint64_t z64 = le(d + eocd - kLocatorBytes + 8, 8);
    if (!range_within(z64, kEnd64Bytes, size) || le(d + z64, 4) != kEnd64Signature) {
      throw bad("zip64 end record is malformed");
    }
    cd = le(d + z64 + 48, 8);
  }
  return cd;
}

}  // namespace

ZipReader::ZipReader(const std::string& path, bool check_consistency) : path_(path), file_(path) {
  zip_error_t error;
  zip_error_init(&error);
  zip_source_t* source = zip_source_buffer_create(file_.data(), file_.size(), 0, &error);
  if (source != nullptr) {
    archive_ = zip_open_from_source(source, ZIP_RDONLY | (check_consistency ? ZIP_CHECKCONS : 0), &error);
    if (archive_ == nullptr) zip_source_free(source);
  }
  if (archive_ == nullptr) {
    const std::string what = libzip_message(&error);
    zip_error_fini(&error);
    throw Error(ErrorCode::kBadFormat, path + ": not a readable zip archive: " + what);
  }
  zip_error_fini(&error);
  // From here the destructor does not run if the constructor throws: free the archive.
  try {
    const zip_int64_t count = zip_get_num_entries(archive_, 0);
    const std::byte* d = file_.data();
    const std::uint64_t size = file_.size();
    const auto bad = [&](std::size_t i, const std::string& what) {
      return Error(ErrorCode::kBadFormat, path + ": zip member #" + std::to_string(i) + ": " + what);
    };
    std::uint64_t p = central_directory(d, size, path);
    for (zip_int64_t k = 0; k < count; ++k) {
      const auto i = static_cast<std::size_t>(k);
      zip_stat_t st;
      zip_stat_init(&st);
      const char* raw_name = zip_get_name(archive_, static_cast<zip_uint64_t>(k), ZIP_FL_ENC_RAW);
      if (raw_name == nullptr || zip_stat_index(archive_, static_cast<zip_uint64_t>(k), 0, &st) != 0 ||
          !(st.valid & ZIP_STAT_SIZE) || !(st.valid & ZIP_STAT_COMP_SIZE) || !(st.valid & ZIP_STAT_COMP_METHOD)) {
        throw bad(i, std::string("unreadable entry: ") + zip_strerror(archive_));
      }
      ZipMember m;
      const char* name = zip_get_name(archive_, static_cast<zip_uint64_t>(k), 0);
      m.name = name != nullptr ? name : "";
      m.size = st.size;
      m.compressed_size = st.comp_size;
      m.stored = st.comp_method == ZIP_CM_STORE;
      m.deflated = st.comp_method == ZIP_CM_DEFLATE;
      m.encrypted = (st.valid & ZIP_STAT_ENCRYPTION_METHOD) && st.encryption_method != ZIP_EM_NONE;
      m.has_crc = (st.valid & ZIP_STAT_CRC) != 0;
      m.crc = st.crc;
      if (m.stored && m.size != m.compressed_size) throw bad(i, "a stored member whose sizes differ");

      // The central directory entry: the same name as libzip's, then where the local header is.
      if (!range_within(p, kCentralBytes, size) || le(d + p, 4) != kCentralSignature) {
        throw bad(i, "central directory is malformed");
      }
      const std::uint64_t name_len = le(d + p + 28, 2), extra_len = le(d + p + 30, 2), comment_len = le(d + p + 32, 2);
      const std::uint64_t name_at = p + kCentralBytes;  // <= size
      if (!range_within(name_at, name_len + extra_len + comment_len, size)) throw bad(i, "central directory is truncated");
      const std::string_view cd_name(reinterpret_cast<const char*>(d + name_at), name_len);
      if (cd_name != raw_name) {
        // Two readings of one archive (a second end record, a fake zip64 record): refuse it
        // rather than read other bytes than libzip does.
        throw bad(i, "the central directory is ambiguous (libzip finds another member here)");
      }
      std::uint64_t header = le(d + p + 42, 4);
      if (header == 0xffffffffu) {  // the real value is in the zip64 extra field
        const bool sizes_there[2] = {le(d + p + 24, 4) == 0xffffffffu, le(d + p + 20, 4) == 0xffffffffu};
        const std::uint64_t skip = 8 * (sizes_there[0] + sizes_there[1]);
        bool found = false;
        for (std::uint64_t e = name_at + name_len, end = e + extra_len; end - e >= 4;) {
          const std::uint64_t id = le(d + e, 2), len = le(d + e + 2, 2);
          if (len > end - e - 4) break;
          if (id == 1) {
            if (skip + 8 > len) throw bad(i, "zip64 extra field is malformed");
            header = le(d + e + 4 + skip, 8);
            found = true;
            break;
          }
          e += 4 + len;
        }
        if (!found) throw bad(i, "zip64 extra field is missing");
      }
      p = name_at + name_len + extra_len + comment_len;

      // The local header: the same name again; the member's bytes follow its extra field
      // (torch pads that field to align the data).
      if (!range_within(header, kLocalBytes, size) || le(d + header, 4) != kLocalSignature) {
        throw bad(i, "'" + m.name + "' has no local header");
      }
      const std::uint64_t local_name = le(d + header + 26, 2), local_extra = le(d + header + 28, 2);
      const std::uint64_t start = header + kLocalBytes + local_name + local_extra;  // < 2^64: header < size
      if (start > size || std::string_view(reinterpret_cast<const char*>(d + header + kLocalBytes),
                                           std::min<std::uint64_t>(local_name, size - header - kLocalBytes)) != cd_name) {
        throw bad(i, "'" + m.name + "': its local header names another member");
      }
      if (!range_within(start, m.compressed_size, size)) {
        throw bad(i, "'" + m.name + "' runs past the end of the file (truncated?)");
      }
      names_.push_back(m.name);
      members_.push_back(std::move(m));
      data_start_.push_back(start);
    }
  } catch (...) {
    zip_discard(archive_);
    throw;
  }
}

ZipReader::~ZipReader() {
  if (archive_ != nullptr) zip_discard(archive_);
}

std::string ZipReader::member_label(std::size_t index) const { return path_ + ": member '" + names_.at(index) + "'"; }

std::int64_t ZipReader::find(const std::string& name) const {
  return zip_name_locate(archive_, name.c_str(), 0);
}

const std::byte* ZipReader::stored_data(std::size_t index) const {
  return member(index).stored ? file_.data() + data_start_[index] : nullptr;
}

void ZipReader::release_stored(std::size_t index) const {
  if (member(index).stored) file_.release(data_start_[index], member(index).size);
}

void ZipReader::read(std::size_t index, std::vector<std::byte>* out, bool verify_crc, std::uint64_t limit) const {
  const ZipMember& m = member(index);
  const std::string where = member_label(index);
  if (m.encrypted) throw Error(ErrorCode::kUnsupported, where + " is encrypted");
  if (!m.stored && !m.deflated) {
    throw Error(ErrorCode::kUnsupported, where + " is compressed with a method other than deflate "
                                                 "(torch and numpy write only stored and deflated members)");
  }
  if (m.deflated && m.size / kMaxDeflateRatio > m.compressed_size) {
    throw Error(ErrorCode::kBadFormat, where + " claims " + std::to_string(m.size) + " bytes from " +
                                           std::to_string(m.compressed_size) +
                                           " compressed bytes, more than deflate can produce");
  }
  const std::uint64_t want = std::min(limit, m.size);
  zip_file_t* file = zip_fopen_index(archive_, index, m.stored && !verify_crc ? ZIP_FL_COMPRESSED : 0);
  if (file == nullptr) throw Error(ErrorCode::kBadFormat, where + ": cannot open: " + zip_strerror(archive_));
  // The buffer grows with the bytes that arrive (doubling), not with the size claimed.
  const std::uint64_t first = std::min<std::uint64_t>(want, std::max<std::uint64_t>(m.compressed_size, 1u << 20));
  out->resize(first);
  std::uint64_t done = 0;
  std::string failure;
  while (done < want) {
    if (done == out->size()) out->resize(std::min(want, 2 * done));
    const zip_int64_t n = zip_fread(file, out->data() + done, out->size() - done);
    if (n <= 0) {
      failure = n < 0 ? std::string("corrupt data: ") + zip_file_strerror(file)
                      : "truncated: ends after " + std::to_string(done) + " of " + std::to_string(want) + " bytes";
      break;
    }
    done += static_cast<std::uint64_t>(n);
  }
  if (failure.empty() && verify_crc && want == m.size) {
    // One more read must hit the end: that is when libzip checks the CRC and the size.
    std::byte extra;
    const zip_int64_t n = zip_fread(file, &extra, 1);
    if (n < 0) failure = std::string("corrupt data: ") + zip_file_strerror(file);
    if (n > 0) failure = "holds more data than its size says";
  }
  zip_fclose(file);
  if (!failure.empty()) {
    out->clear();
    throw Error(ErrorCode::kBadFormat, where + ": " + failure);
  }
}

}  // namespace wq::detail
