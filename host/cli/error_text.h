// An error as wq-gpu prints it: the library's message, then its hints (wq::ErrorHint) as the
// flags that would avoid it. The library names no flag itself; the Python package renders the
// same hints as keyword arguments.
#pragma once

#include <string>

#include "wq/error.h"

namespace wq::cli {

/// e.what(), then " (use --keep-nonfinite to store such tensors raw)" and the like.
std::string error_text(const Error& e);

}  // namespace wq::cli
