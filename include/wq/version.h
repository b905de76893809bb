// Version of libwqcuda and of the container it writes.
#pragma once

namespace wq {
inline constexpr const char* kVersion = "0.1.0";
inline constexpr int kContainerVersion = 1;
}  // namespace wq
