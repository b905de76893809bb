// CheckpointWriter for safetensors: SafetensorsWriter with the metadata transformers expects.
#include "formats/format_writers.h"
#include "formats/safetensors_writer.h"
#include "io/atomic_file.h"

namespace wq::detail {
namespace {

std::vector<PartLayout> layouts(const std::vector<TensorInfo>& tensors) {
  std::vector<PartLayout> parts;
  parts.reserve(tensors.size());
  for (const TensorInfo& t : tensors) parts.push_back(PartLayout{t.name, t.dtype, t.shape});
  return parts;
}

class SafetensorsCheckpointWriter final : public CheckpointWriter {
 public:
  SafetensorsCheckpointWriter(const std::string& path, const std::vector<TensorInfo>& tensors)
      : file_(path), writer_(file_, layouts(tensors), Metadata{{"format", "pt"}}), sequence_(path, tensors) {}

  void add(const std::byte* data) override {
    writer_.append(data, tensor_bytes(sequence_.next()));
  }

  void finish() override {
    sequence_.finish();
    writer_.finish();
    file_.commit();
  }

 private:
  AtomicFile file_;  // before writer_, which writes the header into it on construction
  SafetensorsWriter writer_;
  TensorSequence sequence_;
};

}  // namespace

std::unique_ptr<CheckpointWriter> make_safetensors_checkpoint_writer(const std::string& path,
                                                                     const std::vector<TensorInfo>& tensors) {
  return std::make_unique<SafetensorsCheckpointWriter>(path, tensors);
}

}  // namespace wq::detail
