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

/// F16C (vcvtph2ps) present too: the float16 loads of the AVX2 kernels. Every AVX2 CPU known
/// has it, but it is its own CPUID bit.
inline bool use_f16c() {
  static const bool has = use_avx2() && __builtin_cpu_supports("f16c");
  return has;
}

}  // namespace wq::detail
