// Decoding straight from the packed stream into float32 (and through L1 blocks into bfloat16
// and float16) with AVX2 + FMA: one pass, no intermediate byte-per-code buffer. Only call when use_avx2() (cpu_features.h) is true.
#pragma once

#include <cstddef>
#include <cstdint>

#include "wq/codec/affine.h"
#include "wq/quant_spec.h"
#include "wq/tensor.h"

namespace wq::detail {

/// Decodes elements [begin, end) (begin a multiple of 8) of the `bits`-wide packed stream
/// `codes` (g.code_bytes long) into float32 `dst` with params[group] of each element:
/// fma(scale, q, min) per element, the codec's affine_value(). `stream`: write with
/// non-temporal stores (outputs much larger than the caches, which would only be evicted).
void dequantize_f32_avx2(float* dst, const GroupGeometry& g, const codec::AffineParams* params, int bits,
                         std::uint64_t begin, std::uint64_t end, const std::uint8_t* codes, bool stream);

/// The same into bfloat16 or float16 `dst` (dtype kBF16 or kF16): each decoded binary32 value
/// rounded to nearest even, as codec::f32_to_bf16_bits / f32_to_f16_bits do. Only call when
/// use_avx2(), and for F16 use_f16c(), are true.
void dequantize_half_avx2(DType dtype, std::byte* dst, const GroupGeometry& g, const codec::AffineParams* params,
                          int bits, std::uint64_t begin, std::uint64_t end, const std::uint8_t* codes, bool stream);

}  // namespace wq::detail
