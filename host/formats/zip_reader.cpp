#include "formats/zip_reader.h"

#include <zip.h>

#include "wq/error.h"

namespace wq::detail {
namespace {

std::uint64_t le(const std::byte* p, int n) {
  std::uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<std::uint8_t>(p[i]);
  return v;
}

// Local-header offsets of every member, from the central directory (zip64 aware). libzip has
// already validated the archive; this only finds where each member starts.
std::vector<std::uint64_t> local_header_offsets(const std::byte* d, std::uint64_t size, std::size_t members,
                                                const std::string& path) {
  const auto bad = [&](const char* what) { return Error(ErrorCode::kBadFormat, path + ": " + what); };
  if (size < 22) throw bad("zip archive too short");
  std::uint64_t eocd = size - 22;  // the end record is followed by a comment of up to 64 KiB
  while (le(d + eocd, 4) != 0x06054b50u) {
    if (eocd == 0 || size - eocd > 22 + 65535) throw bad("zip end record not found");
    --eocd;
  }
  std::uint64_t cd = le(d + eocd + 16, 4);
  if (cd == 0xffffffffu && eocd >= 20 && le(d + eocd - 20, 4) == 0x07064b50u) {
    const std::uint64_t z64 = le(d + eocd - 20 + 8, 8);
    if (z64 + 56 > size || le(d + z64, 4) != 0x06064b50u) throw bad("zip64 end record is malformed");
    cd = le(d + z64 + 48, 8);
  }
  std::vector<std::uint64_t> offsets;
  std::uint64_t p = cd;
  for (std::size_t i = 0; i < members; ++i) {
    if (p + 46 > size || le(d + p, 4) != 0x02014b50u) throw bad("zip central directory is malformed");
    const std::uint64_t name = le(d + p + 28, 2), extra = le(d + p + 30, 2), comment = le(d + p + 32, 2);
    std::uint64_t offset = le(d + p + 42, 4);
    if (offset == 0xffffffffu) {  // the real value is in the zip64 extra field
      const bool sizes_there[2] = {le(d + p + 24, 4) == 0xffffffffu, le(d + p + 20, 4) == 0xffffffffu};
      for (std::uint64_t e = p + 46 + name; e + 4 <= p + 46 + name + extra && e + 4 <= size;) {
        const std::uint64_t id = le(d + e, 2), len = le(d + e + 2, 2);
        if (id == 1) {
          const std::uint64_t skip = 8 * (sizes_there[0] + sizes_there[1]);
          if (skip + 8 > len || e + 4 + skip + 8 > size) throw bad("zip64 extra field is malformed");
          offset = le(d + e + 4 + skip, 8);
          break;
        }
        e += 4 + len;
      }
    }
    offsets.push_back(offset);
    p += 46 + name + extra + comment;
  }
  return offsets;
}

}  // namespace

ZipReader::ZipReader(const std::string& path) : path_(path), file_(path) {
  zip_error_t error;
  zip_error_init(&error);
  zip_source_t* source = zip_source_buffer_create(file_.data(), file_.size(), 0, &error);
  if (source != nullptr) {
    archive_ = zip_open_from_source(source, ZIP_RDONLY, &error);
    if (archive_ == nullptr) zip_source_free(source);
  }
  if (archive_ == nullptr) {
    const std::string what = zip_error_strerror(&error);
    zip_error_fini(&error);
    throw Error(ErrorCode::kBadFormat, path + ": not a readable zip archive: " + what);
  }
  zip_error_fini(&error);
  const zip_int64_t count = zip_get_num_entries(archive_, 0);
  for (zip_int64_t i = 0; i < count; ++i) {
    const char* name = zip_get_name(archive_, static_cast<zip_uint64_t>(i), 0);
    names_.push_back(name != nullptr ? name : "");
  }
  local_header_ = local_header_offsets(file_.data(), file_.size(), names_.size(), path);
}

ZipReader::~ZipReader() {
  if (archive_ != nullptr) zip_discard(archive_);
}

std::int64_t ZipReader::find(const std::string& name) const {
  return zip_name_locate(archive_, name.c_str(), 0);
}

std::uint64_t ZipReader::size(std::size_t index) const {
  zip_stat_t st;
  if (zip_stat_index(archive_, index, 0, &st) != 0 || !(st.valid & ZIP_STAT_SIZE)) {
    throw Error(ErrorCode::kBadFormat, path_ + ": member '" + names_.at(index) + "' has no readable size");
  }
  return st.size;
}

const std::byte* ZipReader::stored_data(std::size_t index) const {
  zip_stat_t st;
  if (zip_stat_index(archive_, index, 0, &st) != 0 || !(st.valid & ZIP_STAT_COMP_METHOD) ||
      st.comp_method != ZIP_CM_STORE || !(st.valid & ZIP_STAT_SIZE)) {
    return nullptr;
  }
  const std::uint64_t header = local_header_.at(index);
  const std::byte* d = file_.data();
  if (header + 30 > file_.size() || le(d + header, 4) != 0x04034b50u) {
    throw Error(ErrorCode::kBadFormat, path_ + ": member '" + names_[index] + "' has no local header");
  }
  // The local header's own name and extra lengths (torch pads the extra field to align data).
  const std::uint64_t start = header + 30 + le(d + header + 26, 2) + le(d + header + 28, 2);
  if (start > file_.size() || st.size > file_.size() - start) {
    throw Error(ErrorCode::kBadFormat, path_ + ": member '" + names_[index] + "' runs past the end (truncated?)");
  }
  return d + start;
}

void ZipReader::release_stored(std::size_t index) const {
  if (const std::byte* data = stored_data(index)) file_.release(static_cast<std::uint64_t>(data - file_.data()), size(index));
}

void ZipReader::read(std::size_t index, std::vector<std::byte>* out) const {
  zip_stat_t st;
  const std::string& name = names_.at(index);
  if (zip_stat_index(archive_, index, 0, &st) != 0) {
    throw Error(ErrorCode::kBadFormat, path_ + ": cannot read member '" + name + "'");
  }
  const bool stored = (st.valid & ZIP_STAT_COMP_METHOD) && st.comp_method == ZIP_CM_STORE;
  zip_file_t* file = zip_fopen_index(archive_, index, stored ? ZIP_FL_COMPRESSED : 0);
  if (file == nullptr) {
    throw Error(ErrorCode::kBadFormat, path_ + ": cannot open member '" + name + "': " + zip_strerror(archive_));
  }
  out->resize(st.size);
  std::uint64_t done = 0;
  while (done < st.size) {
    const zip_int64_t n = zip_fread(file, out->data() + done, st.size - done);
    if (n <= 0) {
      const std::string what = n < 0 ? zip_file_strerror(file) : "member is truncated";
      zip_fclose(file);
      throw Error(ErrorCode::kBadFormat, path_ + ": cannot read member '" + name + "': " + what);
    }
    done += static_cast<std::uint64_t>(n);
  }
  zip_fclose(file);
}

}  // namespace wq::detail
