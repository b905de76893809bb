#include "formats/zip_reader.h"

#include <zip.h>

#include "wq/error.h"

namespace wq::detail {

ZipReader::ZipReader(const std::string& path) : path_(path) {
  int err = 0;
  archive_ = zip_open(path.c_str(), ZIP_RDONLY, &err);
  if (archive_ == nullptr) {
    zip_error_t error;
    zip_error_init_with_code(&error, err);
    const std::string what = zip_error_strerror(&error);
    zip_error_fini(&error);
    throw Error(ErrorCode::kBadFormat, path + ": not a readable zip archive: " + what);
  }
  const zip_int64_t count = zip_get_num_entries(archive_, 0);
  for (zip_int64_t i = 0; i < count; ++i) {
    const char* name = zip_get_name(archive_, static_cast<zip_uint64_t>(i), 0);
    names_.push_back(name != nullptr ? name : "");
  }
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
