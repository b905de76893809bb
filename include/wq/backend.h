// The compute backend: one interface, a CPU implementation and a CUDA one.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "wq/export.h"
#include "wq/codec/ggml_blocks.h"
#include "wq/quant_spec.h"
#include "wq/tensor.h"

namespace wq {

/// How far a decoded tensor is from the original, accumulated in binary64.
struct WQ_API ErrorStats {
  std::uint64_t count = 0;        ///< elements compared
  double signal_energy = 0.0;     ///< sum of x^2
  double error_energy = 0.0;      ///< sum of (x - decoded)^2
  double max_abs_error = 0.0;     ///< max |x - decoded|

  /// Signal-to-quantization-noise ratio in dB; +infinity for a lossless encoding.
  double sqnr_db() const;
  /// Adds another partial result (same tensor, other elements).
  void merge(const ErrorStats& other);
};

/// Caller-owned output buffers of an affine quantization, sized by group_geometry():
/// `codes` holds geometry.code_bytes bytes, `scales` and `mins` geometry.groups values of the
/// spec's scale dtype (little-endian F32 or F16 bits). Method::kSymmetric writes no mins (each
/// is codec::symmetric_min() of its scale): `mins` may then be null.
struct AffineBuffers {
  std::uint8_t* codes = nullptr;
  std::byte* scales = nullptr;
  std::byte* mins = nullptr;
};

/// A stored affine tensor, as read from a container (read-only, caller-owned).
struct AffineTensor {
  const std::uint8_t* codes = nullptr;
  const std::byte* scales = nullptr;
  const std::byte* mins = nullptr;  ///< null for the symmetric encoding: min = codec::symmetric_min(scale)
  int bits = 8;
  std::uint64_t stored_group_size = 0;  ///< 0 = per-tensor
  ScaleDType scale_dtype = ScaleDType::kF32;
};

/// One tensor to quantize in a batch: input, spec, caller-owned outputs; `stats` is filled.
struct QuantizeJob {
  TensorView input;
  QuantSpec spec;
  AffineBuffers out;
  ErrorStats stats;
};

/// One tensor to code with per-group parameters its caller chose: the coding stage on its own,
/// for range searches outside the library. `scales` and `mins` are laid out as a container
/// stores them (AffineTensor: geometry.groups values of spec.scale_dtype; `mins` null for
/// Method::kSymmetric, whose mins follow from the scales); `codes` receives geometry.code_bytes
/// bytes. Any finite parameters are allowed: elements outside a group's range get its first or
/// last code. `stats` is filled.
struct EncodeJob {
  TensorView input;
  QuantSpec spec;
  const std::byte* scales = nullptr;
  const std::byte* mins = nullptr;
  std::uint8_t* codes = nullptr;
  ErrorStats stats;
};

/// One stored affine tensor to decode in a batch into `out` (original dtype and shape).
struct DequantizeJob {
  AffineTensor input;
  MutableTensorView out;
};

/// One floating-point conversion in a batch; see Backend::cast. `stats` is filled.
struct CastJob {
  TensorView input;
  MutableTensorView out;
  bool check_overflow = true;
  ErrorStats stats;
};

/// One floating tensor to quantize into ggml blocks (docs/ggml-types.md) with ggml's reference
/// quantizer for `type`: the bytes `llama-quantize` writes without an importance matrix.
/// Blocks run along the innermost dimension (ggml's ne[0]), which must be a multiple of the
/// type's block; `blocks` receives numel / block_elements * block_bytes bytes. `stats` is filled.
struct GgmlQuantizeJob {
  TensorView input;
  codec::ggml::Type type = codec::ggml::Type::kQ8_0;
  std::uint8_t* blocks = nullptr;
  /// false: ggml's reference bytes. true: wq's `mse` in the type's layout
  /// (codec/ggml_legacy_search.h, docs/ggml-types.md §4.1), for the legacy types Q4_0, Q4_1,
  /// Q5_0, Q5_1 and Q8_0: per block the least error of the reference block and wq's searches,
  /// so never further from the input than the reference on any block.
  bool search = false;
  ErrorStats stats;
};

/// Blocks of a ggml type to decode into `out` (any floating dtype), as ggml's
/// dequantize_row_* reads them; `out` has the tensor's element count.
struct GgmlDecodeJob {
  const std::uint8_t* blocks = nullptr;
  codec::ggml::Type type = codec::ggml::Type::kQ8_0;
  MutableTensorView out;
};

/// One 2-D floating tensor (F32/F16/BF16) [rows, cols] to quantize as compressed-tensors'
/// `pack-quantized` weights (docs/compressed-tensors.md), with its round-to-nearest arithmetic
/// emulated in the tensor's dtype (codec/pack_quantized.h): the bytes that compressed-tensors
/// writes for the same weights. Groups of `group_size` consecutive elements of a row (0: one
/// group per row, the "channel" strategy); group_size must divide cols. Outputs, caller-owned,
/// little-endian: `packed` rows * ceil(cols * bits / 32) int32 (weight_packed), `scales`
/// rows * groups values of the input dtype (weight_scale), and for asymmetric schemes
/// `zero_points` ceil(rows * bits / 32) * groups int32 (weight_zero_point, packed down the
/// rows). `stats` is filled.
struct PackQuantizeJob {
  TensorView input;
  int bits = 4;
  bool symmetric = true;
  std::uint64_t group_size = 0;
  std::byte* packed = nullptr;
  std::byte* scales = nullptr;
  std::byte* zero_points = nullptr;  ///< asymmetric only; may be null for symmetric
  /// false: compressed-tensors' own parameters (its bytes); true: wq's least-error search over
  /// narrowed ranges under the same format (codec::ct::search_params), never worse per group.
  bool search = false;
  ErrorStats stats;
};

/// A compute backend. Each method takes a batch so that many small tensors can run at once
/// (over CPU threads, or in one device launch); large tensors are split internally. Calls are
/// safe from one thread at a time. On failure a method throws the wq::Error of the first
/// failing job in batch order (naming its tensor via TensorView::name); the outputs of the
/// batch are then unspecified.
class WQ_API Backend {
 public:
  virtual ~Backend() = default;

