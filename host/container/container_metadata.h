// The `wq` metadata of a container (docs/container-format.md): building and parsing the JSON.
#pragma once

#include <string>
#include <vector>

#include "formats/safetensors_writer.h"
#include "wq/container.h"

namespace wq::detail {

struct ContainerMetadata {
  int version = 1;
  std::string producer;
  SourceInfo source;
  std::vector<ContainerTensor> tensors;
  /// Paddle's StructuredToParameterName@@ table of the source, for writing a .pdparams back.
  std::vector<std::pair<std::string, std::string>> paddle_name_table;
  /// A GGUF source's metadata pairs as the file stores them (formats/gguf_file.h's
  /// gguf_kv_records()), for writing a GGUF back; empty for other sources.
  std::string gguf_kv;
};

/// The metadata as compact JSON text, tensors in their order.
std::string metadata_json(const ContainerMetadata& metadata);

/// Parses and checks the JSON's own structure (not yet against the parts), in one streaming
/// pass (container/metadata_parser.cpp). Throws Error(kBadFormat) naming `path` and the tensor.
ContainerMetadata parse_metadata_json(const std::string& json, const std::string& path);

/// The safetensors parts (name, dtype, shape) that store `tensor`, in the checksum's order.
std::vector<PartLayout> parts_of(const ContainerTensor& tensor);

/// compressed-tensors' tensors for the weight `name` (MODULE.weight): MODULE.weight_packed,
/// .weight_scale, .weight_zero_point (asymmetric only) and .weight_shape, in that order.
std::vector<std::string> pack_quantized_part_names(const std::string& name, bool symmetric);

/// The parts' names for a tensor called `name` with `encoding` (not kPackQuantized).
std::vector<std::string> part_names(const std::string& name, Encoding encoding);

}  // namespace wq::detail
