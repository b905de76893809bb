// The range stage of the `mse` method on the CPU: each group's parameters by the search of
// wq/codec/mse.h. The codes are then made by the ordinary coders (quantize_elements), which
// clamp, since an mse range may clip.
#pragma once

#include <cstdint>

#include "cpu/affine_kernels.h"
#include "wq/codec/affine.h"
#include "wq/quant_spec.h"
#include "wq/tensor.h"

namespace wq::detail {

/// params[k] for groups [first_group, last_group) of a floating tensor: each group's min and
/// max, then codec::mse_params(). Stops at the first group whose range is not finite or whose
/// min-max parameters are refused, and says why (as quantize_groups() does).
GroupFailure mse_group_params(DType dtype, const std::byte* src, const GroupGeometry& geometry,
                              const codec::Recipe& recipe, std::uint64_t first_group, std::uint64_t last_group,
                              codec::AffineParams* params);

/// The search over one group of elements [0, n) whose finite range [lo, hi] the caller has
/// reduced (per-tensor quantization): codec::mse_params()'s status.
codec::ParamsStatus mse_span_params(DType dtype, const std::byte* src, std::uint64_t n, float lo, float hi,
                                    const codec::Recipe& recipe, codec::AffineParams* params);

}  // namespace wq::detail
