#include <cstring>
#include <set>
#include <span>

#include "container/checksum.h"
#include "container/container_checkpoint.h"
#include "container/container_metadata.h"
#include "formats/gguf_file.h"
#include "formats/safetensors_file.h"
#include "wq/container.h"
#include "wq/error.h"

namespace wq {
namespace {

using detail::SafetensorsEntry;
using detail::SafetensorsFile;

[[noreturn]] void bad(const std::string& path, const std::string& what) {
  throw Error(ErrorCode::kBadFormat, path + ": invalid WQ container: " + what);
}

std::string shape_text(const Shape& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

class ContainerReaderImpl final : public ContainerReader {
 public:
  explicit ContainerReaderImpl(const std::string& path) : file_(path) {
    const auto it = file_.metadata().find("wq");
    if (it == file_.metadata().end()) {
      bad(path, "a safetensors file without WQ metadata (__metadata__[\"wq\"]); nothing to decode");
    }
    detail::ContainerMetadata m = detail::parse_metadata_json(it->second, path);
    producer_ = std::move(m.producer);
    source_ = std::move(m.source);
    tensors_ = std::move(m.tensors);
    paddle_name_table_ = std::move(m.paddle_name_table);
    gguf_kv_ = std::move(m.gguf_kv);
    // Checked now, as a GGUF file's are, so that a damaged copy fails here and not after an
    // output was begun. (The pairs view gguf_kv_, which this reader keeps unchanged.)
    gguf_kvs_ = detail::parse_gguf_kv_records(std::as_bytes(std::span(gguf_kv_.data(), gguf_kv_.size())),
                                              path + ": invalid GGUF metadata in __metadata__[\"wq\"].gguf_kv: ");
    bind_parts();
  }

  const std::string& path() const noexcept override { return file_.path(); }
  std::uint64_t file_bytes() const noexcept override { return file_.file().size(); }
  const std::string& producer() const noexcept override { return producer_; }
  const SourceInfo& source() const noexcept override { return source_; }
  const std::vector<ContainerTensor>& tensors() const noexcept override { return tensors_; }
  const std::vector<std::pair<std::string, std::string>>& paddle_name_table() const noexcept override {
    return paddle_name_table_;
  }
  std::string_view gguf_metadata() const noexcept override { return gguf_kv_; }
  const detail::GgufKvs& gguf_kvs() const noexcept { return gguf_kvs_; }
  std::vector<MetadataEntry> gguf_metadata_entries() const override { return detail::metadata_entries(gguf_kvs_); }

  void verify(std::size_t index) const override {
    const ContainerTensor& t = tensors_.at(index);
    detail::Xxh3 hash;
    for (std::size_t p : part_entries_.at(index)) {
      const SafetensorsEntry& e = file_.entries()[p];
      hash.update(file_.data(e), e.bytes());
    }
    const std::string actual = hash.hex();
    if (actual != t.xxh3) {
      throw Error(ErrorCode::kIntegrity, path() + ": tensor '" + t.name + "' is corrupt: checksum " +
                                             actual + " does not match the recorded " + t.xxh3);
    }
  }

  void decode(std::size_t index, Backend& backend, const MutableTensorView& out) override {
    const ContainerTensor& t = tensors_.at(index);
    if (out.dtype != t.dtype || out.shape != t.shape) {
      throw Error(ErrorCode::kUsage, path() + ": tensor '" + t.name + "': decode target must be " +
                                         std::string(dtype_name(t.dtype)) + " " + shape_text(t.shape));
    }
    verify(index);
    const std::vector<std::size_t>& parts = part_entries_.at(index);
    const auto part = [&](std::size_t k) { return file_.data(file_.entries()[parts[k]]); };
    switch (t.encoding) {
      case Encoding::kAffine:
      case Encoding::kSymmetric: {
        AffineTensor a;
        a.codes = reinterpret_cast<const std::uint8_t*>(part(0));
        a.scales = part(1);
        a.mins = t.encoding == Encoding::kAffine ? part(2) : nullptr;
        a.bits = t.bits;
        a.stored_group_size = t.group_size;
        a.scale_dtype = t.scale_dtype;
        backend.dequantize(a, out);
        return;
      }
      case Encoding::kCast:
        backend.cast(TensorView{t.name, t.data_dtype, t.shape, part(0)}, out, false);
        return;
      case Encoding::kRaw:
        std::memcpy(out.data, part(0), file_.entries()[parts[0]].bytes());
        return;
      case Encoding::kGgml:
        backend.decode_ggml(reinterpret_cast<const std::uint8_t*>(part(0)), t.ggml_type, out);
        return;
      case Encoding::kPackQuantized: break;  // the metadata parser never gives it
    }
    throw Error(ErrorCode::kInternal, path() + ": tensor '" + t.name + "' has an encoding containers do not hold");
  }

  void release(std::size_t index) override {
    for (std::size_t p : part_entries_.at(index)) file_.release(file_.entries()[p]);
  }

  std::span<const std::byte> part(std::size_t index, std::size_t k) const {
    const SafetensorsEntry& e = file_.entries()[part_entries_.at(index).at(k)];
    return {file_.data(e), e.bytes()};
  }

 private:
  // Checks that metadata and parts agree: every part exists with the dtype and shape the
  // encoding implies, and every part belongs to exactly one tensor.
  void bind_parts() {
    const std::string& p = path();
    std::set<std::size_t> used;
    for (ContainerTensor& t : tensors_) {
      const std::string where = "tensor '" + t.name + "'";
      std::vector<std::size_t> entries;
      for (const std::string& name : t.parts) {
        const auto found = file_.find(name);
        if (!found) bad(p, where + ": part '" + name + "' is missing");
        if (!used.insert(*found).second) bad(p, where + ": part '" + name + "' is used twice");
        entries.push_back(*found);
      }
      const SafetensorsEntry& first = file_.entries()[entries[0]];
      if (has_codes(t.encoding)) {
        const SafetensorsEntry& scale = file_.entries()[entries[1]];
        if (scale.dtype != DType::kF32 && scale.dtype != DType::kF16) {
          bad(p, where + ": scale part has dtype " + std::string(dtype_name(scale.dtype)) + ", not F32 or F16");
        }
        if (t.encoding == Encoding::kAffine && file_.entries()[entries[2]].dtype != scale.dtype) {
          bad(p, where + ": scale and min parts have different dtypes");
        }
        t.scale_dtype = scale.dtype == DType::kF32 ? ScaleDType::kF32 : ScaleDType::kF16;
      } else if (t.encoding == Encoding::kCast) {
        if (!is_floating(t.dtype) || (first.dtype != DType::kF16 && first.dtype != DType::kBF16)) {
          bad(p, where + ": cast data must be F16 or BF16 of a floating tensor");
        }
        t.data_dtype = first.dtype;
      } else if (t.encoding == Encoding::kGgml) {
        t.data_dtype = DType::kU8;
      } else {
        t.data_dtype = t.dtype;
      }
      const std::vector<detail::PartLayout> expected = detail::parts_of(t);
      for (std::size_t k = 0; k < expected.size(); ++k) {
        const SafetensorsEntry& e = file_.entries()[entries[k]];
        if (e.dtype != expected[k].dtype || e.shape != expected[k].shape) {
          bad(p, where + ": part '" + e.name + "' is " + std::string(dtype_name(e.dtype)) + " " +
                     shape_text(e.shape) + ", expected " + std::string(dtype_name(expected[k].dtype)) +
                     " " + shape_text(expected[k].shape));
        }
        t.stored_bytes += e.bytes();
      }
      part_entries_.push_back(std::move(entries));
    }
    if (used.size() != file_.entries().size()) {
      for (std::size_t i = 0; i < file_.entries().size(); ++i) {
        if (!used.count(i)) bad(p, "part '" + file_.entries()[i].name + "' belongs to no tensor");
      }
    }
  }

  SafetensorsFile file_;
  std::string producer_;
  SourceInfo source_;
  std::vector<ContainerTensor> tensors_;
  std::vector<std::pair<std::string, std::string>> paddle_name_table_;
  std::string gguf_kv_;
  detail::GgufKvs gguf_kvs_;  // views into gguf_kv_
  std::vector<std::vector<std::size_t>> part_entries_;
};

}  // namespace

std::unique_ptr<ContainerReader> ContainerReader::open(const std::string& path) {
  {
    const detail::MappedFile probe(path);
    if (!SafetensorsFile::sniff(probe.data(), probe.size())) {
      bad(path, "not a safetensors file, so not a WQ container");
    }
  }
  return std::make_unique<ContainerReaderImpl>(path);
}

namespace detail {

std::span<const std::byte> stored_part(const ContainerReader& reader, std::size_t index, std::size_t part) {
  return dynamic_cast<const ContainerReaderImpl&>(reader).part(index, part);
}

const GgufKvs& stored_gguf_kvs(const ContainerReader& reader) {
  return dynamic_cast<const ContainerReaderImpl&>(reader).gguf_kvs();
}

}  // namespace detail

bool is_wq_container(const std::string& path) {
  try {
    return SafetensorsFile::has_metadata(detail::MappedFile(path), "wq");
  } catch (const Error&) {  // cannot be opened
    return false;
  }
}

}  // namespace wq
