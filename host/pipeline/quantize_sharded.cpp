// A sharded safetensors checkpoint gives one container per shard and a rewritten index
// (design.md §5) whose weight_map names each tensor's container.
#include <filesystem>
#include <map>

#include <nlohmann/json.hpp>

#include "core/json_members.h"
#include "formats/safetensors_file.h"
#include "formats/sharded_safetensors.h"
#include "io/atomic_file.h"
#include "pipeline/output_path.h"
#include "pipeline/sharded_output.h"
#include "wq/error.h"
#include "wq/pipeline.h"

namespace wq {
namespace detail {

namespace {

// An index file, atomically, indented as transformers writes them; returns its bytes.
std::uint64_t write_json_file(const nlohmann::ordered_json& json, const std::string& output) {
  const std::string text = json.dump(2) + "\n";
  AtomicFile file(output);
  file.write(text.data(), text.size());
  file.commit();
  return text.size();
}

}  // namespace

std::string shard_container_name(const std::string& shard) {
  const std::string suffix = ".safetensors";
  const bool has = shard.size() > suffix.size() && shard.compare(shard.size() - suffix.size(), suffix.size(), suffix) == 0;
  return (has ? shard.substr(0, shard.size() - suffix.size()) : shard) + ".wq.safetensors";
}

std::uint64_t write_container_index(const ShardIndex& index, std::uint64_t containers_bytes,
                                    const std::string& output) {
  nlohmann::ordered_json json;
  json["metadata"] = {{"total_size", containers_bytes}, {"format", "wq"}};
  nlohmann::ordered_json map = nlohmann::ordered_json::object();
  for (const auto& [tensor, shard] : index.weight_map) append_member(map, tensor, shard_container_name(shard));  // unique keys
  json["weight_map"] = std::move(map);
  return write_json_file(json, output);
}

std::uint64_t write_tensor_index(const std::vector<std::pair<std::string, std::string>>& shards,
                                 const std::string& output) {
  nlohmann::ordered_json map = nlohmann::ordered_json::object();
  std::uint64_t data_bytes = 0;
  for (const auto& [name, path] : shards) {
    const SafetensorsFile file(path);
    for (const SafetensorsEntry& e : file.entries()) {
      append_member(map, e.name, name);  // names are unique: the pipeline refuses clashes
      data_bytes += e.bytes();
    }
  }
  nlohmann::ordered_json json;
  json["metadata"] = {{"total_size", data_bytes}};
  json["weight_map"] = std::move(map);
  return write_json_file(json, output);
}

}  // namespace detail

namespace {
namespace fs = std::filesystem;
using detail::shard_container_name;
}  // namespace

QuantizeReport quantize_sharded(const std::string& index_path, const std::string& output, Backend& backend,
                                const QuantizeOptions& options) {
  const std::string suffix = ".index.json";
  const bool packed = options.output_format == OutputFormat::kCompressedTensors;
  if (output.size() <= suffix.size() || output.compare(output.size() - suffix.size(), suffix.size(), suffix) != 0) {
    throw Error(ErrorCode::kUsage, index_path + ": a sharded checkpoint is quantized into one file per shard; the output "
                                                "is the new index's path, e.g. out/" +
                                       (packed ? "model.safetensors.index.json" : "model.wq.safetensors.index.json"));
  }
  detail::check_output_path(index_path, output);
  const detail::ShardIndex index = detail::read_shard_index(index_path);
  const fs::path in_folder = fs::path(index_path).parent_path().empty() ? "." : fs::path(index_path).parent_path();
  const fs::path out_folder = fs::path(output).parent_path().empty() ? "." : fs::path(output).parent_path();

  QuantizeReport total;
  total.input = index_path;
  total.output = output;
  total.format = "safetensors-sharded";
  total.backend = backend.description();
  std::vector<std::string> written;  // removed again if a later shard fails: all or nothing
  std::vector<std::pair<std::string, std::string>> outputs;
  try {
    for (const std::string& shard : index.shards) {
      const std::string name = packed ? shard : shard_container_name(shard);
      const std::string out = (out_folder / name).string();
      if (packed && fs::exists(out) && fs::equivalent(out, in_folder / shard)) {
        throw Error(ErrorCode::kOutput, out + ": is the input shard; write the output into another folder");
      }
      const QuantizeReport r = quantize_file((in_folder / shard).string(), out, backend, options);
      written.push_back(out);
      outputs.emplace_back(name, out);
      total.input_bytes += r.input_bytes;
      total.output_bytes += r.output_bytes;
      total.seconds += r.seconds;
      total.tensors.insert(total.tensors.end(), r.tensors.begin(), r.tensors.end());
    }
    total.output_bytes += packed ? detail::write_tensor_index(outputs, output)
                                 : detail::write_container_index(index, total.output_bytes, output);
  } catch (...) {
    for (const std::string& path : written) fs::remove(path);
    throw;
  }
  return total;
}

}  // namespace wq
