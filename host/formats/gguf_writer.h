// GGUF version 3: a streaming writer that ggml's strict loader accepts (docs/gguf.md).
//
// Metadata and tensor infos are written up front (every tensor's type and size is known
// before its data is), then each tensor's bytes are appended in the order of the infos, each
// padded with zeros to the alignment, the last one included, as ggml's own writer does.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "formats/gguf_file.h"
#include "io/atomic_file.h"
#include "wq/codec/ggml_blocks.h"

namespace wq::detail {

/// GGUF metadata being built: keys in the order added, each value serialised as GGUF stores it.
class GgufMetadata {
 public:
  void add_string(std::string_view key, std::string_view value);
  void add_u32(std::string_view key, std::uint32_t value);
  /// A value copied unchanged from a file (GgufKv::value with its type).
  void add_copied(const GgufKv& kv);
  /// Replaces the value of an existing key (keeping its place), or adds it at the end.
  void set_u32(std::string_view key, std::uint32_t value);
  void set_string(std::string_view key, std::string_view value);

  bool contains(std::string_view key) const;
  std::size_t size() const noexcept { return entries_.size(); }
  /// The serialised pairs: key, type, value.
  std::string serialised() const;

 private:
  struct Entry {
    std::string key;
    GgufValueType type;
    std::string value;  // bytes after the type field
  };
  Entry* find(std::string_view key);
  std::vector<Entry> entries_;
};

/// The pairs as records that parse_gguf_kv_records() reads back (GgufMetadata::serialised() of
/// their copies): what a WQ container made from a GGUF file carries (docs/container-format.md).
std::string gguf_kv_records(const GgufKvs& kvs);

/// A tensor to write: `ne` in ggml order (ne[0] innermost).
struct GgufTensorPlan {
  std::string name;
  std::vector<std::uint64_t> ne;
  codec::ggml::Type type = codec::ggml::Type::kF32;
  std::uint64_t bytes = 0;  ///< checked against ne and type
};

/// "tensor 'NAME': its name is N bytes; ggml and llama.cpp accept at most 63 ...", for a name
/// that GgufWriter refuses without allow_long_names.
std::string gguf_long_name_problem(std::string_view name);

class GgufWriter {
 public:
  /// Writes the header to `out` at once. Throws Error(kUsage) naming the tensor for a name of
  /// 64 bytes or more (ggml's limit) unless `allow_long_names`, for more than 4 dimensions, or
  /// for a size that disagrees with the shape and type.
  GgufWriter(AtomicFile& out, const GgufMetadata& metadata, std::vector<GgufTensorPlan> tensors,
             bool allow_long_names = false);

  /// Appends (part of) the current tensor's data; moves to the next tensor when it is complete.
  void append(const void* data, std::size_t size);
  /// Checks that every tensor received exactly its bytes.
  void finish();

  std::uint64_t total_bytes() const noexcept { return out_.size(); }

  /// ggml's GGML_MAX_NAME: names must be shorter.
  static constexpr std::size_t kMaxNameBytes = 64;
  static constexpr std::uint64_t kAlignment = 32;

 private:
  void pad();

  AtomicFile& out_;
  std::vector<GgufTensorPlan> tensors_;
  std::size_t current_ = 0;
  std::uint64_t written_ = 0;  // of the current tensor
};

}  // namespace wq::detail
