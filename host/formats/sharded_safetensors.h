// Sharded safetensors (Hugging Face convention): an index JSON whose weight_map names the
// shard file of every tensor, read as one logical checkpoint.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "wq/checkpoint.h"

namespace wq::detail {

struct ShardIndex {
  std::string path;                 ///< the index file
  std::vector<std::string> shards;  ///< shard file names (relative to the index's folder), in first-use order
  std::vector<std::pair<std::string, std::string>> weight_map;  ///< tensor -> shard file, as listed
};

/// True when the bytes are a JSON object with a "weight_map" (checked cheaply, then parsed).
bool looks_like_shard_index(const std::byte* data, std::size_t size);

/// Parses and checks an index: every shard a plain file name beside the index. Throws
/// Error(kBadFormat) naming the file.
ShardIndex read_shard_index(const std::string& path);

/// All shards as one checkpoint: tensors shard by shard (each in its file's order); every
/// tensor of the weight map must be in its shard and every shard tensor in the weight map.
std::unique_ptr<CheckpointReader> open_sharded_safetensors(const std::string& index_path);

}  // namespace wq::detail
