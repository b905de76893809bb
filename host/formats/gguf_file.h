// GGUF (ggml's file format, versions 2 and 3): a validating, memory-mapped, zero-copy reader.
//
// As strict as ggml's own loader (docs/gguf.md lists each rule and its source): magic and
// version, every count and length bounded by the bytes that hold it, known value types and no
// nested arrays, non-empty unique keys, `general.alignment` a UINT32 power of two, at most 4
// dimensions, known tensor types whose rows are whole blocks, unique names, and the data of
// tensor i at exactly the padded running offset of the tensors before it. It also wants
// names and keys to be well-formed UTF-8 (they go into JSON) and nothing after the last
// tensor but its padding.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "io/mapped_file.h"
#include "wq/checkpoint.h"
#include "wq/codec/ggml_blocks.h"

namespace wq::detail {

/// GGUF's metadata value types (gguf.h `enum gguf_type`).
enum class GgufValueType : std::uint32_t {
  kU8 = 0, kI8 = 1, kU16 = 2, kI16 = 3, kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7,
  kString = 8, kArray = 9, kU64 = 10, kI64 = 11, kF64 = 12,
};

/// "UINT32", "STRING", ... as the spec names them.
const char* gguf_value_type_name(GgufValueType type) noexcept;

/// One metadata pair. `value` holds the value's bytes exactly as stored after its type field
/// (for an array: element type, count, elements), so a writer can copy it unchanged.
struct GgufKv {
  std::string key;
  GgufValueType type = GgufValueType::kU8;
  GgufValueType element_type = GgufValueType::kU8;  ///< arrays only
  std::uint64_t count = 1;                          ///< arrays: elements; else 1
  std::span<const std::byte> value;
};

/// One tensor: `ne` in ggml order (ne[0] innermost), its type and where its data is.
struct GgufTensorInfo {
  std::string name;
  std::vector<std::uint64_t> ne;
  codec::ggml::Type type = codec::ggml::Type::kF32;
  std::uint64_t offset = 0;  ///< from the start of the data section
  std::uint64_t bytes = 0;
};

/// Metadata pairs in their order, checked as ggml's loader checks them (non-empty, unique,
/// UTF-8 keys; known value types; no nested arrays; ggml's string and array limits). The
/// values are views into bytes their owner keeps alive.
class GgufKvs {
 public:
  GgufKvs() = default;
  explicit GgufKvs(std::vector<GgufKv> pairs) : pairs_(std::move(pairs)) {}

  const std::vector<GgufKv>& pairs() const noexcept { return pairs_; }
  bool empty() const noexcept { return pairs_.empty(); }
  const GgufKv* find(std::string_view key) const noexcept;
  /// A STRING value, or nullopt when the key is absent or of another type.
  std::optional<std::string> string_value(std::string_view key) const;
  /// A UINT32 value, or nullopt likewise.
  std::optional<std::uint32_t> u32_value(std::string_view key) const;

 private:
  std::vector<GgufKv> pairs_;
};

/// The pairs for display (wq::MetadataEntry's rules).
std::vector<MetadataEntry> metadata_entries(const GgufKvs& kvs);

/// Parses `records`, metadata pairs back to back (key, type, value) exactly as a GGUF file's
/// metadata section holds them, with GgufFile's rules, up to the last byte. Throws
/// Error(kBadFormat) whose message starts with `where`. The pairs view `records`.
GgufKvs parse_gguf_kv_records(std::span<const std::byte> records, const std::string& where);

class GgufFile {
 public:
  /// ggml's default alignment when `general.alignment` is absent.
  static constexpr std::uint64_t kDefaultAlignment = 32;

  /// Validates the mapped file. Throws Error(kBadFormat) naming the file and, where it applies,
  /// the key or tensor; Error(kUnsupported) for a valid file with a tensor type wq does not
  /// handle (the I-quants, ...), naming the tensor and the type.
  explicit GgufFile(MappedFile file);

  /// Whether the bytes start with the GGUF magic (says nothing about validity).
  static bool sniff(const std::byte* data, std::uint64_t size);

  const MappedFile& file() const noexcept { return file_; }
  const std::string& path() const noexcept { return file_.path(); }
  std::uint32_t version() const noexcept { return version_; }
  std::uint64_t alignment() const noexcept { return alignment_; }
  std::uint64_t data_start() const noexcept { return data_start_; }
  const GgufKvs& metadata() const noexcept { return kvs_; }
  const std::vector<GgufKv>& kvs() const noexcept { return kvs_.pairs(); }
  const std::vector<GgufTensorInfo>& tensors() const noexcept { return tensors_; }

  const GgufKv* find_kv(std::string_view key) const noexcept { return kvs_.find(key); }
  std::optional<std::string> string_value(std::string_view key) const { return kvs_.string_value(key); }
  std::optional<std::uint32_t> u32_value(std::string_view key) const { return kvs_.u32_value(key); }

  const std::byte* data(const GgufTensorInfo& t) const noexcept { return file_.data() + data_start_ + t.offset; }
  void release(const GgufTensorInfo& t) const noexcept { file_.release(data_start_ + t.offset, t.bytes); }

 private:
  MappedFile file_;
  std::uint32_t version_ = 0;
  std::uint64_t alignment_ = kDefaultAlignment;
  std::uint64_t data_start_ = 0;
  GgufKvs kvs_;
  std::vector<GgufTensorInfo> tensors_;
};

/// The shape of a numpy/torch tensor from ggml's `ne` (reversed), and back.
std::vector<std::uint64_t> shape_of_ne(const std::vector<std::uint64_t>& ne);
std::vector<std::uint64_t> ne_of_shape(const std::vector<std::uint64_t>& shape);

}  // namespace wq::detail
