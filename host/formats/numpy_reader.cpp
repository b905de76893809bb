#include "formats/numpy_reader.h"

#include <zip.h>
#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <set>
#include <vector>

#include "core/checked_math.h"
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
    const std::uint64_t held = file_.size() - header_.data_offset;  // the header lies in the file
    if (header_.data_bytes > held) {
      throw Error(ErrorCode::kBadFormat, path + ": invalid .npy data: truncated: the header declares " +
                                             std::to_string(header_.data_bytes) + " data bytes, the file holds " +
                                             std::to_string(held));
    }
    if (held > header_.data_bytes) {
      // np.save never writes more; trailing bytes mean a damaged or disguised file.
      throw Error(ErrorCode::kBadFormat, path + ": invalid .npy data: " + std::to_string(held - header_.data_bytes) +
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

struct ZipCloser {
  void operator()(zip_t* archive) const { zip_discard(archive); }  // read-only: nothing to write
};

class NpzCheckpoint final : public CheckpointReader {
 public:
  explicit NpzCheckpoint(const std::string& path) : path_(path), zip_(open_archive(path)) {
    std::set<std::string> names;
    for (std::size_t i = 0; i < zip_.names().size(); ++i) add_member(i, names);
    buffers_.resize(members_.size());
  }

  const std::string& path() const noexcept override { return path_; }
  const std::string& format() const noexcept override { return format_; }
  std::uint64_t file_bytes() const noexcept override { return zip_.file_size(); }
  const std::vector<TensorInfo>& tensors() const noexcept override { return tensors_; }

  TensorView tensor(std::size_t index) override {
    if (index >= members_.size()) out_of_range(path_, index);
    const Member& m = members_[index];
    const TensorInfo& t = tensors_[index];
    if (m.header.is_native()) {
      // A stored member is used in place in the mapping (after its CRC check), as fast as a
      // plain read; compressed ones are inflated into a buffer below.
      if (const std::byte* in_place = zip_.stored_data(m.index)) {
        check_crc(m, in_place);
        return TensorView{t.name, t.dtype, t.shape, in_place + m.header.data_offset};
      }
    }
    Buffer& buffer = buffers_[index];
    if (buffer.empty()) {  // never empty once read: it holds the header too
      Buffer stored;
      zip_.read(m.index, &stored, true);
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
    zip_.release_stored(members_[index].index);
  }

 private:
  struct Member {
    std::size_t index = 0;
    std::string name;  // as in the archive, "w.npy"
    NpyHeader header;
  };

  // A missing file is kInputMissing, as for every other format (ZipReader's own error would
  // call it a malformed archive).
  static const std::string& open_archive(const std::string& path) {
    std::error_code ec;
    const std::filesystem::file_status status = std::filesystem::status(path, ec);
    if (ec || !std::filesystem::exists(status)) {
      throw Error(ErrorCode::kInputMissing, path + ": cannot open: no such file");
    }
    if (!std::filesystem::is_regular_file(status)) {
      throw Error(ErrorCode::kInputMissing, path + ": not a regular file");
    }
    return path;
  }

  std::string where(const std::string& member) const { return path_ + ": member '" + member + "'"; }

  // numpy writes a CRC-32 for every member; a stored member read in place is checked here
  // (zlib's crc32 runs at several GB/s).
  void check_crc(const Member& m, const std::byte* data) const {
    const ZipMember& z = zip_.member(m.index);
    if (!z.has_crc) return;
    uLong crc = crc32(0L, Z_NULL, 0);
    std::uint64_t left = m.header.data_offset + m.header.data_bytes;
    const auto* p = reinterpret_cast<const Bytef*>(data);
    while (left > 0) {  // crc32 takes a uInt length
      const uInt chunk = static_cast<uInt>(std::min<std::uint64_t>(left, 1u << 30));
      crc = crc32(crc, p, chunk);
      p += chunk;
      left -= chunk;
    }
    if (crc != z.crc) throw Error(ErrorCode::kBadFormat, where(m.name) + ": corrupt data: CRC error");
  }

  void add_member(std::size_t index, std::set<std::string>& names) {
    const ZipMember& z = zip_.member(index);
    Member m{index, z.name, {}};
    constexpr std::string_view kSuffix = ".npy";
    if (m.name.size() <= kSuffix.size() || !m.name.ends_with(kSuffix)) {
      throw Error(ErrorCode::kUnsupported, where(m.name) + " is not an .npy array (an .npz holds only NAME.npy members)");
    }
    if (z.encrypted) throw Error(ErrorCode::kUnsupported, where(m.name) + " is encrypted");
    const std::string name = m.name.substr(0, m.name.size() - kSuffix.size());
    if (!names.insert(name).second) {
      throw Error(ErrorCode::kBadFormat, path_ + ": invalid .npz: two members have the same name '" + m.name + "'");
    }
    // Only the header is needed now: numpy's limit bounds it.
    Buffer prefix;
    zip_.read(index, &prefix, false, kNpyMaxPrefixBytes + kNpyMaxHeaderChars);
    m.header = parse_npy_header(prefix.data(), prefix.size(), where(m.name));
    const std::optional<std::uint64_t> want = checked_add(m.header.data_offset, m.header.data_bytes);
    if (!want || z.size != *want) {
      throw Error(ErrorCode::kBadFormat, where(m.name) + ": invalid .npy data: its header declares " +
                                             (want ? std::to_string(*want) : std::string("more than 2^64")) +
                                             " bytes in all, the member holds " + std::to_string(z.size) +
                                             (!want || z.size < *want ? " (truncated)" : ""));
    }
    tensors_.push_back(TensorInfo{name, m.header.dtype, m.header.shape});
    members_.push_back(std::move(m));
  }

  std::string path_;
  std::string format_ = "npz";
  ZipReader zip_;
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
