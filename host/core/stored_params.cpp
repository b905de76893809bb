#include "core/stored_params.h"

#include <cstring>
#include <string>

#include "wq/error.h"

namespace wq::detail {

std::uint64_t first_nonfinite_group(const AffineTensor& in, std::uint64_t first, std::uint64_t last) {
  if (in.scale_dtype == ScaleDType::kF32) {
    for (std::uint64_t k = first; k < last; ++k) {
      std::uint32_t s, m;
      std::memcpy(&s, in.scales + 4 * k, 4);
      std::memcpy(&m, in.mins + 4 * k, 4);
      // Exponent all ones: infinity or NaN.
      if ((s & 0x7f800000u) == 0x7f800000u || (m & 0x7f800000u) == 0x7f800000u) return k;
    }
    return last;
  }
  for (std::uint64_t k = first; k < last; ++k) {
    std::uint16_t s, m;
    std::memcpy(&s, in.scales + 2 * k, 2);
    std::memcpy(&m, in.mins + 2 * k, 2);
    if ((s & 0x7c00u) == 0x7c00u || (m & 0x7c00u) == 0x7c00u) return k;
  }
  return last;
}

void throw_nonfinite_params(std::string_view name, std::uint64_t group) {
  throw Error(ErrorCode::kBadFormat, "tensor '" + std::string(name) + "': group " + std::to_string(group) +
                                         " has a NaN or infinite scale or min (the container is damaged)");
}

}  // namespace wq::detail
