// wq's search in the legacy ggml layouts (wq/codec/ggml_legacy_search.h) with its candidates
// evaluated eight elements at a time.
#pragma once

#include <cstdint>

#include "wq/codec/affine.h"
#include "wq/codec/ggml_blocks.h"
#include "wq/codec/ggml_legacy_search.h"

namespace wq::detail {

/// codec::ggml::ScalarSearchKernels with AVX2, the same results bit for bit (why: the .cpp).
/// Only use when use_avx2() (cpu/cpu_features.h) is true.
struct Avx2SearchKernels {
  double symmetric(const float* x, float d, int low, int high, codec::ggml::SymmetricCodes* out) const;
  codec::ParamsStatus affine_params(const float* x, float lo, float hi, int bits, codec::AffineParams* out) const;
  double affine(const float* x, codec::AffineParams p, int bits, std::uint8_t* q) const;
};

}  // namespace wq::detail