  /// "cpu" or "cuda".
  virtual std::string_view name() const noexcept = 0;
  /// One line for humans: "cpu, 2 threads", "cuda, NVIDIA H100 (device 0)".
  virtual std::string description() const = 0;

  /// Affine-quantizes floating tensors (F64/F32/F16/BF16) per docs/container-format.md §3-4,
  /// each group's parameters chosen by the spec's method (minmax, symmetric, mse), and measures
  /// the error of the decoded values (in binary64 against binary32 decodes). Throws
  /// Error(kBadData) for NaN/Inf, a range that overflows binary32, or F16 parameters that
  /// overflow; Error(kUsage) for a non-floating input or an invalid spec.
  virtual void quantize(std::span<QuantizeJob> jobs) = 0;

  /// Codes floating tensors with the caller's parameters (see EncodeJob), as quantize() codes
  /// them after choosing its own: quantize() with a method's parameters and encode() with the
  /// same parameters write the same codes. Throws Error(kBadData) for NaN/Inf elements,
  /// Error(kUsage) for a parameter that is NaN or infinite, a non-floating input or an invalid
  /// spec.
  virtual void encode(std::span<EncodeJob> jobs) = 0;

  /// Decodes stored affine tensors.
  virtual void dequantize(std::span<DequantizeJob> jobs) = 0;

  /// Converts between floating dtypes (F64/F32/F16/BF16), rounding to nearest even through
  /// binary32. With `check_overflow`, NaN/Inf inputs and finite values that become infinite
  /// (F16 beyond 65504) throw Error(kBadData).
  virtual void cast(std::span<CastJob> jobs) = 0;

  /// Quantizes floating tensors into ggml blocks (see GgmlQuantizeJob), byte for byte as ggml's
  /// quantize_row_*_ref (or with wq's search where a job asks). Throws Error(kBadData) for
  /// NaN/Inf elements (ggml would write garbage); Error(kUsage) for a type that is not a block
  /// type, a search for a type that has none (the k-quants), a non-floating input or an
  /// innermost dimension that is not a multiple of the block.
  virtual void quantize_ggml(std::span<GgmlQuantizeJob> jobs) = 0;

  /// Decodes ggml blocks (see GgmlDecodeJob). Throws Error(kUsage) for a type that is not a
  /// block type, or an element count that is not whole blocks.
  virtual void decode_ggml(std::span<GgmlDecodeJob> jobs) = 0;

  /// Quantizes tensors as compressed-tensors' pack-quantized weights (see PackQuantizeJob).
  /// Throws Error(kBadData) for NaN/Inf elements, or an F16 group whose range overflows F16;
  /// Error(kUsage) for a tensor that is not 2-D F32/F16/BF16, bits outside 1..8, or a group size
  /// that does not divide the rows.
  virtual void quantize_packed(std::span<PackQuantizeJob> jobs) = 0;

  /// Single-tensor conveniences over the batch calls.
  ErrorStats quantize(const TensorView& input, const QuantSpec& spec, const AffineBuffers& out);
  ErrorStats encode(const TensorView& input, const QuantSpec& spec, const std::byte* scales, const std::byte* mins,
                    std::uint8_t* codes);
  void dequantize(const AffineTensor& input, const MutableTensorView& out);
  ErrorStats cast(const TensorView& input, const MutableTensorView& out, bool check_overflow);
  ErrorStats quantize_ggml(const TensorView& input, codec::ggml::Type type, std::uint8_t* blocks);
  void decode_ggml(const std::uint8_t* blocks, codec::ggml::Type type, const MutableTensorView& out);
  ErrorStats quantize_packed(const PackQuantizeJob& job);
};

enum class BackendKind { kAuto, kCpu, kCuda };

WQ_API std::string_view backend_kind_name(BackendKind kind) noexcept;

struct BackendOptions {
  BackendKind kind = BackendKind::kAuto;
  unsigned threads = 0;  ///< CPU worker threads; 0 = every core
  int device = 0;        ///< CUDA device ordinal
  /// Device memory the CUDA backend may take for its buffers (and as much pinned host
  /// memory); 0 = a quarter of the device's free memory, at most 1.5 GiB.
  std::uint64_t gpu_memory = 0;
};

/// The backend make_backend() chose, and a one-line notice for the user when `auto` had to
/// fall back (empty otherwise). The library never prints it itself.
struct BackendSelection {
  std::unique_ptr<Backend> backend;
  std::string notice;
};

/// Creates a backend. `auto` takes CUDA when this build has it and a device is present, else
/// the CPU with a notice saying why. `cuda` without CUDA support or a device throws
/// Error(kUnsupported).
WQ_API BackendSelection make_backend(const BackendOptions& options);

/// Whether this build of libwqcuda contains the CUDA backend.
WQ_API bool cuda_compiled() noexcept;

/// Number of CUDA devices visible (0 without CUDA or without a driver); `reason`, when not
/// null, receives why there are none.
WQ_API int cuda_device_count(std::string* reason = nullptr) noexcept;

}  // namespace wq
