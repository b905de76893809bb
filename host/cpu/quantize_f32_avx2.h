// The hot loop of quantization for float32 input, written for AVX2 + FMA with intrinsics: the
// generic vector-extension version kept its accumulators in memory (register pressure) and ran
// at ~1.5 cycles per element. Only call when use_avx2() (cpu_features.h) is true.
#pragma once

#include <cstddef>
#include <cstdint>

#include "wq/codec/affine.h"

namespace wq::detail {

/// One run of elements of one group, for quantize_runs_f32_avx2().
struct F32Run {
  std::uint64_t begin, end;  ///< elements [begin, end) of the tensor
  codec::AffineParams params;
  float reciprocal;          ///< RN(1 / params.scale)
};

/// For each of `count` runs whose scale is nonzero and reciprocal_is_exact_enough(): the codes
/// of its first (end - begin) / 16 * 16 elements of float32 `src` into codes[i - base], one
/// byte each, through the reciprocal with the proved fallback of reciprocal_code.h, and their
/// error added to the 8-lane binary32 sums `signal` and `error` (of x^2 and e^2) and
/// `max_error` (max |e|). done[k] is set to the number of elements of run k handled (0 for the
/// runs left to the caller). Fetches `prefetch_bytes` ahead of what it reads.
void quantize_runs_f32_avx2(const std::byte* src, const F32Run* runs, int count, float max_code,
                            std::uint8_t* codes, std::uint64_t base, std::uint64_t prefetch_bytes,
                            float* signal, float* error, float* max_error, std::uint64_t* done);

}  // namespace wq::detail
