#include "formats/gguf_writer.h"

#include <cstring>

#include "core/checked_math.h"
#include "wq/error.h"

namespace wq::detail {
namespace {

namespace ggml = codec::ggml;

template <typename T>
void put(std::string& out, T v) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &v, sizeof(T));  // little-endian hosts only, as GGUF is
  out.append(bytes, sizeof(T));
}

void put_string(std::string& out, std::string_view s) {
  put<std::uint64_t>(out, s.size());
  out.append(s);
}

}  // namespace

std::string gguf_long_name_problem(std::string_view name) {
  return "tensor '" + std::string(name) + "': its name is " + std::to_string(name.size()) +
         " bytes; ggml and llama.cpp accept at most " + std::to_string(GgufWriter::kMaxNameBytes - 1) +
         " (stable-diffusion.cpp accepts longer names)";
}

GgufMetadata::Entry* GgufMetadata::find(std::string_view key) {
  for (Entry& e : entries_) {
    if (e.key == key) return &e;
  }
  return nullptr;
}

bool GgufMetadata::contains(std::string_view key) const {
  for (const Entry& e : entries_) {
    if (e.key == key) return true;
  }
  return false;
}

void GgufMetadata::add_string(std::string_view key, std::string_view value) {
  std::string v;
  put_string(v, value);
  entries_.push_back({std::string(key), GgufValueType::kString, std::move(v)});
}

void GgufMetadata::add_u32(std::string_view key, std::uint32_t value) {
  std::string v;
  put(v, value);
  entries_.push_back({std::string(key), GgufValueType::kU32, std::move(v)});
}

void GgufMetadata::add_copied(const GgufKv& kv) {
  entries_.push_back({kv.key, kv.type, std::string(reinterpret_cast<const char*>(kv.value.data()), kv.value.size())});
}

void GgufMetadata::set_u32(std::string_view key, std::uint32_t value) {
  if (Entry* e = find(key)) {
    e->type = GgufValueType::kU32;
    e->value.clear();
    put(e->value, value);
  } else {
    add_u32(key, value);
  }
}

void GgufMetadata::set_string(std::string_view key, std::string_view value) {
  if (Entry* e = find(key)) {
    e->type = GgufValueType::kString;
    e->value.clear();
    put_string(e->value, value);
  } else {
    add_string(key, value);
  }
}

std::string GgufMetadata::serialised() const {
  std::string out;
  for (const Entry& e : entries_) {
    put_string(out, e.key);
    put<std::uint32_t>(out, static_cast<std::uint32_t>(e.type));
    out += e.value;
  }
  return out;
}

std::string gguf_kv_records(const GgufKvs& kvs) {
  GgufMetadata copy;
  for (const GgufKv& kv : kvs.pairs()) copy.add_copied(kv);
  return copy.serialised();
}

GgufWriter::GgufWriter(AtomicFile& out, const GgufMetadata& metadata, std::vector<GgufTensorPlan> tensors,
                       bool allow_long_names)
    : out_(out), tensors_(std::move(tensors)) {
  std::string header = "GGUF";
  put<std::uint32_t>(header, 3);
  put<std::uint64_t>(header, tensors_.size());
  put<std::uint64_t>(header, metadata.size());
  header += metadata.serialised();
  std::uint64_t offset = 0;
  for (const GgufTensorPlan& t : tensors_) {
    const std::string label = "tensor '" + t.name + "'";
    if (t.name.size() >= kMaxNameBytes && !allow_long_names) throw Error(ErrorCode::kUsage, gguf_long_name_problem(t.name), {{"gguf_long_names", ""}});
    if (t.ne.size() > 4) {
      throw Error(ErrorCode::kUsage, label + " has " + std::to_string(t.ne.size()) + " dimensions; GGUF allows at most 4");
    }
    const ggml::TypeLayout layout = ggml::layout_of(t.type);
    std::uint64_t elements = 1;
    for (std::uint64_t n : t.ne) elements *= n;  // the caller's shapes come from checked readers
    if (layout.block_elements == 0 || (t.ne.empty() ? 1 : t.ne[0]) % layout.block_elements != 0 ||
        elements / layout.block_elements * layout.block_bytes != t.bytes) {
      throw Error(ErrorCode::kInternal, label + ": GGUF plan with a size that does not match its shape and type");
    }
    put_string(header, t.name);
    put<std::uint32_t>(header, static_cast<std::uint32_t>(t.ne.size()));
    for (std::uint64_t n : t.ne) put<std::uint64_t>(header, n);
    put<std::uint32_t>(header, static_cast<std::uint32_t>(t.type));
    put<std::uint64_t>(header, offset);
    offset += (t.bytes + kAlignment - 1) / kAlignment * kAlignment;
  }
  out_.write(header.data(), header.size());
  if (!tensors_.empty()) pad();
  while (current_ < tensors_.size() && tensors_[current_].bytes == 0) ++current_;
}

void GgufWriter::pad() {
  static const char zeros[kAlignment] = {};
  const std::uint64_t over = out_.size() % kAlignment;
  if (over != 0) out_.write(zeros, kAlignment - over);
}

void GgufWriter::append(const void* data, std::size_t size) {
  const auto* bytes = static_cast<const char*>(data);
  while (size > 0) {
    if (current_ >= tensors_.size()) throw Error(ErrorCode::kInternal, "GGUF writer: more data than the tensors hold");
    const std::uint64_t room = tensors_[current_].bytes - written_;
    const std::size_t now = size < room ? size : static_cast<std::size_t>(room);
    out_.write(bytes, now);
    bytes += now;
    size -= now;
    written_ += now;
    if (written_ == tensors_[current_].bytes) {
      pad();
      written_ = 0;
      ++current_;
      while (current_ < tensors_.size() && tensors_[current_].bytes == 0) ++current_;
    }
  }
}

void GgufWriter::finish() {
  if (current_ != tensors_.size()) {
    throw Error(ErrorCode::kInternal, "GGUF writer: tensor '" + tensors_[current_].name + "' is incomplete");
  }
}

}  // namespace wq::detail
