// safetensors: a streaming writer.
//
// The header is computed up front from every part's name, dtype and shape; part data is then
// appended one part at a time, so memory never holds more than the part being written. The
// metadata may be rewritten at the end (e.g. to fill in checksums) as long as its serialised
// length does not change.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "io/atomic_file.h"
#include "wq/tensor.h"

namespace wq::detail {

struct PartLayout {
  std::string name;
  DType dtype = DType::kU8;
  Shape shape;
};

/// Ordered string -> string metadata (safetensors requires string values).
using Metadata = std::vector<std::pair<std::string, std::string>>;

class SafetensorsWriter {
 public:
  /// Writes the header to `out` at once. Parts must then be appended in the order given.
  SafetensorsWriter(AtomicFile& out, std::vector<PartLayout> parts, const Metadata& metadata);

  /// Appends data to the current part; a part may be appended in several pieces.
  void append(const void* data, std::size_t size);
  /// Replaces the metadata; its serialised header must have the same length as before.
  void rewrite_metadata(const Metadata& metadata);
  /// Checks that every part received exactly its size.
  void finish();

  std::uint64_t total_bytes() const noexcept { return data_start_ + data_bytes_; }

 private:
  std::string header_json(const Metadata& metadata) const;

  AtomicFile& out_;
  std::vector<PartLayout> parts_;
  std::vector<std::uint64_t> offsets_;  // parts_.size() + 1 boundaries
  std::uint64_t data_start_ = 0;
  std::uint64_t data_bytes_ = 0;
  std::uint64_t written_ = 0;
};

}  // namespace wq::detail
