#include "formats/numpy_reader.h"

#include <zip.h>
#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <set>
#include <vector>

#include "formats/npy_format.h"
#include "formats/zip_reader.h"
#include "io/mapped_file.h"
#include "wq/error.h"

namespace wq::detail {
namespace {

using Buffer = std::vector<std::byte>;

[[noreturn]] void out_of_range(const std::string& path, std::size_t index) {
  throw Error(ErrorCode::kInternal, path + ": no tensor #" + std::to_string(index));
}

// ---- .npy ------------------------------------------------------------------------------------

class NpyCheckpoint final : public CheckpointReader {
 public:
  explicit NpyCheckpoint(const std::string& path) : file_(path) {
    header_ = parse_npy_header(file_.data(), file_.size(), path);
    const std::uint64_t want = header_.data_offset + header_.data_bytes;
    if (file_.size() < want) {
      throw Error(ErrorCode::kBadFormat, path + ": invalid .npy data: truncated: the header declares " +
                                             std::to_string(header_.data_bytes) + " data bytes, the file holds " +
                                             std::to_string(file_.size() - header_.data_offset));
    }
    if (file_.size() > want) {
      // np.save never writes more; trailing bytes mean a damaged or disguised file.
      throw Error(ErrorCode::kBadFormat, path + ": invalid .npy data: " + std::to_string(file_.size() - want) +
                                             " bytes follow the array data");
    }
    tensors_.push_back(TensorInfo{std::filesystem::path(path).stem().string(), header_.dtype, header_.shape});
  }

  const std::string& path() const noexcept override { return file_.path(); }
  const std::string& format() const noexcept override { return format_; }
  std::uint64_t file_bytes() const noexcept override { return file_.size(); }
  std::span<const std::byte> mapped_bytes() const noexcept override { return {file_.data(), file_.size()}; }
  const std::vector<TensorInfo>& tensors() const noexcept override { return tensors_; }

  TensorView tensor(std::size_t index) override {
    if (index != 0) out_of_range(path(), index);
    const std::byte* stored = file_.data() + header_.data_offset;
    const TensorInfo& t = tensors_[0];
    if (header_.is_native()) return TensorView{t.name, t.dtype, t.shape, stored};
    if (owned_.size() != header_.data_bytes) {
      owned_.resize(header_.data_bytes);
      npy_to_row_major(header_, stored, owned_.data());
      file_.release(header_.data_offset, header_.data_bytes);
    }
    return TensorView{t.name, t.dtype, t.shape, owned_.data()};
  }

  void release(std::size_t index) override {
    if (index != 0) out_of_range(path(), index);
    Buffer().swap(owned_);
    file_.release(header_.data_offset, header_.data_bytes);
  }

 private:
  MappedFile file_;
  NpyHeader header_;
  std::string format_ = "npy";
  std::vector<TensorInfo> tensors_;
  Buffer owned_;
};

// ---- .npz ------------------------------------------------------------------------------------

std::string zip_code_message(int code) {
  zip_error_t error;
  zip_error_init_with_code(&error, code);
  std::string message = zip_error_strerror(&error);
  zip_error_fini(&error);
  return message;
}

struct ZipCloser {
  void operator()(zip_t* archive) const { zip_discard(archive); }  // read-only: nothing to write
};

struct ZipFileCloser {
  void operator()(zip_file_t* file) const { zip_fclose(file); }
};

class NpzCheckpoint final : public CheckpointReader {
 public:
  explicit NpzCheckpoint(const std::string& path) : path_(path) {
    std::error_code ec;
    const std::filesystem::file_status status = std::filesystem::status(path, ec);
    if (ec || !std::filesystem::exists(status)) {
      throw Error(ErrorCode::kInputMissing, path + ": cannot open: no such file");
    }
    if (!std::filesystem::is_regular_file(status)) {
      throw Error(ErrorCode::kInputMissing, path + ": not a regular file");
    }
    file_bytes_ = std::filesystem::file_size(path, ec);
    int code = 0;
    archive_.reset(zip_open(path.c_str(), ZIP_RDONLY | ZIP_CHECKCONS, &code));
    if (!archive_) {
      const ErrorCode kind = code == ZIP_ER_OPEN || code == ZIP_ER_READ || code == ZIP_ER_NOENT
                                 ? ErrorCode::kInputMissing
                                 : ErrorCode::kBadFormat;
      // libzip's consistency check reports two members of the same name as "file exists".
      const std::string why = code == ZIP_ER_EXISTS ? "two members have the same name" : zip_code_message(code);
      throw Error(kind, path + ": cannot read as an .npz (zip) archive: " + why);
    }
    const zip_int64_t count = zip_get_num_entries(archive_.get(), 0);
    std::set<std::string> names;
    for (zip_int64_t i = 0; i < count; ++i) add_member(static_cast<zip_uint64_t>(i), names);
    buffers_.resize(members_.size());
    zip_in_place_ = std::make_unique<ZipReader>(path);  // after libzip's own checks passed
  }

