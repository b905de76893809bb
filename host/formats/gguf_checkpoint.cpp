#include "formats/gguf_checkpoint.h"

#include <cstring>
#include <fstream>
#include <map>
#include <vector>

#include "cpu/ggml_kernels.h"
#include "wq/error.h"

namespace wq::detail {
namespace {

namespace ggml = codec::ggml;

class GgufCheckpoint final : public CheckpointReader {
 public:
  explicit GgufCheckpoint(MappedFile file) : file_(std::move(file)) {
    for (const GgufTensorInfo& t : file_.tensors()) {
      const std::optional<DType> plain = dtype_of_plain_ggml_type(t.type);
      tensors_.push_back(TensorInfo{t.name, plain.value_or(DType::kF32), shape_of_ne(t.ne)});
    }
  }

  const std::string& path() const noexcept override { return file_.path(); }
  const std::string& format() const noexcept override { return format_; }
  std::uint64_t file_bytes() const noexcept override { return file_.file().size(); }
  const std::vector<TensorInfo>& tensors() const noexcept override { return tensors_; }

  TensorView tensor(std::size_t index) override {
    const GgufTensorInfo& t = file_.tensors().at(index);
    const TensorInfo& info = tensors_[index];
    if (!ggml::layout_of(t.type).quantized) return TensorView{info.name, info.dtype, info.shape, file_.data(t)};
    auto it = decoded_.find(index);
    if (it == decoded_.end()) {
      std::vector<float> values(element_count(info.shape));
      decode_ggml_blocks(t.type, reinterpret_cast<const std::uint8_t*>(file_.data(t)), values.size(), values.data(),
                         nullptr);
      it = decoded_.emplace(index, std::move(values)).first;
    }
    return TensorView{info.name, DType::kF32, info.shape, reinterpret_cast<const std::byte*>(it->second.data())};
  }

  void release(std::size_t index) override {
    decoded_.erase(index);
    file_.release(file_.tensors().at(index));
  }

  std::string_view stored_quantized_as(std::size_t index) const override {
    const ggml::Type type = file_.tensors().at(index).type;
    return ggml::layout_of(type).quantized ? ggml::type_name(type) : "";
  }

  std::span<const std::byte> mapped_bytes() const noexcept override {
    return {file_.file().data(), file_.file().size()};
  }

  std::vector<MetadataEntry> metadata() const override { return metadata_entries(file_.metadata()); }

  const GgufFile& file() const noexcept { return file_; }

 private:
  GgufFile file_;
  std::string format_ = "gguf";
  std::vector<TensorInfo> tensors_;
  std::map<std::size_t, std::vector<float>> decoded_;
};

}  // namespace

std::optional<DType> dtype_of_plain_ggml_type(ggml::Type type) {
  switch (type) {
    case ggml::Type::kF32: return DType::kF32;
    case ggml::Type::kF16: return DType::kF16;
    case ggml::Type::kBF16: return DType::kBF16;
    case ggml::Type::kF64: return DType::kF64;
    case ggml::Type::kI8: return DType::kI8;
    case ggml::Type::kI16: return DType::kI16;
    case ggml::Type::kI32: return DType::kI32;
    case ggml::Type::kI64: return DType::kI64;
    default: return std::nullopt;
  }
}

bool starts_with_gguf_magic(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  return in.read(magic, 4) && std::memcmp(magic, "GGUF", 4) == 0;
}

std::unique_ptr<CheckpointReader> open_gguf(MappedFile file) { return std::make_unique<GgufCheckpoint>(std::move(file)); }

const GgufFile* gguf_file_of(const CheckpointReader& reader) {
  const auto* gguf = dynamic_cast<const GgufCheckpoint*>(&reader);
  return gguf != nullptr ? &gguf->file() : nullptr;
}

}  // namespace wq::detail

namespace wq {

bool is_gguf_file(const std::string& path) { return detail::starts_with_gguf_magic(path); }

}  // namespace wq
