// Which of the CPU kernels' instruction-set clones may run on this machine.
#pragma once

#include <cstdlib>

namespace wq::detail {

/// AVX2 and FMA present, and WQ_CPU_BASELINE unset (=1 forces the SSE2 baseline, so that the
/// tests can run both paths on one machine). Decided once per process.
inline bool use_avx2() {
  static const bool has = std::getenv("WQ_CPU_BASELINE") == nullptr && __builtin_cpu_supports("avx2") &&
                          __builtin_cpu_supports("fma");
  return has;
}

}  // namespace wq::detail