  const std::string& path() const noexcept override { return path_; }
  const std::string& format() const noexcept override { return format_; }
  std::uint64_t file_bytes() const noexcept override { return file_bytes_; }
  const std::vector<TensorInfo>& tensors() const noexcept override { return tensors_; }

  TensorView tensor(std::size_t index) override {
    if (index >= members_.size()) out_of_range(path_, index);
    const Member& m = members_[index];
    const TensorInfo& t = tensors_[index];
    if (m.header.is_native()) {
      // A stored member is used in place in the mapping (after its CRC check), as fast as a
      // plain read; compressed ones are inflated into a buffer below.
      if (const std::byte* in_place = zip_in_place_->stored_data(m.index)) {
        check_crc(m, in_place);
        return TensorView{t.name, t.dtype, t.shape, in_place + m.header.data_offset};
      }
    }
    Buffer& buffer = buffers_[index];
    if (buffer.empty()) {  // never empty once read: it holds the header too
      Buffer stored = read_member(m, m.header.data_offset + m.header.data_bytes, true);
      if (m.header.is_native()) {
        buffer = std::move(stored);
      } else {
        buffer.resize(stored.size());
        std::memcpy(buffer.data(), stored.data(), m.header.data_offset);
        npy_to_row_major(m.header, stored.data() + m.header.data_offset, buffer.data() + m.header.data_offset);
      }
    }
    return TensorView{t.name, t.dtype, t.shape, buffer.data() + m.header.data_offset};
  }

  void release(std::size_t index) override {
    if (index >= members_.size()) out_of_range(path_, index);
    Buffer().swap(buffers_[index]);
    zip_in_place_->release_stored(members_[index].index);
  }

 private:
  struct Member {
    zip_uint64_t index = 0;
    std::string name;  // as in the archive, "w.npy"
    NpyHeader header;
  };

  std::string where(const std::string& member) const { return path_ + ": member '" + member + "'"; }

  // numpy writes a CRC-32 for every member; a stored member read in place is checked here
  // (zlib's crc32 runs at several GB/s).
  void check_crc(const Member& m, const std::byte* data) const {
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_stat_index(archive_.get(), m.index, 0, &st) != 0 || !(st.valid & ZIP_STAT_CRC)) return;
    uLong crc = crc32(0L, Z_NULL, 0);
    std::uint64_t left = m.header.data_offset + m.header.data_bytes;
    const auto* p = reinterpret_cast<const Bytef*>(data);
    while (left > 0) {  // crc32 takes a uInt length
      const uInt chunk = static_cast<uInt>(std::min<std::uint64_t>(left, 1u << 30));
      crc = crc32(crc, p, chunk);
      p += chunk;
      left -= chunk;
    }
    if (crc != st.crc) throw Error(ErrorCode::kBadFormat, where(m.name) + ": corrupt data: CRC error");
  }

