// decode_file(): a WQ container (or a GGUF file, or a compressed-tensors checkpoint) in, a
// checkpoint with the original tensors out.
#include <string_view>
#include <vector>

#include "formats/checkpoint_writer.h"
#include "formats/gguf_checkpoint.h"
#include "io/page_buffer.h"
#include "pipeline/output_path.h"
#include "wq/error.h"
#include "wq/pipeline.h"

namespace wq {
namespace {

// A GGUF file's tensors under their names and numpy shapes: plain ones as they are stored,
// block types decoded by the backend as ggml decodes them.
void decode_gguf(const std::string& input, const std::string& output, Backend& backend, const DecodeOptions& options) {
  std::unique_ptr<CheckpointReader> reader = open_checkpoint(input);
  const detail::GgufFile& gguf = *detail::gguf_file_of(*reader);
  const std::vector<TensorInfo>& infos = reader->tensors();
  Progress progress;
  for (const detail::GgufTensorInfo& t : gguf.tensors()) progress.bytes_total += t.bytes;
  const std::string format = options.format.empty() ? "safetensors" : options.format;
  std::unique_ptr<detail::CheckpointWriter> writer = detail::make_checkpoint_writer(format, output, infos, {});
  detail::PageBuffer buffer;  // one decoded tensor at a time: memory is the largest tensor
  for (std::size_t i = 0; i < infos.size(); ++i) {
    detail::check_cancel(options.cancel);
    const detail::GgufTensorInfo& t = gguf.tensors()[i];
    if (codec::ggml::layout_of(t.type).quantized) {
      buffer.reserve(element_count(infos[i].shape) * sizeof(float));
      backend.decode_ggml(reinterpret_cast<const std::uint8_t*>(gguf.data(t)), t.type,
                          MutableTensorView{infos[i].name, DType::kF32, infos[i].shape, buffer.data()});
      writer->add(buffer.data());
    } else {
      writer->add(reader->tensor(i).data);
    }
    reader->release(i);
    progress.bytes_done += t.bytes;
    progress.current_tensor = t.name;
    if (options.on_progress) options.on_progress(progress);
  }
  writer->finish();
}

// A compressed-tensors checkpoint (docs/compressed-tensors.md), as open_checkpoint() presents
// it: each quantized weight decoded into its scale's dtype as compressed-tensors decodes it,
// every other tensor as it is stored.
void decode_packed(CheckpointReader& reader, const std::string& output, const DecodeOptions& options) {
  const std::vector<TensorInfo>& infos = reader.tensors();
  Progress progress;
  for (const TensorInfo& t : infos) progress.bytes_total += element_count(t.shape) * dtype_size(t.dtype);
  const std::string format = options.format.empty() ? "safetensors" : options.format;
  std::unique_ptr<detail::CheckpointWriter> writer = detail::make_checkpoint_writer(format, output, infos, {});
  for (std::size_t i = 0; i < infos.size(); ++i) {  // one decoded weight at a time
    detail::check_cancel(options.cancel);
    writer->add(reader.tensor(i).data);
    reader.release(i);
    progress.bytes_done += element_count(infos[i].shape) * dtype_size(infos[i].dtype);
    progress.current_tensor = infos[i].name;
    if (options.on_progress) options.on_progress(progress);
  }
  writer->finish();
}

}  // namespace

void decode_file(const std::string& input, const std::string& output, Backend& backend,
                 const DecodeOptions& options) {
  detail::check_output_path(input, output);
  if (detail::starts_with_gguf_magic(input)) return decode_gguf(input, output, backend, options);
  if (!is_wq_container(input)) {
    // A compressed-tensors checkpoint (a safetensors file or sharded index) decodes too; any
    // other file gets the container reader's message below, a malformed compressed-tensors
    // one its own.
    std::unique_ptr<CheckpointReader> reader;
    try {
      reader = open_checkpoint(input);
    } catch (const Error& e) {
      if (std::string_view(e.what()).find("compressed-tensors") != std::string_view::npos) throw;
    }
    if (reader && reader->format() == "compressed-tensors") return decode_packed(*reader, output, options);
  }
  std::unique_ptr<ContainerReader> reader = ContainerReader::open(input);
  const std::vector<ContainerTensor>& tensors = reader->tensors();

  std::vector<TensorInfo> infos;
  Progress progress;
  for (const ContainerTensor& t : tensors) {
    infos.push_back(TensorInfo{t.name, t.dtype, t.shape});
    progress.bytes_total += t.stored_bytes;
  }
  const std::string format = options.format.empty() ? output_format_of_source(reader->source().format) : options.format;
  detail::WriterExtras extras;
  extras.paddle_name_table = reader->paddle_name_table();
  std::unique_ptr<detail::CheckpointWriter> writer = detail::make_checkpoint_writer(format, output, infos, extras);
  // One decoded tensor at a time: memory is the largest tensor. In huge pages, not zeroed
  // (io/page_buffer.h): the decoder writes every byte.
  detail::PageBuffer buffer;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    detail::check_cancel(options.cancel);
    const ContainerTensor& t = tensors[i];
    const std::uint64_t bytes = element_count(t.shape) * dtype_size(t.dtype);
    buffer.reserve(bytes);
    reader->decode(i, backend, MutableTensorView{t.name, t.dtype, t.shape, buffer.data()});
    writer->add(buffer.data());
    reader->release(i);
    progress.bytes_done += t.stored_bytes;
    progress.current_tensor = t.name;
    if (options.on_progress) options.on_progress(progress);
  }
  writer->finish();
}

std::string output_format_of_source(const std::string& source_format) {
  if (source_format == "torch" || source_format == "torch-legacy") return "pt";
  if (source_format == "paddle") return "pdparams";
  if (source_format == "npz" || source_format == "npy") return "npz";
  return "safetensors";
}

}  // namespace wq
