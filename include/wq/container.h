// The WQ container, versions 1 and 2 (docs/container-format.md): a valid safetensors file whose
// `__metadata__["wq"]` describes how each logical tensor was encoded.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "wq/export.h"
#include "wq/backend.h"
#include "wq/checkpoint.h"
#include "wq/quant_spec.h"
#include "wq/tensor.h"

namespace wq {

/// kSymmetric (version 2) stores codes and scales only: each min is -2^(b-1) * scale.
/// kGgml (version 2) stores the blocks of a ggml type (docs/ggml-types.md), the bytes a GGUF
/// file holds, so that WQ and GGUF convert into each other without loss.
/// kPackQuantized is compressed-tensors' weight_packed/weight_scale/weight_zero_point/
/// weight_shape (docs/compressed-tensors.md): an output of OutputFormat::kCompressedTensors
/// only, never stored in a WQ container.
enum class Encoding { kAffine, kCast, kRaw, kSymmetric, kGgml, kPackQuantized };

WQ_API std::string_view encoding_name(Encoding encoding) noexcept;

/// Whether a tensor of this encoding is stored as packed codes with per-group parameters.
inline bool has_codes(Encoding encoding) { return encoding == Encoding::kAffine || encoding == Encoding::kSymmetric; }

/// Where a container's tensors came from (metadata "source").
struct SourceInfo {
  std::string file;    ///< base name of the input file
  std::string format;  ///< "safetensors", "torch", ...
  std::uint64_t bytes = 0;
};

/// A logical tensor of a container, with the parts that store it.
struct ContainerTensor {
  std::string name;
  DType dtype = DType::kF32;  ///< original dtype
  Shape shape;                ///< original shape
  Encoding encoding = Encoding::kRaw;
  int bits = 0;                       ///< has_codes() only
  std::uint64_t group_size = 0;       ///< has_codes() only; 0 = per-tensor
  std::string range;                  ///< has_codes(): "minmax", "mse" or "symmetric"; kGgml: "mse" or ""
  ScaleDType scale_dtype = ScaleDType::kF32;  ///< has_codes() only
  DType data_dtype = DType::kF32;     ///< cast/raw: dtype of the data part
  codec::ggml::Type ggml_type = codec::ggml::Type::kQ8_0;  ///< kGgml only: the block type
  std::vector<std::string> parts;     ///< part names: codes, scale, min (affine), codes, scale (symmetric), blocks (ggml) or data
  std::string xxh3;                   ///< 16 lowercase hex digits
  std::uint64_t stored_bytes = 0;     ///< bytes of all parts
};

/// A container opened for reading. Opening validates the safetensors layout and that the
/// metadata and parts agree (names, dtypes, sizes, encodings, bits); checksums are checked by
/// verify() and before every decode. Views stay valid while the reader lives.
class WQ_API ContainerReader {
 public:
  /// Throws Error(kInputMissing), Error(kBadFormat) (not a container, or inconsistent).
  static std::unique_ptr<ContainerReader> open(const std::string& path);
  virtual ~ContainerReader() = default;

  virtual const std::string& path() const noexcept = 0;
  virtual std::uint64_t file_bytes() const noexcept = 0;
  virtual const std::string& producer() const noexcept = 0;
  virtual const SourceInfo& source() const noexcept = 0;
  virtual const std::vector<ContainerTensor>& tensors() const noexcept = 0;
  /// Paddle's StructuredToParameterName@@ table of the source (empty for other formats).
  virtual const std::vector<std::pair<std::string, std::string>>& paddle_name_table() const noexcept = 0;
  /// A GGUF source's metadata pairs, exactly as its file stored them (key, type, value, back to
  /// back; docs/container-format.md §2), checked when the container was opened; empty for
  /// other formats. Quantizing the container into GGUF writes them back.
  virtual std::string_view gguf_metadata() const noexcept { return {}; }
  /// The same pairs for display (CheckpointReader::metadata()); empty for other sources.
  virtual std::vector<MetadataEntry> gguf_metadata_entries() const { return {}; }

  /// Recomputes tensor `index`'s XXH3-64; throws Error(kIntegrity) naming file and tensor on a
  /// mismatch.
  virtual void verify(std::size_t index) const = 0;

  /// Verifies then decodes tensor `index` into `out` (shape and dtype must be the original).
  virtual void decode(std::size_t index, Backend& backend, const MutableTensorView& out) = 0;

  /// Lets the pages of tensor `index` leave memory (it may still be read again).
  virtual void release(std::size_t index) = 0;
};

/// True when the file at `path` is a safetensors file carrying WQ metadata.
WQ_API bool is_wq_container(const std::string& path);

}  // namespace wq
