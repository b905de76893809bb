// Decoding straight from the packed stream into float32 with AVX2 + FMA: one pass, no
// intermediate byte-per-code buffer. Only call when use_avx2() (cpu_features.h) is true.
#pragma once

#include <cstdint>

#include "wq/codec/affine.h"
#include "wq/quant_spec.h"

namespace wq::detail {

/// Decodes elements [begin, end) (begin a multiple of 8) of the `bits`-wide packed stream
/// `codes` (g.code_bytes long) into float32 `dst` with params[group] of each element:
/// fma(scale, q, min) per element, the codec's affine_value(). `stream`: write with
/// non-temporal stores (outputs much larger than the caches, which would only be evicted).
void dequantize_f32_avx2(float* dst, const GroupGeometry& g, const codec::AffineParams* params, int bits,
                         std::uint64_t begin, std::uint64_t end, const std::uint8_t* codes, bool stream);

}  // namespace wq::detail
