// Which of the CPU kernels' instruction-set clones may run on this machine.
#pragma once

#include <cpuid.h>

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

/// AVX-512 F, VL, BW and DQ present too (and kept by the OS), and WQ_CPU_NO_AVX512 unset (=1
/// keeps the AVX2 clones on such a machine, so that the tests can run them there). The kernels
/// that use it are the AVX2 code compiled once more with these extensions: the same 256-bit
/// operations, with 32 vector registers instead of 16 for the ones that run out.
inline bool use_avx512vl() {
  static const bool has = use_avx2() && std::getenv("WQ_CPU_NO_AVX512") == nullptr &&
                          __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                          __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
  return has;
}

/// F16C (vcvtph2ps) present too: the float16 loads of the AVX2 kernels. Every AVX2 CPU known
/// has it, but it is its own CPUID bit (leaf 1, ECX bit 29). Read with cpuid itself: clang 16's
/// __builtin_cpu_supports does not know "f16c", and the OS's AVX state is already implied by
/// use_avx2().
inline bool use_f16c() {
  static const bool has = [] {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    return use_avx2() && __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & bit_F16C) != 0;
  }();
  return has;
}

/// Whether the AVX2 kernels that load (and store) float32, bfloat16 and float16 lanes can take
/// elements of `dtype` on this machine (F64 never: it goes through the generic kernels).
inline bool avx2_takes(DType dtype) {
  return use_avx2() && (dtype == DType::kF32 || dtype == DType::kBF16 || (dtype == DType::kF16 && use_f16c()));
}

}  // namespace wq::detail
