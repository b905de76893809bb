#include "container/container_checkpoint.h"

#include <map>
#include <mutex>
#include <vector>

#include "formats/gguf_checkpoint.h"
#include "wq/backend.h"
#include "wq/error.h"

namespace wq::detail {
namespace {

namespace ggml = codec::ggml;

// Quantized encodings: what a tensor's values already went through.
bool decoded_on_read(const ContainerTensor& t) {
  return has_codes(t.encoding) || (t.encoding == Encoding::kGgml && ggml::layout_of(t.ggml_type).quantized);
}

class ContainerCheckpoint final : public CheckpointReader {
 public:
  explicit ContainerCheckpoint(std::unique_ptr<ContainerReader> reader)
      : reader_(std::move(reader)), gguf_kvs_(stored_gguf_kvs(*reader_)) {
    for (const ContainerTensor& t : reader_->tensors()) {
      DType dtype = t.dtype;
      if (t.encoding == Encoding::kCast) dtype = t.data_dtype;
      if (t.encoding == Encoding::kGgml && !decoded_on_read(t)) dtype = dtype_of_plain_ggml_type(t.ggml_type).value();
      infos_.push_back(TensorInfo{t.name, dtype, t.shape});
      if (decoded_on_read(t)) {
        stored_.push_back(t.encoding == Encoding::kGgml
                              ? std::string(ggml::type_name(t.ggml_type))
                              : std::to_string(t.bits) + "-bit " + t.range + " codes");
      } else {
        stored_.emplace_back();
      }
    }
  }

  const std::string& path() const noexcept override { return reader_->path(); }
  const std::string& format() const noexcept override { return format_; }
  std::uint64_t file_bytes() const noexcept override { return reader_->file_bytes(); }
  const std::vector<TensorInfo>& tensors() const noexcept override { return infos_; }
  std::vector<MetadataEntry> metadata() const override { return metadata_entries(gguf_kvs_); }

  TensorView tensor(std::size_t index) override {
    const ContainerTensor& t = reader_->tensors().at(index);
    const TensorInfo& info = infos_[index];
    if (!decoded_on_read(t)) {
      verify_once(index);
      return TensorView{info.name, info.dtype, info.shape, stored_part(*reader_, index, 0).data()};
    }
    std::vector<std::byte>& values = decoded_[index];
    if (values.empty()) {
      if (backend_ == nullptr) backend_ = make_backend(BackendOptions{BackendKind::kCpu, 0, 0, 0}).backend;
      values.resize(element_count(info.shape) * dtype_size(info.dtype));
      reader_->decode(index, *backend_, MutableTensorView{info.name, info.dtype, info.shape, values.data()});
    }
    return TensorView{info.name, info.dtype, info.shape, values.data()};
  }

  void release(std::size_t index) override {
    decoded_.erase(index);
    reader_->release(index);
  }

  std::string_view stored_quantized_as(std::size_t index) const override { return stored_.at(index); }

  const GgufKvs* gguf_kvs() const noexcept { return gguf_kvs_.empty() ? nullptr : &gguf_kvs_; }

  std::span<const std::byte> ggml_blocks(std::size_t index, ggml::Type type) const {
    const ContainerTensor& t = reader_->tensors().at(index);
    if (t.encoding != Encoding::kGgml || t.ggml_type != type) return {};
    verify_once(index);
    return stored_part(*reader_, index, 0);
  }

 private:
  // The checksum is checked once per tensor: the pipeline asks for its blocks several times.
  void verify_once(std::size_t index) const {
    const std::lock_guard<std::mutex> lock(verify_mutex_);
    if (verified_.at(index)) return;
    reader_->verify(index);
    verified_[index] = true;
  }

  std::unique_ptr<ContainerReader> reader_;
  const GgufKvs& gguf_kvs_;  // the reader's, parsed when it opened the container
  const std::string format_ = "wq";
  std::vector<TensorInfo> infos_;
  std::vector<std::string> stored_;
  std::unique_ptr<Backend> backend_;  ///< the CPU, made when a tensor first needs decoding
  std::map<std::size_t, std::vector<std::byte>> decoded_;
  mutable std::mutex verify_mutex_;  // the pipeline reads from more than one thread
  mutable std::vector<bool> verified_ = std::vector<bool>(reader_->tensors().size(), false);
};

}  // namespace

std::unique_ptr<CheckpointReader> open_container_checkpoint(const std::string& path) {
  return std::make_unique<ContainerCheckpoint>(ContainerReader::open(path));
}

const GgufKvs* gguf_kvs_of(const CheckpointReader& reader) {
  if (const auto* container = dynamic_cast<const ContainerCheckpoint*>(&reader)) return container->gguf_kvs();
  if (const GgufFile* gguf = gguf_file_of(reader)) return &gguf->metadata();
  return nullptr;
}

std::span<const std::byte> stored_ggml_blocks(const CheckpointReader& reader, std::size_t index, ggml::Type type) {
  if (const auto* container = dynamic_cast<const ContainerCheckpoint*>(&reader)) {
    return container->ggml_blocks(index, type);
  }
  if (const GgufFile* gguf = gguf_file_of(reader)) {
    const GgufTensorInfo& t = gguf->tensors().at(index);
    if (t.type == type) return {gguf->data(t), t.bytes};
  }
  return {};
}

}  // namespace wq::detail
