// Checks shared by both backends' ggml block jobs, so that they refuse the same inputs with
// the same messages.
#pragma once

#include <cstdint>

#include "wq/backend.h"

namespace wq::detail {

/// The type's layout; throws Error(kUsage) naming `tensor` if `type` is not a block type.
codec::ggml::TypeLayout ggml_block_layout(codec::ggml::Type type, std::string_view tensor);

/// Throws Error(kUsage) unless `job` can be quantized: a block type, a floating input whose
/// innermost dimension is a multiple of the block. Returns the layout.
codec::ggml::TypeLayout check_ggml_quantize_job(const GgmlQuantizeJob& job);

/// Throws Error(kUsage) unless `job` can be decoded. Returns the layout.
codec::ggml::TypeLayout check_ggml_decode_job(const GgmlDecodeJob& job);

/// Bytes of `elements` values of `type` (whole blocks; the caller has checked).
std::uint64_t ggml_bytes(const codec::ggml::TypeLayout& layout, std::uint64_t elements);

}  // namespace wq::detail
