#include "core/stored_params.h"

#include <cstring>

namespace wq::detail {

namespace {

// Word is the stored parameter's bits (binary32 or binary16); an exponent of all ones is an
// infinity or a NaN.
template <typename Word>
std::uint64_t first_nonfinite(const AffineTensor& in, std::uint64_t first, std::uint64_t last, Word exponent) {
  for (std::uint64_t k = first; k < last; ++k) {
    Word s, m;
    std::memcpy(&s, in.scales + sizeof(Word) * k, sizeof(Word));
    m = 0;  // a symmetric tensor's min is derived from its scale
    if (in.mins) std::memcpy(&m, in.mins + sizeof(Word) * k, sizeof(Word));
    if ((s & exponent) == exponent || (m & exponent) == exponent) return k;
  }
  return last;
}

}  // namespace

std::uint64_t first_nonfinite_group(const AffineTensor& in, std::uint64_t first, std::uint64_t last) {
  if (in.scale_dtype == ScaleDType::kF32) return first_nonfinite<std::uint32_t>(in, first, last, 0x7f800000u);
  return first_nonfinite<std::uint16_t>(in, first, last, 0x7c00u);
}

}  // namespace wq::detail
