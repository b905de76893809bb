#include "formats/gguf_file.h"

#include <charconv>
#include <cstring>
#include <set>
#include <string_view>
#include <utility>

#include "core/checked_math.h"
#include "core/utf8.h"
#include "wq/error.h"

namespace wq::detail {
namespace {

namespace ggml = codec::ggml;

// ggml's limits (src/gguf.cpp): longer strings and arrays are refused, and so are more than
// GGML_MAX_DIMS dimensions.
constexpr std::uint64_t kMaxStringBytes = 1ull << 30;
constexpr std::uint64_t kMaxArrayElements = 1ull << 30;
constexpr std::uint32_t kMaxDims = 4;

[[noreturn]] void bad(const std::string& path, const std::string& what) {
  throw Error(ErrorCode::kBadFormat, path + ": invalid GGUF file: " + what);
}

// The fixed size of a scalar value type; 0 for STRING and ARRAY; nullopt for an unknown type.
std::optional<std::uint64_t> scalar_size(std::uint32_t type) {
  switch (static_cast<GgufValueType>(type)) {
    case GgufValueType::kU8:
    case GgufValueType::kI8:
    case GgufValueType::kBool: return 1;
    case GgufValueType::kU16:
    case GgufValueType::kI16: return 2;
    case GgufValueType::kU32:
    case GgufValueType::kI32:
    case GgufValueType::kF32: return 4;
    case GgufValueType::kU64:
    case GgufValueType::kI64:
    case GgufValueType::kF64: return 8;
    case GgufValueType::kString:
    case GgufValueType::kArray: return 0;
  }
  return std::nullopt;
}

// A cursor over bytes that refuses to read past the end, naming what it was reading: `where`
// starts each message ("PATH: invalid GGUF file: "), `noun` names the whole ("file").
class Cursor {
 public:
  Cursor(std::string where, const std::byte* data, std::uint64_t size, const char* noun)
      : where_(std::move(where)), data_(data), size_(size), noun_(noun) {}

  std::uint64_t position() const { return at_; }
  const std::byte* here() const { return data_ + at_; }

  void need(std::uint64_t bytes, const std::string& what) const {
    if (!range_within(at_, bytes, size_)) {
      fail(what + " at byte " + std::to_string(at_) + " runs past the end of the " + std::to_string(size_) + "-byte " +
           noun_ + " (truncated?)");
    }
  }

  template <typename T>
  T read(const std::string& what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, data_ + at_, sizeof(T));  // GGUF is little-endian, as is every host wq builds for
    at_ += sizeof(T);
    return v;
  }

  void skip(std::uint64_t bytes, const std::string& what) {
    need(bytes, what);
    at_ += bytes;
  }

  std::string_view string(const std::string& what) {
    const std::uint64_t length = read<std::uint64_t>(what + "'s length");
    if (length > kMaxStringBytes) fail(what + " claims " + std::to_string(length) + " bytes (ggml's limit is 2^30)");
    need(length, what);
    const std::string_view s(reinterpret_cast<const char*>(data_ + at_), length);
    at_ += length;
    return s;
  }

  std::uint64_t size() const { return size_; }
  [[noreturn]] void fail(const std::string& what) const { throw Error(ErrorCode::kBadFormat, where_ + what); }