  void add_member(zip_uint64_t index, std::set<std::string>& names) {
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_stat_index(archive_.get(), index, 0, &st) != 0 || !(st.valid & ZIP_STAT_NAME) ||
        !(st.valid & ZIP_STAT_SIZE)) {
      throw Error(ErrorCode::kBadFormat, path_ + ": cannot read zip entry #" + std::to_string(index) + ": " +
                                             zip_strerror(archive_.get()));
    }
    Member m{index, st.name, {}};
    constexpr std::string_view kSuffix = ".npy";
    if (m.name.size() <= kSuffix.size() || !m.name.ends_with(kSuffix)) {
      throw Error(ErrorCode::kUnsupported, where(m.name) + " is not an .npy array (an .npz holds only NAME.npy members)");
    }
    if ((st.valid & ZIP_STAT_ENCRYPTION_METHOD) && st.encryption_method != ZIP_EM_NONE) {
      throw Error(ErrorCode::kUnsupported, where(m.name) + " is encrypted");
    }
    const std::string name = m.name.substr(0, m.name.size() - kSuffix.size());
    if (!names.insert(name).second) {
      throw Error(ErrorCode::kBadFormat, path_ + ": invalid .npz: member '" + m.name + "' appears more than once");
    }
    // Only the header is needed now: numpy's limit bounds it.
    const std::uint64_t head = std::min<std::uint64_t>(st.size, kNpyMaxPrefixBytes + kNpyMaxHeaderChars);
    const Buffer prefix = read_member(m, head, false);
    m.header = parse_npy_header(prefix.data(), prefix.size(), where(m.name));
    const std::uint64_t want = m.header.data_offset + m.header.data_bytes;
    if (st.size != want) {
      throw Error(ErrorCode::kBadFormat, where(m.name) + ": invalid .npy data: its header declares " +
                                             std::to_string(want) + " bytes in all, the member holds " +
                                             std::to_string(st.size) + (st.size < want ? " (truncated)" : ""));
    }
    tensors_.push_back(TensorInfo{name, m.header.dtype, m.header.shape});
    members_.push_back(std::move(m));
  }

  // Reads the first `bytes` bytes of a member. With `whole`, `bytes` is the member's full size
  // and one more read must hit its end: that is when libzip checks the CRC and the size.
  Buffer read_member(const Member& m, std::uint64_t bytes, bool whole) const {
    std::unique_ptr<zip_file_t, ZipFileCloser> file(zip_fopen_index(archive_.get(), m.index, 0));
    if (!file) {
      throw Error(ErrorCode::kBadFormat, where(m.name) + ": cannot open: " + zip_strerror(archive_.get()));
    }
    Buffer out(bytes);
    std::uint64_t done = 0;
    while (done < bytes) {
      const zip_int64_t n = zip_fread(file.get(), out.data() + done, bytes - done);
      if (n < 0) throw Error(ErrorCode::kBadFormat, where(m.name) + ": corrupt data: " + zip_file_strerror(file.get()));
      if (n == 0) {
        throw Error(ErrorCode::kBadFormat, where(m.name) + ": truncated: ends after " + std::to_string(done) +
                                               " of " + std::to_string(bytes) + " bytes");
      }
      done += static_cast<std::uint64_t>(n);
    }
    if (whole) {
      std::byte extra;
      const zip_int64_t n = zip_fread(file.get(), &extra, 1);
      if (n < 0) throw Error(ErrorCode::kBadFormat, where(m.name) + ": corrupt data: " + zip_file_strerror(file.get()));
      if (n > 0) throw Error(ErrorCode::kBadFormat, where(m.name) + ": holds more data than its size says");
    }
    return out;
  }

  std::string path_;
  std::string format_ = "npz";
  std::uint64_t file_bytes_ = 0;
  std::unique_ptr<zip_t, ZipCloser> archive_;
  std::unique_ptr<ZipReader> zip_in_place_;
  std::vector<Member> members_;
  std::vector<TensorInfo> tensors_;
  std::vector<Buffer> buffers_;
};

}  // namespace

std::unique_ptr<CheckpointReader> open_npy(const std::string& path) {
  return std::make_unique<NpyCheckpoint>(path);
}

std::unique_ptr<CheckpointReader> open_npz(const std::string& path) {
  return std::make_unique<NpzCheckpoint>(path);
}

bool sniff_npy(const std::byte* data, std::uint64_t size) noexcept {
  return size >= 6 && std::memcmp(data, "\x93NUMPY", 6) == 0;
}

bool sniff_npz(const std::string& path) noexcept {
  int code = 0;
  std::unique_ptr<zip_t, ZipCloser> archive(zip_open(path.c_str(), ZIP_RDONLY, &code));
  if (!archive || zip_get_num_entries(archive.get(), 0) < 1) return false;
  const char* name = zip_get_name(archive.get(), 0, 0);
  return name != nullptr && std::string_view(name).ends_with(".npy");
}

}  // namespace wq::detail
