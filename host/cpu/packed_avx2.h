// The compressed-tensors quantizer's inner loops with AVX2 (cpu/packed_kernels.cpp schedules
// them). They re-spell codec/pack_quantized.h's per-element arithmetic eight lanes at a time,
// because its scalar form (a division and three roundings to the model dtype per element)
// runs at a fifth of the speed a model folder needs to stay at the disk's pace. Every lane
// runs the same IEEE operations in the same order (division, rounding to bf16 by the same
// bit arithmetic or to fp16 by vcvtps2ph, addition, clamp, round half to even), so the codes
// are the codec's; the known-answer vectors hold both paths to compressed-tensors' bytes
// (the backend suites run once more with WQ_CPU_BASELINE=1). Only call when
// avx2_takes(dtype) (cpu_features.h).
#pragma once

#include <cstdint>

#include "wq/backend.h"
#include "wq/codec/pack_quantized.h"

namespace wq::detail {

/// The minimum and maximum of `count` elements of `dtype` at `in`; false when one of them is
/// NaN or infinite (the caller then finds and names it).
bool packed_range_avx2(DType dtype, const std::byte* in, std::uint64_t count, float* lo, float* hi);

/// The offset codes of `count` elements at `in` under `p` (codec::ct::code), into `codes`, and
/// their error statistics added to `stats`; false when an element decodes to NaN or infinity
/// (nothing is reported; the caller finds and names it with the codec).
bool packed_codes_avx2(DType dtype, const std::byte* in, std::uint64_t count, codec::ct::Params p, int bits,
                       std::uint8_t* codes, ErrorStats* stats);

/// packed_codes_avx2() for 4 bits and a multiple of 8 elements, writing the codes packed two
/// to a byte (LSB first) from `out`, whose first code is at a multiple of 8 in its row.
bool packed_nibbles_avx2(DType dtype, const std::byte* in, std::uint64_t count, codec::ct::Params p,
                         std::uint8_t* out, ErrorStats* stats);

/// codec::ct::search_error() of `count` elements at `in` under `p`: the same binary64, its
/// lanes eight AVX2 lanes (tests/backend/packed_backend_test.cpp holds the two equal).
double packed_search_error_avx2(DType dtype, const std::byte* in, std::uint64_t count, codec::ct::Params p, int bits);

}  // namespace wq::detail