 private:
  std::string where_;
  const std::byte* data_;
  std::uint64_t size_;
  const char* noun_;
  std::uint64_t at_ = 0;
};

std::string quoted(std::string_view s) {
  std::string out(1, '\'');  // appended, not operator+: GCC 12 warns falsely (-Wrestrict) on that
  out.append(printable_utf8(s));
  out.push_back('\'');
  return out;
}

// Reads one value of `type` (not an array) for key `key`, checking strings.
void skip_scalar_or_string(Cursor& in, std::uint32_t type, const std::string& what) {
  if (static_cast<GgufValueType>(type) == GgufValueType::kString) {
    in.string(what);
    return;
  }
  in.skip(*scalar_size(type), what);
}

// Reads metadata pairs from `in` (`count` of them, or with `count` empty up to the end of its
// bytes), with ggml's rules; the values view the bytes `in` reads.
std::vector<GgufKv> read_kvs(Cursor& in, std::optional<std::uint64_t> count, const std::byte* base) {
  std::vector<GgufKv> kvs;
  if (count) kvs.reserve(*count);
  std::set<std::string_view> keys;
  for (std::uint64_t i = 0; count ? i < *count : in.position() < in.size(); ++i) {
    const std::string where = "metadata key " + std::to_string(i);
    const std::string_view key = in.string(where);
    if (key.empty()) in.fail(where + " is empty");
    if (!is_valid_utf8(key)) in.fail(where + " " + quoted(key) + " is not valid UTF-8");
    if (!keys.insert(key).second) in.fail("metadata key " + quoted(key) + " appears twice");
    GgufKv kv;
    kv.key = std::string(key);
    const std::string what = "the value of " + quoted(key);
    const std::uint32_t type = in.read<std::uint32_t>(what + "'s type");
    if (!scalar_size(type)) in.fail(what + " has unknown type " + std::to_string(type));
    kv.type = static_cast<GgufValueType>(type);
    const std::uint64_t begin = in.position();
    if (kv.type == GgufValueType::kArray) {
      const std::uint32_t element = in.read<std::uint32_t>(what + "'s element type");
      if (!scalar_size(element)) in.fail(what + " is an array of unknown type " + std::to_string(element));
      if (static_cast<GgufValueType>(element) == GgufValueType::kArray) {
        in.fail(what + " is an array of arrays (ggml refuses nested arrays)");
      }
      kv.element_type = static_cast<GgufValueType>(element);
      kv.count = in.read<std::uint64_t>(what + "'s element count");
      if (kv.count > kMaxArrayElements) {
        in.fail(what + " claims " + std::to_string(kv.count) + " elements (ggml's limit is 2^30)");
      }
      if (kv.element_type == GgufValueType::kString) {
        for (std::uint64_t k = 0; k < kv.count; ++k) in.string(what + "'s string " + std::to_string(k));
      } else {
        in.skip(kv.count * *scalar_size(element), what);  // count <= 2^30, size <= 8: no overflow
      }
    } else {
      skip_scalar_or_string(in, type, what);
    }
    kv.value = {base + begin, in.position() - begin};
    kvs.push_back(std::move(kv));
  }
  return kvs;
}

}  // namespace

const char* gguf_value_type_name(GgufValueType type) noexcept {
  switch (type) {
    case GgufValueType::kU8: return "UINT8";
    case GgufValueType::kI8: return "INT8";
    case GgufValueType::kU16: return "UINT16";
    case GgufValueType::kI16: return "INT16";
    case GgufValueType::kU32: return "UINT32";
    case GgufValueType::kI32: return "INT32";
    case GgufValueType::kF32: return "FLOAT32";
    case GgufValueType::kBool: return "BOOL";
    case GgufValueType::kString: return "STRING";
    case GgufValueType::kArray: return "ARRAY";
    case GgufValueType::kU64: return "UINT64";
    case GgufValueType::kI64: return "INT64";
    case GgufValueType::kF64: return "FLOAT64";
  }
  return "?";
}

bool GgufFile::sniff(const std::byte* data, std::uint64_t size) {
  return size >= 4 && std::memcmp(data, "GGUF", 4) == 0;
}

