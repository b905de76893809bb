// Which of the CPU kernels' instruction-set clones may run on this machine.
#pragma once

#include <cstdlib>

#include "wq/tensor.h"

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

/// Whether the AVX2 kernels that load (and store) float32, bfloat16 and float16 lanes can take
/// elements of `dtype` on this machine (F64 never: it goes through the generic kernels).
inline bool avx2_takes(DType dtype) {
  return use_avx2() && (dtype == DType::kF32 || dtype == DType::kBF16 || (dtype == DType::kF16 && use_f16c()));
}

}  // namespace wq::detail
