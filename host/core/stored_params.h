// Checks on the stored parameters of an affine tensor read from a container.
//
// The quantizer never stores a NaN or infinite scale or min, so one is a damaged (or hostile)
// file. It is refused rather than decoded: decoding it would give NaN values, and the bits of
// a NaN that arithmetic produces differ between CPUs and GPUs (x86 keeps the operand's sign
// and payload, CUDA gives 0x7fffffff), so the backends could not agree byte for byte.
#pragma once

#include <cstdint>

#include "wq/backend.h"

namespace wq::detail {

/// The first group in [first, last) whose stored scale or min is NaN or infinite; `last` when
/// there is none. The CPU backend reports such a group (the CUDA backend asks it to).
std::uint64_t first_nonfinite_group(const AffineTensor& in, std::uint64_t first, std::uint64_t last);

}  // namespace wq::detail