GgufFile::GgufFile(MappedFile file) : file_(std::move(file)) {
  const std::string& path = file_.path();
  Cursor in(path + ": invalid GGUF file: ", file_.data(), file_.size(), "file");
  if (!sniff(file_.data(), file_.size())) bad(path, "it does not start with the magic 'GGUF'");
  in.skip(4, "magic");
  version_ = in.read<std::uint32_t>("version");
  if ((version_ & 0xffffu) == 0 && version_ != 0) {
    bad(path, "version field " + std::to_string(version_) + " looks byte-swapped: big-endian GGUF files are not supported");
  }
  if (version_ == 1) bad(path, "GGUF version 1 is no longer supported (by ggml either); convert it with a current tool");
  if (version_ != 2 && version_ != 3) {
    bad(path, "unknown GGUF version " + std::to_string(version_) + " (2 and 3 are read)");
  }
  const std::uint64_t tensor_count = in.read<std::uint64_t>("tensor count");
  const std::uint64_t kv_count = in.read<std::uint64_t>("metadata count");
  // Every KV takes at least 13 bytes (key length, type, one byte) and every tensor info 28: a
  // count the file cannot hold is refused before anything is reserved for it.
  if (kv_count > file_.size() / 13) bad(path, "metadata count " + std::to_string(kv_count) + " exceeds what the file can hold");
  if (tensor_count > file_.size() / 28) bad(path, "tensor count " + std::to_string(tensor_count) + " exceeds what the file can hold");
  kvs_ = GgufKvs(read_kvs(in, kv_count, file_.data()));

  if (const GgufKv* a = find_kv("general.alignment")) {
    if (a->type != GgufValueType::kU32) {
      bad(path, "general.alignment is " + std::string(gguf_value_type_name(a->type)) + ", not UINT32");
    }
    std::uint32_t alignment;
    std::memcpy(&alignment, a->value.data(), 4);
    if (alignment == 0 || (alignment & (alignment - 1)) != 0) {
      bad(path, "general.alignment " + std::to_string(alignment) + " is not a power of two");
    }
    alignment_ = alignment;
  }

  std::set<std::string_view> names;
  tensors_.reserve(tensor_count);
  for (std::uint64_t i = 0; i < tensor_count; ++i) {
    const std::string where = "tensor " + std::to_string(i);
    const std::string_view name = in.string(where + "'s name");
    if (name.empty()) bad(path, where + " has an empty name");
    if (!is_valid_utf8(name)) bad(path, where + "'s name " + quoted(name) + " is not valid UTF-8");
    if (!names.insert(name).second) bad(path, "two tensors are named " + quoted(name));
    GgufTensorInfo t;
    t.name = std::string(name);
    const std::string what = "tensor " + quoted(name);
    const std::uint32_t dims = in.read<std::uint32_t>(what + "'s dimension count");
    if (dims > kMaxDims) bad(path, what + " has " + std::to_string(dims) + " dimensions (ggml allows at most 4)");
    std::uint64_t elements = 1;
    for (std::uint32_t d = 0; d < dims; ++d) {
      const std::uint64_t n = in.read<std::uint64_t>(what + "'s dimensions");
      if (n > static_cast<std::uint64_t>(INT64_MAX)) bad(path, what + " has a negative dimension");
      const std::optional<std::uint64_t> product = checked_mul(elements, n);
      if (!product) bad(path, what + "'s element count overflows 64 bits");
      elements = *product;
      t.ne.push_back(n);
    }
    const std::uint32_t type = in.read<std::uint32_t>(what + "'s type");
    if (!ggml::is_known_type(type)) {
      throw Error(ErrorCode::kUnsupported, path + ": tensor " + quoted(name) + " has ggml type " + std::to_string(type) +
                                               ", which wq does not read (it reads F32, F16, BF16, F64, I8-I64, Q4_0, "
                                               "Q4_1, Q5_0, Q5_1, Q8_0 and Q2_K-Q6_K)");
    }
    t.type = static_cast<ggml::Type>(type);
    const ggml::TypeLayout layout = ggml::layout_of(t.type);
    const std::uint64_t row = t.ne.empty() ? 1 : t.ne[0];
    if (row % layout.block_elements != 0) {
      bad(path, what + ": its row of " + std::to_string(row) + " elements is not whole " + ggml::type_name(t.type) +
                    " blocks of " + std::to_string(layout.block_elements));
    }
    const std::optional<std::uint64_t> bytes = checked_mul(elements / layout.block_elements, layout.block_bytes);
    if (!bytes) bad(path, what + "'s size overflows 64 bits");
    t.bytes = *bytes;
    t.offset = in.read<std::uint64_t>(what + "'s data offset");
    tensors_.push_back(std::move(t));
  }

  // The data section starts at the next multiple of the alignment (ggml pads only when there
  // are tensors), and holds each tensor at the padded running offset of those before it.
  data_start_ = in.position();
  if (!tensors_.empty()) {
    const std::uint64_t padded = (data_start_ + alignment_ - 1) / alignment_ * alignment_;
    if (padded > file_.size()) bad(path, "the data section would start past the end of the file (truncated?)");
    data_start_ = padded;
  }
  const std::uint64_t data_bytes = file_.size() - data_start_;
  std::uint64_t expected = 0;
  for (const GgufTensorInfo& t : tensors_) {
    if (t.offset != expected) {
      bad(path, "tensor " + quoted(t.name) + " has data offset " + std::to_string(t.offset) + ", expected " +
                    std::to_string(expected) + " (tensors must be stored in order, each padded to " +
                    std::to_string(alignment_) + " bytes)");
    }
    if (!range_within(t.offset, t.bytes, data_bytes)) {
      bad(path, "tensor " + quoted(t.name) + "'s " + std::to_string(t.bytes) + " bytes at offset " +
                    std::to_string(t.offset) + " run past the end of the file (truncated?)");
    }
    const std::uint64_t end = t.offset + t.bytes;
    expected = (end + alignment_ - 1) / alignment_ * alignment_;  // end <= file size: no overflow
  }
  const std::uint64_t used = tensors_.empty() ? 0 : tensors_.back().offset + tensors_.back().bytes;
  if (data_bytes - used >= alignment_) {
    bad(path, std::to_string(data_bytes - used) + " bytes follow the last tensor's data (at most its padding may)");
  }
}

const GgufKv* GgufKvs::find(std::string_view key) const noexcept {
  for (const GgufKv& kv : pairs_) {
    if (kv.key == key) return &kv;
  }
  return nullptr;
}

