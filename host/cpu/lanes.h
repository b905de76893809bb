// SIMD lanes for the CPU kernels: GCC/Clang vector extensions, so one source serves the
// baseline target (4 lanes, SSE) and an AVX2 clone (8 lanes) chosen at run time.
//
// Floating-point sums are never reassociated by the compiler (no fast-math), so loops keep
// L independent partial results by hand; that is what lets them vectorise. Everything here
// is always_inline: inlined into a target("avx2") caller it is compiled for AVX2.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "cpu/element_io.h"
#include "wq/backend.h"
#include "wq/codec/affine.h"

#define WQ_INLINE inline __attribute__((always_inline))

namespace wq::detail {

// Spelled out per width: GCC drops vector_size attributes whose size depends on a template
// parameter in an alias template.
template <int L>
struct Lanes;
template <>
struct Lanes<4> {
  typedef float Float __attribute__((vector_size(16)));
  typedef std::int32_t Int __attribute__((vector_size(16)));
  typedef std::uint8_t Byte __attribute__((vector_size(4)));
};
template <>
struct Lanes<8> {
  typedef float Float __attribute__((vector_size(32)));
  typedef std::int32_t Int __attribute__((vector_size(32)));
  typedef std::uint8_t Byte __attribute__((vector_size(8)));
};
template <int L>
using FloatLanes = typename Lanes<L>::Float;

/// The low byte of each int32 lane (values 0..255), as a byte shuffle: converting element by
/// element would be scalarised by the compiler.
WQ_INLINE Lanes<4>::Byte low_bytes(Lanes<4>::Int v) {
  typedef std::uint8_t Bytes16 __attribute__((vector_size(16)));
  Bytes16 b;
  std::memcpy(&b, &v, sizeof b);
  return __builtin_shufflevector(b, b, 0, 4, 8, 12);
}
WQ_INLINE Lanes<8>::Byte low_bytes(Lanes<8>::Int v) {
  typedef std::uint8_t Bytes32 __attribute__((vector_size(32)));
  Bytes32 b;
  std::memcpy(&b, &v, sizeof b);
  return __builtin_shufflevector(b, b, 0, 4, 8, 12, 16, 20, 24, 28);
}
/// The lanes as an array of floats, for kernels that take a float* (clang refuses the address
/// of a vector element, &v[0]).
template <typename V>
WQ_INLINE float* lane_data(V* v) {
  return reinterpret_cast<float*>(v);
}
template <int L>
using IntLanes = typename Lanes<L>::Int;
template <int L>
using ByteLanes = typename Lanes<L>::Byte;

/// Smallest / largest lane, in log2(L) shuffle steps (a scalar loop over the lanes costs more
/// than the group of 64 it reduces). Lanes hold no NaN here; which of -0.0 and +0.0 wins does
/// not matter (codec::affine_params maps -0.0 to +0.0).
WQ_INLINE float min_of_lanes(Lanes<4>::Float v) {
  Lanes<4>::Float w = __builtin_shufflevector(v, v, 2, 3, 0, 1);
  v = w < v ? w : v;
  w = __builtin_shufflevector(v, v, 1, 0, 3, 2);
  v = w < v ? w : v;
  return v[0];
}
WQ_INLINE float max_of_lanes(Lanes<4>::Float v) {
  Lanes<4>::Float w = __builtin_shufflevector(v, v, 2, 3, 0, 1);
  v = w > v ? w : v;
  w = __builtin_shufflevector(v, v, 1, 0, 3, 2);
  v = w > v ? w : v;
  return v[0];
}
WQ_INLINE float min_of_lanes(Lanes<8>::Float v) {
  const Lanes<4>::Float a = __builtin_shufflevector(v, v, 0, 1, 2, 3), b = __builtin_shufflevector(v, v, 4, 5, 6, 7);
  return min_of_lanes(b < a ? b : a);
}
WQ_INLINE float max_of_lanes(Lanes<8>::Float v) {
  const Lanes<4>::Float a = __builtin_shufflevector(v, v, 0, 1, 2, 3), b = __builtin_shufflevector(v, v, 4, 5, 6, 7);
  return max_of_lanes(b > a ? b : a);
}

/// Error statistics: L binary32 partial sums over at most one block of elements (rounding far
/// below what a report shows), folded into binary64 by fold_into().
template <int L>
struct LaneStats {
  FloatLanes<L> signal{};
  FloatLanes<L> error{};
  FloatLanes<L> max_error{};

  WQ_INLINE void add(const FloatLanes<L>& x, const FloatLanes<L>& decoded) {
    const FloatLanes<L> e = x - decoded;
    signal += x * x;
    error += e * e;
    const FloatLanes<L> a = e < 0 ? -e : e;
    max_error = a > max_error ? a : max_error;
  }

