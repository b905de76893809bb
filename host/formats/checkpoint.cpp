// open_checkpoint(): recognises a checkpoint by its content and returns a reader for it.
#include <sys/stat.h>
#include <zip.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <set>
#include <string_view>
#include <utility>

#include "core/utf8.h"
#include "formats/gguf_checkpoint.h"
#include "container/container_checkpoint.h"
#include "formats/packed_checkpoint.h"
#include "formats/safetensors_file.h"
#include "formats/numpy_reader.h"
#include "formats/paddle_reader.h"
#include "formats/sharded_safetensors.h"
#include "formats/torch_reader.h"
#include "wq/checkpoint.h"
#include "wq/container.h"
#include "wq/error.h"

namespace wq {
namespace {

constexpr const char* kSupported =
    "supported: safetensors (including WQ containers), PyTorch .pt/.pth (zip and legacy), Paddle .pdparams, numpy .npy/.npz, sharded safetensors (*.index.json), GGUF";

class SafetensorsCheckpoint final : public CheckpointReader {
 public:
  explicit SafetensorsCheckpoint(detail::MappedFile file) : file_(std::move(file)) {
    format_ = file_.metadata().count("wq") != 0 ? "wq" : "safetensors";
    for (const detail::SafetensorsEntry& e : file_.entries()) {
      tensors_.push_back(TensorInfo{e.name, e.dtype, e.shape});
    }
  }

  const std::string& path() const noexcept override { return file_.path(); }
  const std::string& format() const noexcept override { return format_; }
  std::uint64_t file_bytes() const noexcept override { return file_.file().size(); }
  const std::vector<TensorInfo>& tensors() const noexcept override { return tensors_; }

  TensorView tensor(std::size_t index) override {
    const detail::SafetensorsEntry& e = file_.entries().at(index);
    return TensorView{e.name, e.dtype, e.shape, file_.data(e)};
  }

  void release(std::size_t index) override { file_.release(file_.entries().at(index)); }
  std::span<const std::byte> mapped_bytes() const noexcept override {
    return {file_.file().data(), file_.file().size()};
  }

 private:
  detail::SafetensorsFile file_;
  std::string format_;
  std::vector<TensorInfo> tensors_;
};

// torch.save's zip format keeps its pickle at TOP/data.pkl; other zips are not checkpoints.
bool has_torch_pickle(const std::string& path) noexcept {
  int code = 0;
  zip_t* archive = zip_open(path.c_str(), ZIP_RDONLY, &code);
  if (archive == nullptr) return false;
  bool found = false;
  const zip_int64_t n = zip_get_num_entries(archive, 0);
  for (zip_int64_t i = 0; i < n && !found; ++i) {
    const char* name = zip_get_name(archive, static_cast<zip_uint64_t>(i), 0);
    const std::string_view entry = name != nullptr ? name : "";
    found = entry == "data.pkl" || entry.ends_with("/data.pkl");
  }
  zip_discard(archive);
  return found;
}

}  // namespace

FileKind classify_file(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    throw Error(ErrorCode::kInputMissing, path + ": cannot read: " + std::strerror(errno));
  }
  if (st.st_size == 0) return FileKind::kOther;  // nothing to map, and no format is empty
  detail::MappedFile probe(path);
  const std::byte* head = probe.data();
  const std::size_t size = probe.size();
  if (detail::SafetensorsFile::sniff(head, size)) {
    // The header is read through the probe's mapping (mapping the file again would cost as
    // much as the parse, per file of a tree). A malformed header is a checkpoint here: reading
    // it says what is wrong.
    return detail::SafetensorsFile::has_metadata(std::move(probe), "wq") ? FileKind::kContainer
                                                                          : FileKind::kCheckpoint;
  }
  if (detail::sniff_npy(head, size) || detail::GgufFile::sniff(head, size)) return FileKind::kCheckpoint;
  if (size >= 4 && std::memcmp(head, "PK\x03\x04", 4) == 0) {
    return detail::sniff_npz(path) || has_torch_pickle(path) ? FileKind::kCheckpoint : FileKind::kOther;
  }
  if (detail::is_torch_legacy(head, size) || detail::looks_like_pickle(head, size)) return FileKind::kCheckpoint;
  if (detail::looks_like_shard_index(head, size)) return FileKind::kShardIndex;
  return FileKind::kOther;
}

namespace {

std::unique_ptr<CheckpointReader> open_by_content(const std::string& path, const ReadOptions& options) {
  // Sniff the first bytes through a mapping; a file of another format never gets parsed as
  // safetensors (and gets an error that says what is supported). A safetensors reader keeps
  // the probe's mapping: mapping a small file again costs as much as reading its header.
  detail::MappedFile probe(path);
  const std::byte* head = probe.data();
  const std::size_t size = probe.size();
  if (detail::SafetensorsFile::sniff(head, size)) {
    auto reader = std::make_unique<SafetensorsCheckpoint>(std::move(probe));
    // A WQ container reads as the tensors it encodes, not as its parts.
    if (reader->format() == "wq") return detail::open_container_checkpoint(path);
    return reader;
  }
  if (detail::sniff_npy(head, size)) return detail::open_npy(path);
  if (detail::GgufFile::sniff(head, size)) return detail::open_gguf(std::move(probe));
  if (size >= 4 && std::memcmp(head, "PK\x03\x04", 4) == 0) {
    return detail::sniff_npz(path) ? detail::open_npz(path) : detail::open_torch_zip(path, options);
  }
  if (detail::is_torch_legacy(head, size)) return detail::open_torch_legacy(path, options);
  if (detail::looks_like_pickle(head, size)) return detail::open_paddle(path);
  if (detail::looks_like_shard_index(head, size)) return detail::open_sharded_safetensors(path);
  throw Error(ErrorCode::kBadFormat, path + ": not a recognised checkpoint (" + std::string(kSupported) + ")");
}

}  // namespace

std::unique_ptr<CheckpointReader> open_checkpoint(const std::string& path, const ReadOptions& options) {
  std::unique_ptr<CheckpointReader> reader = open_by_content(path, options);
  // compressed-tensors weights (weight_packed, ...) read as the weights they decode to; a WQ
  // container's parts never are.
  if (reader->format() == "safetensors" || reader->format() == "safetensors-sharded") {
    reader = detail::wrap_packed_checkpoint(std::move(reader));
  }
  // Pickles can repeat a key, and nested dicts flatten to dotted names that may collide
  // ({"a.b": x, "a": {"b": y}}): one name, two tensors is a file no output can represent.
  // Names end up in JSON (the container's header, reports): they must be well-formed UTF-8,
  // which zip member names, file names and pickle strings need not be.
  std::set<std::string_view> names;
  for (const TensorInfo& t : reader->tensors()) {
    if (!detail::is_valid_utf8(t.name)) {
      throw Error(ErrorCode::kBadFormat, path + ": tensor name '" + detail::printable_utf8(t.name) + "' is not valid UTF-8");
    }
    if (!names.insert(t.name).second) {
      throw Error(ErrorCode::kBadFormat, path + ": two tensors are named '" + t.name + "'");
    }
  }
  return reader;
}

}  // namespace wq
