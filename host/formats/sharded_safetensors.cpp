#include "formats/sharded_safetensors.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <algorithm>
#include <cctype>
#include <set>

#include <nlohmann/json.hpp>

#include "formats/safetensors_file.h"
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

ShardIndex read_shard_index(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorCode::kInputMissing, path + ": cannot open");
  nlohmann::json root;
  try {
    root = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    bad(path, std::string("not valid JSON: ") + e.what());
  }
  if (!root.is_object() || !root.contains("weight_map") || !root["weight_map"].is_object()) {
    bad(path, "no weight_map object");
  }
  ShardIndex index;
  index.path = path;
  std::set<std::string> seen;
  // nlohmann::json sorts keys; the order of tensors comes from the shards themselves.
  for (auto it = root["weight_map"].begin(); it != root["weight_map"].end(); ++it) {
    if (!it.value().is_string()) bad(path, "weight_map value of '" + it.key() + "' is not a file name");
    const std::string shard = it.value().get<std::string>();
    if (shard.empty() || shard.find('/') != std::string::npos || shard == "." || shard == "..") {
      bad(path, "shard '" + shard + "' is not a file name beside the index");
    }
    index.weight_map.emplace_back(it.key(), shard);
    if (seen.insert(shard).second) index.shards.push_back(shard);
  }
  std::sort(index.shards.begin(), index.shards.end());  // model-00001-of-00003, ... in order
  if (index.shards.empty()) bad(path, "weight_map is empty");
  return index;
}

std::unique_ptr<CheckpointReader> open_sharded_safetensors(const std::string& index_path) {
  return std::make_unique<ShardedCheckpoint>(index_path);
}

}  // namespace wq::detail
