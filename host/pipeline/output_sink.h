// The output seam of quantize_file(): where the encoded tensors go. The pipeline (planning,
// batches, the overlap of reading, encoding and writing, the atomic temporary file) is shared;
// a sink only lays out one file format. Two exist: the WQ container and GGUF.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "container/container_metadata.h"
#include "io/atomic_file.h"
#include "wq/checkpoint.h"
#include "wq/pipeline.h"

namespace wq::detail {

class OutputSink {
 public:
  virtual ~OutputSink() = default;
  /// Appends the stored bytes of tensor `index` (tensors arrive in plan order, each whole,
  /// possibly on a writer thread).
  virtual void append(std::size_t index, const std::byte* data, std::uint64_t bytes) = 0;
  /// Completes the file once every tensor is appended; `metadata` now has each checksum.
  virtual void finish(const ContainerMetadata& metadata) = 0;
  /// Bytes of the finished file.
  virtual std::uint64_t total_bytes() const = 0;
};

/// The WQ container (docs/container-format.md): a safetensors file of the plan's parts, its
/// metadata rewritten with the checksums at the end.
std::unique_ptr<OutputSink> make_container_sink(AtomicFile& out, const ContainerMetadata& metadata,
                                                const std::vector<PartLayout>& parts);

/// A plain safetensors file of the plan's parts (compressed-tensors output), metadata
/// {"format": "pt"}.
std::unique_ptr<OutputSink> make_safetensors_sink(AtomicFile& out, const std::vector<PartLayout>& parts);

/// A GGUF file (docs/gguf.md) of the plan's tensors, each of which must be stored as a ggml
/// type (ggml blocks, a cast to F32/F16/BF16, or a raw tensor of a type GGUF has). A GGUF
/// input's metadata is kept, with general.file_type and general.quantization_version updated.
/// Throws Error(kUsage) naming a tensor that GGUF cannot hold.
std::unique_ptr<OutputSink> make_gguf_sink(AtomicFile& out, const ContainerMetadata& metadata,
                                           const CheckpointReader& reader, const QuantizeOptions& options);

/// The ggml type a planned tensor is stored as in GGUF, or nullopt when GGUF has none for it.
std::optional<codec::ggml::Type> gguf_type_of(const ContainerTensor& tensor);

}  // namespace wq::detail
