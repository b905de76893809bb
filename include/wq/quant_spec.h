// How a tensor is to be encoded: the quantization spec.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "wq/export.h"
#include "wq/codec/affine.h"
#include "wq/codec/ggml_blocks.h"
#include "wq/tensor.h"

namespace wq {

/// How values are encoded (docs/container-format.md §4). The affine methods differ only in how
/// each group's parameters are chosen: `minmax` from the group's min and max; `symmetric` from
/// its largest magnitude, zero exactly representable and no stored min (§4.2); `mse` by a
/// least-error search that is never worse than minmax (§4.1). `fp16`/`bf16` cast to 16 bits.
/// `ggml` stores the blocks of a ggml type (QuantSpec::ggml_type; docs/ggml-types.md), as
/// llama.cpp's reference quantizers write them.
enum class Method { kMinMax, kSymmetric, kMse, kFp16, kBf16, kGgml };

/// Which elements share one (scale, min) pair. Groups never cross rows (design.md §3).
enum class Granularity { kTensor, kChannel, kGroup };

/// Stored type of the per-group scale and min.
enum class ScaleDType { kF32, kF16 };

/// A complete encoding request for one tensor. Validate with validate() before use.
struct WQ_API QuantSpec {
  Method method = Method::kMinMax;
  int bits = 8;                              ///< 1..8, affine methods only
  Granularity granularity = Granularity::kGroup;
  std::uint64_t group_size = 64;             ///< > 0; used with Granularity::kGroup
  ScaleDType scale_dtype = ScaleDType::kF32;
  /// Method::kGgml only: a ggml block type (Q8_0 ... Q6_K), or F32 (GGUF output: floats
  /// written as float32).
  codec::ggml::Type ggml_type = codec::ggml::Type::kQ8_0;
  /// Method::kGgml only: wq's `mse` search in the type's layout instead of ggml's reference
  /// arithmetic (docs/ggml-types.md §4.1; the legacy types Q4_0, Q4_1, Q5_0, Q5_1, Q8_0).
  bool ggml_mse = false;

  bool is_affine() const { return method == Method::kMinMax || method == Method::kSymmetric ||
                                  method == Method::kMse; }

  /// Throws Error(kUsage) for bits outside 1..8, group_size 0, a ggml type that is neither a
  /// block type nor F32, or ggml_mse with a type that has no search (the k-quants, F32).
  void validate() const;

  /// The part of the spec every kernel needs (affine methods): range rule, bits, scale dtype.
  codec::Recipe recipe() const;
};

/// Names as the CLI spells them ("minmax", "channel", "f16", ...).
WQ_API std::string_view method_name(Method method) noexcept;
WQ_API std::string_view granularity_name(Granularity granularity) noexcept;
WQ_API std::string_view scale_dtype_name(ScaleDType scale_dtype) noexcept;
WQ_API std::optional<Method> parse_method(std::string_view name) noexcept;
WQ_API std::optional<Granularity> parse_granularity(std::string_view name) noexcept;
WQ_API std::optional<ScaleDType> parse_scale_dtype(std::string_view name) noexcept;

/// A ggml type name as users write it ("Q4_K", "q8_0", "F16", case-insensitive) as a spec:
/// block types and F32 give Method::kGgml, F16 and BF16 the casts. A base whose method is
/// kMse (or that searches already) asks for the search: ggml_mse is set. nullopt for other
/// names.
WQ_API std::optional<QuantSpec> ggml_type_spec(std::string_view name, const QuantSpec& base);

/// The ggml types --type accepts, for messages: "F32, F16, BF16, Q4_0, ...".
WQ_API std::string ggml_type_names();

/// The group geometry of a tensor under a spec (design.md §3): `rows = shape[0]` (1 for 0-d
/// and 1-d tensors), `cols = n / rows`, groups of `group_size` consecutive elements of a row.
struct GroupGeometry {
  std::uint64_t rows = 0;
  std::uint64_t cols = 0;
  std::uint64_t group_size = 0;      ///< G as the arithmetic uses it (cols for per-channel)
  std::uint64_t groups_per_row = 0;  ///< ceil(cols / G)
  std::uint64_t groups = 0;          ///< rows * groups_per_row
  std::uint64_t stored_group_size = 0;  ///< as written to the container: 0 for per-tensor
  std::uint64_t code_bytes = 0;      ///< ceil(n * bits / 8)
};

/// Geometry of `shape` under `spec` (an affine spec). Tensors with no elements have 0 groups.
WQ_API GroupGeometry group_geometry(const Shape& shape, const QuantSpec& spec);

/// Geometry of a stored tensor from the container's `group_size` (0 = per-tensor) and bits.
WQ_API GroupGeometry stored_group_geometry(const Shape& shape, std::uint64_t stored_group_size, int bits);

}  // namespace wq
