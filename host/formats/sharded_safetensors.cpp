#include "formats/sharded_safetensors.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <map>
#include <optional>
#include <set>

#include "core/json_stream.h"
#include "formats/safetensors_file.h"
#include "io/mapped_file.h"
#include "wq/checkpoint.h"
#include "wq/error.h"

namespace wq::detail {
namespace {

[[noreturn]] void bad(const std::string& path, const std::string& what) {
  throw Error(ErrorCode::kBadFormat, path + ": invalid sharded safetensors index: " + what);
}

std::string folder_of(const std::string& path) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  return parent.empty() ? "." : parent.string();
}

class ShardedCheckpoint final : public CheckpointReader {
 public:
  explicit ShardedCheckpoint(const std::string& index_path) : index_(read_shard_index(index_path)) {
    std::map<std::string, std::string> shard_of(index_.weight_map.begin(), index_.weight_map.end());
    std::size_t listed = 0;
    for (const std::string& shard : index_.shards) {
      files_.push_back(std::make_unique<SafetensorsFile>(folder_of(index_.path) + "/" + shard));
      const SafetensorsFile& f = *files_.back();
      bytes_ += f.file().size();
      for (std::size_t e = 0; e < f.entries().size(); ++e) {
        const SafetensorsEntry& entry = f.entries()[e];
        const auto it = shard_of.find(entry.name);
        if (it == shard_of.end() || it->second != shard) {
          bad(index_.path, "tensor '" + entry.name + "' is in shard '" + shard + "' but the weight_map " +
                               (it == shard_of.end() ? "does not list it" : "puts it in '" + it->second + "'"));
        }
        ++listed;
        infos_.push_back(TensorInfo{entry.name, entry.dtype, entry.shape});
        where_.emplace_back(files_.size() - 1, e);
      }
    }
    if (listed != shard_of.size()) {  // a set, not a scan per name: an index may list a million names
      std::set<std::string_view> found;
      for (const TensorInfo& t : infos_) found.insert(t.name);
      for (const auto& [name, shard] : index_.weight_map) {
        if (!found.count(name)) bad(index_.path, "tensor '" + name + "' is not in its shard '" + shard + "'");
      }
    }
  }

  const std::string& path() const noexcept override { return index_.path; }
  const std::string& format() const noexcept override { return format_; }
  std::uint64_t file_bytes() const noexcept override { return bytes_; }
  const std::vector<TensorInfo>& tensors() const noexcept override { return infos_; }

  TensorView tensor(std::size_t index) override {
    const auto [file, entry] = where_.at(index);
    const SafetensorsEntry& e = files_[file]->entries()[entry];
    return TensorView{infos_[index].name, e.dtype, e.shape, files_[file]->data(e)};
  }

  void release(std::size_t index) override {
    const auto [file, entry] = where_.at(index);
    files_[file]->release(files_[file]->entries()[entry]);
  }

 private:
  ShardIndex index_;
  std::string format_ = "safetensors-sharded";
  std::uint64_t bytes_ = 0;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::vector<TensorInfo> infos_;
  std::vector<std::pair<std::size_t, std::size_t>> where_;  // (shard, entry) of each tensor
};

}  // namespace

bool looks_like_shard_index(const std::byte* data, std::size_t size) {
  std::size_t i = 0;
  while (i < size && std::isspace(static_cast<unsigned char>(data[i]))) ++i;
  if (i >= size || static_cast<char>(data[i]) != '{' || size > (64u << 20)) return false;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  return text.find("\"weight_map\"") != std::string_view::npos;
}

namespace {

// The index as a stream (core/json_stream.h): an index may be 64 MiB, ~25x that as a DOM. Only
// "weight_map" is kept, its members sorted by name with the last of a repeated name winning,
// as a JSON object's would be.
class IndexHandler final : public JsonStreamHandler {
 public:
  bool root_is_object_ = false, have_weight_map_ = false;
  std::map<std::string, std::optional<std::string>> weight_map_;  // nullopt: not a string

 private:
  void on_key(std::string k) override { key_ = std::move(k); }
  void on_scalar(JsonScalar v) override {
    if (depth_ == 1 && key_ == "weight_map") have_weight_map_ = false;
    if (depth_ == 2 && in_weight_map_) weight_map_[key_] = v.is_string() ? std::optional(std::move(v.text)) : std::nullopt;
  }
  bool on_open(bool object) override {
    if (depth_ == 0) root_is_object_ = object;
    if (depth_ == 1 && key_ == "weight_map") {
      have_weight_map_ = object;
      in_weight_map_ = object;
      weight_map_.clear();  // a repeated "weight_map": the last one counts
    } else if (depth_ == 2 && in_weight_map_) {
      weight_map_[key_] = std::nullopt;  // an object or array: not a file name
      return false;
    }
    const bool descend = depth_ == 0 ? object : in_weight_map_ && depth_ == 1;
    if (descend) ++depth_;
    return descend;
  }
  void on_close() override {
    if (--depth_ == 1) in_weight_map_ = false;
  }

  int depth_ = 0;
  bool in_weight_map_ = false;
  std::string key_;
};

}  // namespace

ShardIndex read_shard_index(const std::string& path) {
  const MappedFile file(path);
  IndexHandler handler;
  parse_json_stream(std::string_view(reinterpret_cast<const char*>(file.data()), file.size()), handler);
  if (!handler.json_error().empty()) bad(path, "not valid JSON: " + handler.json_error());
  if (!handler.root_is_object_ || !handler.have_weight_map_) bad(path, "no weight_map object");
  ShardIndex index;
  index.path = path;
  std::set<std::string> seen;
  // In name order; the order of tensors comes from the shards themselves.
  for (auto& [name, shard] : handler.weight_map_) {
    if (!shard) bad(path, "weight_map value of '" + name + "' is not a file name");
    if (shard->empty() || shard->find('/') != std::string::npos || *shard == "." || *shard == "..") {
      bad(path, "shard '" + *shard + "' is not a file name beside the index");
    }
    if (seen.insert(*shard).second) index.shards.push_back(*shard);
    index.weight_map.emplace_back(name, std::move(*shard));
  }
  std::sort(index.shards.begin(), index.shards.end());  // model-00001-of-00003, ... in order
  if (index.shards.empty()) bad(path, "weight_map is empty");
  return index;
}

std::unique_ptr<CheckpointReader> open_sharded_safetensors(const std::string& index_path) {
  return std::make_unique<ShardedCheckpoint>(index_path);
}

}  // namespace wq::detail

namespace wq {

std::vector<std::string> shard_files(const std::string& index) { return detail::read_shard_index(index).shards; }

}  // namespace wq
