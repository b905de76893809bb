// The outputs of a sharded checkpoint: one container per shard, named after the shard, and a
// rewritten index. Shared by quantize_sharded() and the CLI's tree mode, which quantizes the
// shards one by one (so that each finished shard survives an interruption) and writes the
// index last.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "formats/sharded_safetensors.h"

namespace wq::detail {

/// "model-00001-of-00002.safetensors" -> "model-00001-of-00002.wq.safetensors"
std::string shard_container_name(const std::string& shard);

/// Writes, atomically, the index of the quantized shards at `output`: metadata.total_size is
/// `containers_bytes` (the containers' sizes summed) and the weight_map names each tensor's
/// container. Returns the bytes written. Throws Error(kOutput).
std::uint64_t write_container_index(const ShardIndex& index, std::uint64_t containers_bytes,
                                    const std::string& output);

/// compressed-tensors output: each shard keeps its name (vLLM and transformers find the shards
/// through the index), and the index's weight_map lists every tensor of the written shards
/// (read back from their headers, in file order) with metadata.total_size their data bytes, as
/// transformers writes it. `shards` are (file name, written path) in the index's order.
std::uint64_t write_tensor_index(const std::vector<std::pair<std::string, std::string>>& shards,
                                 const std::string& output);

}  // namespace wq::detail
