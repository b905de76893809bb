// Reading compressed-tensors `pack-quantized` checkpoints back (docs/compressed-tensors.md):
// which tensors of a safetensors file (or sharded index) form each quantized weight, their
// decode with the shared arithmetic of include/wq/codec/pack_quantized.h, and a reader that
// presents such a checkpoint as its decoded weights (open_checkpoint() uses it).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "wq/checkpoint.h"

namespace wq::detail {

/// One logical tensor of a pack-quantized checkpoint: a quantized weight (MODULE.weight, from
/// its weight_packed / weight_scale / [weight_zero_point] / weight_shape) or a plain tensor.
struct PackedTensor {
  TensorInfo info;        ///< name, dtype (the scale's) and shape of the decoded weight
  std::size_t data = 0;   ///< plain tensors: the reader's index; weights: weight_packed's
  std::optional<std::size_t> scale, zero_point;
  int bits = 0;           ///< 0 for plain tensors
};

/// The logical tensors of `reader` in its order (each weight where its weight_packed is), or
/// an empty list when it holds no weight_packed tensor. Bits come from the quantization_config
/// of the config.json beside `path` (its folder), or, without one, from weight_packed's width
/// where that is unambiguous. Throws Error(kBadFormat) naming the file and module for parts
/// that are missing or do not fit together, Error(kUnsupported) for activation ordering
/// (weight_g_idx).
std::vector<PackedTensor> packed_tensors(CheckpointReader& reader, const std::string& path);

/// Decodes weight `t` into `out` (t.info's dtype and element count): (u - z_u) * scale in the
/// scale's dtype, as compressed-tensors' _dequantize.
void decode_packed_weight(CheckpointReader& reader, const PackedTensor& t, std::byte* out);

/// `reader` (a safetensors file or sharded index) as compressed-tensors checkpoint when it holds
/// weight_packed tensors: format "compressed-tensors", each weight MODULE.weight decoded on
/// tensor() (its stored_quantized_as() names the width: "int4 pack-quantized"), the other
/// tensors as stored. Without weight_packed tensors `reader` itself. Throws as
/// packed_tensors().
std::unique_ptr<CheckpointReader> wrap_packed_checkpoint(std::unique_ptr<CheckpointReader> reader);

}  // namespace wq::detail