std::optional<std::string> GgufKvs::string_value(std::string_view key) const {
  const GgufKv* kv = find(key);
  if (kv == nullptr || kv->type != GgufValueType::kString) return std::nullopt;
  return std::string(reinterpret_cast<const char*>(kv->value.data()) + 8, kv->value.size() - 8);
}

std::optional<std::uint32_t> GgufKvs::u32_value(std::string_view key) const {
  const GgufKv* kv = find(key);
  if (kv == nullptr || kv->type != GgufValueType::kU32) return std::nullopt;
  std::uint32_t v;
  std::memcpy(&v, kv->value.data(), 4);
  return v;
}

namespace {

// A stored little-endian scalar of `type` as text (the shortest that reads back the same, for
// the floats).
std::string scalar_text(GgufValueType type, const std::byte* p) {
  const auto number = [](auto v) {
    char buffer[64];
    const auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, v);
    return std::string(buffer, ec == std::errc{} ? end : buffer);
  };
  const auto load = [p]<typename T>(T) {
    T v;
    std::memcpy(&v, p, sizeof v);
    return v;
  };
  switch (type) {
    case GgufValueType::kU8: return number(load(std::uint8_t{}));
    case GgufValueType::kI8: return number(load(std::int8_t{}));
    case GgufValueType::kU16: return number(load(std::uint16_t{}));
    case GgufValueType::kI16: return number(load(std::int16_t{}));
    case GgufValueType::kU32: return number(load(std::uint32_t{}));
    case GgufValueType::kI32: return number(load(std::int32_t{}));
    case GgufValueType::kU64: return number(load(std::uint64_t{}));
    case GgufValueType::kI64: return number(load(std::int64_t{}));
    case GgufValueType::kF32: return number(load(float{}));
    case GgufValueType::kF64: return number(load(double{}));
    case GgufValueType::kBool: return load(std::uint8_t{}) != 0 ? "true" : "false";
    case GgufValueType::kString:
    case GgufValueType::kArray: break;
  }
  return "?";
}

// A string value on one line, quoted: well-formed UTF-8 as it is but for '"' and '\\', other
// bytes and control characters (a chat template's newlines) as \xNN, cut after kMaxShown
// characters. (printable_utf8() of messages keeps control characters.)
std::string one_line_quoted(std::string_view s) {
  constexpr std::size_t kMaxShown = 120;
  std::string out = "\"";
  std::size_t shown = 0;
  for (std::size_t i = 0; i < s.size(); ++shown) {
    if (shown == kMaxShown) return out.append("\"...");  // append: GCC 12 warns falsely on operator+
    const std::size_t n = utf8_sequence_length(s.substr(i));
    const auto c = static_cast<unsigned char>(s[i]);
    if (n > 1) {
      out.append(s.substr(i, n));
      i += n;
      continue;
    }
    if (n == 1 && c >= 0x20 && c != 0x7f) {
      if (c == '"' || c == '\\') out += '\\';
      out += static_cast<char>(c);
    } else {
      constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
    ++i;
  }
  return out.append("\"");
}

}  // namespace

std::vector<MetadataEntry> metadata_entries(const GgufKvs& kvs) {
  std::vector<MetadataEntry> entries;
  entries.reserve(kvs.pairs().size());
  for (const GgufKv& kv : kvs.pairs()) {
    MetadataEntry e{kv.key, gguf_value_type_name(kv.type), {}};
    if (kv.type == GgufValueType::kArray) {
      // append, not operator+: GCC 12 warns falsely (-Wrestrict) on that
      e.type.append("[").append(gguf_value_type_name(kv.element_type)).append("]");
      e.value = std::to_string(kv.count) + (kv.count == 1 ? " value" : " values");
    } else if (kv.type == GgufValueType::kString) {  // a UINT64 length, then the bytes
      e.value = one_line_quoted({reinterpret_cast<const char*>(kv.value.data()) + 8, kv.value.size() - 8});
    } else {
      e.value = scalar_text(kv.type, kv.value.data());
    }
    entries.push_back(std::move(e));
  }
  return entries;
}

GgufKvs parse_gguf_kv_records(std::span<const std::byte> records, const std::string& where) {
  Cursor in(where, records.data(), records.size(), "metadata");
  return GgufKvs(read_kvs(in, std::nullopt, records.data()));
}

std::vector<std::uint64_t> shape_of_ne(const std::vector<std::uint64_t>& ne) { return {ne.rbegin(), ne.rend()}; }

std::vector<std::uint64_t> ne_of_shape(const std::vector<std::uint64_t>& shape) { return {shape.rbegin(), shape.rend()}; }

}  // namespace wq::detail
