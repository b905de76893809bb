// Plain C++ entry points of the CUDA part of libwqcuda (no CUDA types leak out of cuda/).
#pragma once

#include <string>

namespace wq::cuda {

/// Number of CUDA devices the runtime sees; 0 with `reason` set when there are none or the
/// driver cannot be used. Never throws.
int device_count(std::string* reason) noexcept;

/// "NVIDIA H100 80GB HBM3 (sm_90, 79.1 GiB)" for device `ordinal`, or an empty string.
std::string device_name(int ordinal) noexcept;

}  // namespace wq::cuda
