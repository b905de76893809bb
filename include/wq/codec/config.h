// Portability layer of the codec: one spelling of every rounding-sensitive operation for host
// and device code.
//
// Bit-exact agreement between backends needs more than shared source: nvcc contracts a*b+c into
// FMA by default and host compilers may too. Every operation below names its rounding
// explicitly: device code uses the _rn intrinsics, host code plain IEEE binary32 operators
// (the project builds host code with -ffp-contract=off and never with -ffast-math).
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define WQ_HD __host__ __device__
#else
#define WQ_HD
#endif

// WQ_HD, always inlined: for codec functions that take a backend's own spelling of a loop as a
// parameter (ggml_kquants.h's finish functions), so that a host caller compiled for a wider
// target (target("avx2")) compiles them, and the loop it passes, for that target too.
#if defined(__CUDACC__)
#define WQ_HD_INLINE __host__ __device__ __forceinline__
#else
#define WQ_HD_INLINE inline __attribute__((always_inline))
#endif

#if !defined(__CUDA_ARCH__)
#include <cmath>
#endif

namespace wq::codec {

WQ_HD inline float add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

WQ_HD inline float sub_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}

WQ_HD inline float div_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}

WQ_HD inline float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

/// a*b+c with a single rounding (IEEE fusedMultiplyAdd).
WQ_HD inline float fma_rn(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}

// binary64 operations, for the sums of the mse search (codec/mse.h).
WQ_HD inline double add_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}

WQ_HD inline double sub_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dsub_rn(a, b);
#else
  return a - b;
#endif
}

WQ_HD inline double mul_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}

WQ_HD inline double div_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __ddiv_rn(a, b);
#else
  return a / b;
#endif
}

/// binary64 -> binary32, round to nearest even.
WQ_HD inline float narrow_rn(double a) {
#if defined(__CUDA_ARCH__)
  return __double2float_rn(a);
#else
  return static_cast<float>(a);
#endif
}

#if !defined(__CUDA_ARCH__)
// The host versions of the operations also accept SIMD vectors of floats (GCC/Clang vector
// extensions), so the CPU backend runs the very same expressions four or eight lanes at a time.
template <typename V>
inline V add_rn(V a, V b) { return a + b; }
template <typename V>
inline V sub_rn(V a, V b) { return a - b; }
template <typename V>
inline V mul_rn(V a, V b) { return a * b; }
template <typename V>
inline V div_rn(V a, V b) { return a / b; }
#endif

WQ_HD inline std::uint32_t float_bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

WQ_HD inline float bits_float(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

/// True for every value but NaN and ±infinity.
WQ_HD inline bool is_finite(float f) { return (float_bits(f) & 0x7f800000u) != 0x7f800000u; }

}  // namespace wq::codec