  /// The same with the error e = x - decoded already computed (the quantize loops use
  /// (x - min) - scale * q: the same two roundings' worth of accuracy, one operation fewer).
  WQ_INLINE void add_error(const FloatLanes<L>& x, const FloatLanes<L>& e) {
    signal += x * x;
    error += e * e;
    // |e| by clearing the sign bit: one instruction (a compare and a blend otherwise).
    const FloatLanes<L> a = (FloatLanes<L>)((IntLanes<L>)e & 0x7fffffff);
    max_error = a > max_error ? a : max_error;
  }

  WQ_INLINE void add_one(float x, float decoded) {
    FloatLanes<L> xv{}, dv{};
    xv[0] = x;
    dv[0] = decoded;
    add(xv, dv);
  }

  WQ_INLINE void merge(const LaneStats& other) {
    signal += other.signal;
    error += other.error;
    max_error = other.max_error > max_error ? other.max_error : max_error;
  }

  void fold_into(ErrorStats* stats, std::uint64_t count) {
    ErrorStats s;
    s.count = count;
    for (int l = 0; l < L; ++l) {
      s.signal_energy += signal[l];
      s.error_energy += error[l];
      s.max_abs_error = std::max(s.max_abs_error, static_cast<double>(max_error[l]));
    }
    signal = error = max_error = FloatLanes<L>{};
    stats->merge(s);
  }
};

/// Many chunks' LaneStats<8>, each chunk's binary32 lane sums added to binary64 lanes (add())
/// and folded once, by folded(). The same binary64 sums of the same binary32 partials as a
/// fold_into() per chunk, in another order; a fold per chunk is a chain of sixteen dependent
/// additions, which with the merge after it was a fifth of Q8_0's time through the backend
/// (Zen 5, bench/RESULTS.md). Plain arrays: baseline code holds one, AVX2 code adds to it.
struct WideLaneStats {
  double signal[8] = {}, error[8] = {};
  float max_error[8] = {};
  std::uint64_t count = 0;

  /// Where every lane's sums in `chunk` are finite: adds them lane by lane, with `elements`
  /// elements, and returns true. Otherwise false, and nothing is added.
  WQ_INLINE bool add(const LaneStats<8>& chunk, std::uint64_t elements) {
    typedef double Wide __attribute__((vector_size(64)));
    // The sums are >= 0 or NaN, so both are finite exactly where their sum is below infinity.
    // Reduced in three shuffles: a test per lane was 5-8 % slower on Q8_0 (Zen 5).
    const FloatLanes<8> both = chunk.signal + chunk.error;
    IntLanes<8> finite = both < __builtin_inff();
    finite &= __builtin_shufflevector(finite, finite, 4, 5, 6, 7, 0, 1, 2, 3);
    finite &= __builtin_shufflevector(finite, finite, 2, 3, 0, 1, 6, 7, 4, 5);
    finite &= __builtin_shufflevector(finite, finite, 1, 0, 3, 2, 5, 4, 7, 6);
    if (finite[0] == 0) return false;
    Wide s, e;
    std::memcpy(&s, signal, sizeof s);
    std::memcpy(&e, error, sizeof e);
    s += __builtin_convertvector(chunk.signal, Wide);
    e += __builtin_convertvector(chunk.error, Wide);
    std::memcpy(signal, &s, sizeof s);
    std::memcpy(error, &e, sizeof e);
    FloatLanes<8> m;
    std::memcpy(&m, max_error, sizeof m);
    m = chunk.max_error > m ? chunk.max_error : m;
    std::memcpy(max_error, &m, sizeof m);
    count += elements;
    return true;
  }

  ErrorStats folded() const {
    ErrorStats s;
    s.count = count;
    for (int l = 0; l < 8; ++l) {
      s.signal_energy += signal[l];
      s.error_energy += error[l];
      s.max_abs_error = std::max(s.max_abs_error, static_cast<double>(max_error[l]));
    }
    return s;
  }
};

/// L consecutive elements as binary32.
template <DType D, int L>
WQ_INLINE FloatLanes<L> load_lanes(const std::byte* src, std::uint64_t i) {
  FloatLanes<L> x;
  if constexpr (D == DType::kF32) {
    std::memcpy(&x, src + 4 * i, sizeof x);
  } else {
    for (int l = 0; l < L; ++l) x[l] = load_f32<D>(src, i + l);
  }
  return x;
}

/// The decoded value, for error statistics only: scale * q + min with two roundings instead
/// of the decoder's single fma. The difference (at most one binary32 ulp of the value) is far
/// below the error being measured.
WQ_INLINE float approx_decoded(float code, codec::AffineParams p) { return p.scale * code + p.min; }

}  // namespace wq::detail
