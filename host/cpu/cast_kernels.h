// CPU kernel of floating-point casts.
#pragma once

#include <cstdint>
#include <string_view>

#include "wq/backend.h"
#include "wq/dtype.h"

namespace wq::detail {

/// Converts elements [begin, end) between floating dtypes; see Backend::cast.
void cast_elements(DType from, const std::byte* src, DType to, std::byte* dst,
                   std::uint64_t begin, std::uint64_t end, bool check_overflow,
                   ErrorStats* stats, std::string_view tensor);

}  // namespace wq::detail
