// decode_file(): a WQ container in, a safetensors file with the original tensors out.
#include <vector>

#include "formats/safetensors_writer.h"
#include "io/atomic_file.h"
#include "pipeline/output_path.h"
#include "wq/error.h"
#include "wq/pipeline.h"

namespace wq {

void decode_file(const std::string& input, const std::string& output, Backend& backend,
                 const DecodeOptions& options) {
  detail::check_output_path(input, output);
  std::unique_ptr<ContainerReader> reader = ContainerReader::open(input);
  const std::vector<ContainerTensor>& tensors = reader->tensors();

  std::vector<detail::PartLayout> parts;
  Progress progress;
  for (const ContainerTensor& t : tensors) {
    parts.push_back(detail::PartLayout{t.name, t.dtype, t.shape});
    progress.bytes_total += t.stored_bytes;
  }
  detail::AtomicFile out(output);
  detail::SafetensorsWriter writer(out, parts, {{"format", "pt"}});
  std::vector<std::byte> buffer;  // one decoded tensor at a time: memory is the largest tensor
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    detail::check_cancel(options.cancel);
    const ContainerTensor& t = tensors[i];
    const std::uint64_t bytes = element_count(t.shape) * dtype_size(t.dtype);
    if (buffer.size() < bytes) buffer.resize(bytes);
    reader->decode(i, backend, MutableTensorView{t.name, t.dtype, t.shape, buffer.data()});
    writer.append(buffer.data(), bytes);
    reader->release(i);
    progress.bytes_done += t.stored_bytes;
    progress.current_tensor = t.name;
    if (options.on_progress) options.on_progress(progress);
  }
  writer.finish();
  out.commit();
}

}  // namespace wq
