// Parsing a safetensors JSON header in one streaming pass.
//
// Streaming (nlohmann's SAX interface) rather than a DOM: a header may be 100 MB, and as a DOM
// it takes ~25x that, while nlohmann's DOM parse with a callback (the way to see duplicate
// keys) rescans the top object at every tensor: 50,000 tensors took minutes. Here memory is
// what the entries themselves hold and time is linear.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "wq/tensor.h"

namespace wq::detail {

struct SafetensorsEntry {
  std::string name;
  DType dtype = DType::kF32;
  Shape shape;
  std::uint64_t begin = 0;  ///< offset in the data buffer
  std::uint64_t end = 0;
  std::uint64_t bytes() const { return end - begin; }
};

struct SafetensorsHeader {
  /// In name order (as a JSON object's keys sort); SafetensorsFile orders them by offset.
  std::vector<SafetensorsEntry> entries;
  std::map<std::string, std::string> metadata;
};

/// Parses and checks the header text: valid JSON, an object of tensors (each with a known
/// dtype, a shape of non-negative integers, [begin, end] data_offsets holding exactly shape x
/// dtype bytes) and an optional "__metadata__" object of strings, no name twice. Throws
/// Error(kBadFormat) "PATH: invalid safetensors file: ..." naming the tensor: a JSON error
/// first, then a repeated name, then the first other problem in name order.
SafetensorsHeader parse_safetensors_header(std::string_view text, const std::string& path);

}  // namespace wq::detail
