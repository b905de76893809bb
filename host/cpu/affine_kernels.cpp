#include "cpu/affine_kernels.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include "cpu/element_io.h"
#include "wq/codec/pack.h"
#include "wq/error.h"

namespace wq::detail {
namespace {

// Work is done in blocks of codes that stay in L1; a multiple of 8 so blocks pack to whole
// bytes.
constexpr std::uint64_t kBlock = 4096;
// Floating-point sums are not reassociated by the compiler (no fast-math), so the loops keep
// kLanes independent partial results by hand; that is what lets them vectorise. Four lanes:
// one SSE register on the baseline x86-64 target (wider vectors get split and spilled).
constexpr int kLanes = 4;

// Error statistics: kLanes independent binary32 partial sums (a GCC/Clang vector, so the loop
// is vectorised whatever the target), over one block of at most kBlock elements (rounding far
// below what a report shows), folded into binary64 per block.
using LaneVector = float __attribute__((vector_size(4 * kLanes)));

struct LaneStats {
  LaneVector signal{};
  LaneVector error{};
  LaneVector max_error{};

  void fold_into(ErrorStats* stats, std::uint64_t count) {
    ErrorStats s;
    s.count = count;
    for (int l = 0; l < kLanes; ++l) {
      s.signal_energy += signal[l];
      s.error_energy += error[l];
      s.max_abs_error = std::max(s.max_abs_error, static_cast<double>(max_error[l]));
    }
    signal = error = max_error = LaneVector{};
    stats->merge(s);
  }
};

// The decoded value, for error statistics only: scale * q + min with two roundings instead of
// the decoder's single fma. The difference (at most one binary32 ulp of the value) is far
// below the error being measured, and a libm fma call per element would cost more than the
// quantization itself.
inline float approx_decoded(float code, codec::AffineParams p) { return p.scale * code + p.min; }

inline void accumulate(LaneStats& acc, LaneVector x, LaneVector decoded) {
  const LaneVector e = x - decoded;
  acc.signal += x * x;
  acc.error += e * e;
  const LaneVector a = e < 0 ? -e : e;
  acc.max_error = a > acc.max_error ? a : acc.max_error;
}

// One element into lane 0 (tails of runs).
inline void accumulate_one(LaneStats& acc, float x, float decoded) {
  LaneVector xv{}, dv{};
  xv[0] = x;
  dv[0] = decoded;
  accumulate(acc, xv, dv);
}

template <DType D>
inline LaneVector load_lanes(const std::byte* src, std::uint64_t i) {
  LaneVector x;
  if constexpr (D == DType::kF32) {
    std::memcpy(&x, src + 4 * i, sizeof x);
  } else {
    for (int l = 0; l < kLanes; ++l) x[l] = load_f32<D>(src, i + l);
  }
  return x;
}

// NaN never wins a comparison, so it is skipped here; the quantize pass reports it.
template <DType D>
void minmax_run(const std::byte* src, std::uint64_t begin, std::uint64_t end, float* lo_out,
                float* hi_out) {
  const LaneVector inf = LaneVector{} + std::numeric_limits<float>::infinity();
  LaneVector lo0 = inf, lo1 = inf, hi0 = -inf, hi1 = -inf;
  std::uint64_t i = begin;
  for (; i + 2 * kLanes <= end; i += 2 * kLanes) {
    const LaneVector a = load_lanes<D>(src, i), b = load_lanes<D>(src, i + kLanes);
    lo0 = a < lo0 ? a : lo0;
    hi0 = a > hi0 ? a : hi0;
    lo1 = b < lo1 ? b : lo1;
    hi1 = b > hi1 ? b : hi1;
  }
  lo0 = lo1 < lo0 ? lo1 : lo0;
  hi0 = hi1 > hi0 ? hi1 : hi0;
  float lo = *lo_out, hi = *hi_out;
  for (int l = 0; l < kLanes; ++l) {
    lo = lo0[l] < lo ? lo0[l] : lo;
    hi = hi0[l] > hi ? hi0[l] : hi;
  }
  for (; i < end; ++i) {
    const float x = load_f32<D>(src, i);
    lo = x < lo ? x : lo;
    hi = x > hi ? x : hi;
  }
  *lo_out = lo;
  *hi_out = hi;
}

// One pass over a run of a group: the codec's code expression evaluated kLanes at a time,
// the integer-valued float result both stored as the code and used for the error, with two
// independent accumulators to hide the adds' latency.
template <DType D>
void quantize_run(const std::byte* src, std::uint64_t begin, std::uint64_t end,
                  codec::AffineParams p, float max_code, std::uint8_t* codes, LaneStats& acc) {
  using LaneInts = std::int32_t __attribute__((vector_size(4 * kLanes)));
  const std::uint64_t n = end - begin;
  if (p.scale == 0.0f) {  // a constant group: every code is 0, every decoded value is min
    std::memset(codes, 0, n);
    for (std::uint64_t i = 0; i < n; ++i) accumulate_one(acc, load_f32<D>(src, begin + i), p.min);
    return;
  }
  const LaneVector zero{};
  const LaneVector scale = zero + p.scale, min = zero + p.min, top = zero + max_code;
  LaneStats second;
  const auto lanes = [&](std::uint64_t i, LaneStats& into) {
    const LaneVector x = load_lanes<D>(src, begin + i);
    const LaneVector q = codec::affine_code_value(x, scale, min, top);
    using LaneBytes = std::uint8_t __attribute__((vector_size(kLanes)));
    const LaneBytes qb = __builtin_convertvector(__builtin_convertvector(q, LaneInts), LaneBytes);
    std::memcpy(codes + i, &qb, kLanes);
    accumulate(into, x, scale * q + min);
  };
  std::uint64_t i = 0;
  for (; i + 2 * kLanes <= n; i += 2 * kLanes) {
    lanes(i, acc);
    lanes(i + kLanes, second);
  }
  for (; i + kLanes <= n; i += kLanes) lanes(i, acc);
  for (; i < n; ++i) {
    const float x = load_f32<D>(src, begin + i);
    const std::uint32_t q = codec::affine_code(x, p, max_code);
    codes[i] = static_cast<std::uint8_t>(q);
    accumulate_one(acc, x, approx_decoded(static_cast<float>(q), p));
  }
  acc.signal += second.signal;
  acc.error += second.error;
  acc.max_error = second.max_error > acc.max_error ? second.max_error : acc.max_error;
}

// The width is a template parameter so that pack8/unpack8 compile to straight shifts.
// Widths that divide 8 pack whole codes per byte: the same bit layout as pack8 (code i at
// stream bits [i*B, i*B+B), LSB first), written as a loop the compiler vectorises; 8 bits is
// a copy. The tests check every width against the bit-level definition.
template <int B>
void pack_block_t(const std::uint8_t* codes, std::uint64_t count, std::uint8_t* out) {
  const std::uint64_t full = count / 8;
  if constexpr (B == 8) {
    std::memcpy(out, codes, full * 8);
  } else if constexpr (8 % B == 0) {
    constexpr int kPerByte = 8 / B;
    for (std::uint64_t k = 0; k < full * B; ++k) {
      std::uint8_t byte = 0;
      for (int t = 0; t < kPerByte; ++t) byte |= static_cast<std::uint8_t>(codes[k * kPerByte + t] << (t * B));
      out[k] = byte;
    }
  } else {
    for (std::uint64_t k = 0; k < full; ++k) codec::pack8(codes + 8 * k, B, out + k * B);
  }
  const int tail = static_cast<int>(count % 8);
  if (tail != 0) codec::pack_tail(codes + 8 * full, tail, B, out + full * B);
}

template <int B>
void unpack_block_t(const std::uint8_t* in, std::uint64_t count, std::uint8_t* codes) {
  const std::uint64_t full = count / 8;
  if constexpr (B == 8) {
    std::memcpy(codes, in, full * 8);
  } else if constexpr (8 % B == 0) {
    constexpr int kPerByte = 8 / B;
    constexpr unsigned kMask = (1u << B) - 1u;
    for (std::uint64_t k = 0; k < full * B; ++k) {
      for (int t = 0; t < kPerByte; ++t) codes[k * kPerByte + t] = static_cast<std::uint8_t>((in[k] >> (t * B)) & kMask);
    }
  } else {
    for (std::uint64_t k = 0; k < full; ++k) codec::unpack8(in + k * B, B, codes + 8 * k);
  }
  const int tail = static_cast<int>(count % 8);
  if (tail != 0) codec::unpack_tail(in + full * B, tail, B, codes + 8 * full);
}

template <template <int> class Op, typename... Args>
void with_width(int bits, Args... args) {
  switch (bits) {
    case 1: return Op<1>::run(args...);
    case 2: return Op<2>::run(args...);
    case 3: return Op<3>::run(args...);
    case 4: return Op<4>::run(args...);
    case 5: return Op<5>::run(args...);
    case 6: return Op<6>::run(args...);
    case 7: return Op<7>::run(args...);
    default: return Op<8>::run(args...);
  }
}

template <int B>
struct PackOp {
  static void run(const std::uint8_t* codes, std::uint64_t count, std::uint8_t* out) {
    pack_block_t<B>(codes, count, out);
  }
};

template <int B>
struct UnpackOp {
  static void run(const std::uint8_t* in, std::uint64_t count, std::uint8_t* codes) {
    unpack_block_t<B>(in, count, codes);
  }
};

void pack_block(const std::uint8_t* codes, std::uint64_t count, int bits, std::uint8_t* out) {
  with_width<PackOp>(bits, codes, count, out);
}

void unpack_block(const std::uint8_t* in, std::uint64_t count, int bits, std::uint8_t* codes) {
  with_width<UnpackOp>(bits, in, count, codes);
}

std::string describe_value(float x) {
  if (std::isnan(x)) return "NaN";
  return x > 0 ? "+infinity" : "-infinity";
}

template <DType D>
[[noreturn]] void report_nonfinite(const std::byte* src, std::uint64_t begin, std::uint64_t end,
                                   std::string_view tensor) {
  for (std::uint64_t i = begin; i < end; ++i) {
    const float x = load_f32<D>(src, i);
    if (!codec::is_finite(x)) {
      throw Error(ErrorCode::kBadData, "tensor '" + std::string(tensor) + "': element " +
                                           std::to_string(i) + " is " + describe_value(x) +
                                           " (use --keep-nonfinite to store such tensors raw)");
    }
  }
  throw Error(ErrorCode::kBadData, "tensor '" + std::string(tensor) +
                                       "': quantization error is not finite (values too large?)");
}

// NaN in the input makes the binary32 error sums NaN (min/max skip NaN; its code is 0);
// infinities never get here (the range check refuses them). A sum that is +infinity only
// overflowed binary32 (|x| beyond ~1e19): the statistics are then recomputed in binary64.
template <DType D>
void check_and_fix_stats(const std::byte* src, const GroupGeometry& g,
                         const codec::AffineParams* params, int bits, std::uint64_t begin,
                         std::uint64_t end, ErrorStats* local, std::string_view tensor) {
  if (std::isnan(local->error_energy) || std::isnan(local->signal_energy)) {
    report_nonfinite<D>(src, begin, end, tensor);
  }
  if (std::isfinite(local->error_energy) && std::isfinite(local->signal_energy)) return;
  ErrorStats exact;
  exact.count = end - begin;
  const float max_code = static_cast<float>(codec::max_code(bits));
  for_each_group_run(g, begin, end, [&](std::uint64_t s, std::uint64_t t, std::uint64_t k) {
    for (std::uint64_t i = s; i < t; ++i) {
      const double x = load_f32<D>(src, i);
      const double e = x - codec::affine_value(codec::affine_code(static_cast<float>(x), params[k], max_code), params[k]);
      exact.signal_energy += x * x;
      exact.error_energy += e * e;
      exact.max_abs_error = std::max(exact.max_abs_error, std::fabs(e));
    }
  });
  *local = exact;
}

}  // namespace

void minmax_elements(DType dtype, const std::byte* src, std::uint64_t begin, std::uint64_t end,
                     float* lo, float* hi) {
  dispatch_floating(dtype, [&]<DType D>() { minmax_run<D>(src, begin, end, lo, hi); });
}

void quantize_elements(DType dtype, const std::byte* src, const GroupGeometry& geometry,
                       const codec::AffineParams* params, int bits, std::uint64_t begin,
                       std::uint64_t end, std::uint8_t* codes, ErrorStats* stats,
                       std::string_view tensor) {
  dispatch_floating(dtype, [&]<DType D>() {
    alignas(64) std::uint8_t block[kBlock];
    const float max_code = static_cast<float>(codec::max_code(bits));
    LaneStats acc;
    ErrorStats local;
    for (std::uint64_t b0 = begin; b0 < end; b0 += kBlock) {
      const std::uint64_t b1 = std::min(end, b0 + kBlock);
      for_each_group_run(geometry, b0, b1, [&](std::uint64_t s, std::uint64_t t, std::uint64_t g) {
        quantize_run<D>(src, s, t, params[g], max_code, block + (s - b0), acc);
      });
      acc.fold_into(&local, b1 - b0);
      pack_block(block, b1 - b0, bits, codes + b0 / 8 * bits);
    }
    check_and_fix_stats<D>(src, geometry, params, bits, begin, end, &local, tensor);
    stats->merge(local);
  });
}

GroupFailure quantize_groups(DType dtype, const std::byte* src, const GroupGeometry& g, int bits,
                             bool f16_params, std::uint64_t first_group, std::uint64_t last_group,
                             std::uint64_t begin, std::uint64_t end, codec::AffineParams* params,
                             std::uint8_t* codes, ErrorStats* stats, std::string_view tensor) {
  return dispatch_floating(dtype, [&]<DType D>() {
    // The chunk's codes, packed once at the end (chunks are sized to stay in L2).
    thread_local std::vector<std::uint8_t> chunk_codes;
    if (chunk_codes.size() < end - begin) chunk_codes.resize(end - begin);
    const float max_code = static_cast<float>(codec::max_code(bits));
    LaneStats acc;
    ErrorStats local;
    std::uint64_t unfolded = 0;
    std::uint64_t row = first_group / g.groups_per_row;
    std::uint64_t j = first_group % g.groups_per_row;
    for (std::uint64_t k = first_group; k < last_group; ++k) {
      const std::uint64_t offset = j * g.group_size;
      const std::uint64_t s = row * g.cols + offset;
      const std::uint64_t t = s + std::min(g.group_size, g.cols - offset);
      float lo = std::numeric_limits<float>::infinity(), hi = -lo;
      minmax_run<D>(src, s, t, &lo, &hi);
      GroupFailure failure{true, !codec::is_finite(lo) || !codec::is_finite(hi),
                           codec::ParamsStatus::kOk, k, s, t, lo, hi};
      if (failure.nonfinite) return failure;
      failure.status = codec::affine_params(lo, hi, bits, f16_params, &params[k]);
      if (failure.status != codec::ParamsStatus::kOk) return failure;
      quantize_run<D>(src, s, t, params[k], max_code, chunk_codes.data() + (s - begin), acc);
      unfolded += t - s;
      if (unfolded >= kBlock) {
        acc.fold_into(&local, unfolded);
        unfolded = 0;
      }
      if (++j == g.groups_per_row) {
        j = 0;
        ++row;
      }
    }
    acc.fold_into(&local, unfolded);
    check_and_fix_stats<D>(src, g, params, bits, begin, end, &local, tensor);
    pack_block(chunk_codes.data(), end - begin, bits, codes + begin / 8 * bits);
    stats->merge(local);
    return GroupFailure{};
  });
}

void throw_first_nonfinite(DType dtype, const std::byte* src, std::uint64_t begin, std::uint64_t end,
                           std::string_view tensor) {
  dispatch_floating(dtype, [&]<DType D>() { report_nonfinite<D>(src, begin, end, tensor); });
  throw Error(ErrorCode::kInternal, "unreachable");
}

namespace {

// fma(scale, q, min) is one instruction on CPUs with FMA and a libm call per element without
// it. The run is compiled twice, for the baseline and for AVX2+FMA, and picked at run time;
// both compute the same correctly rounded fma, so the bytes do not depend on the machine.
template <DType D>
inline void dequantize_run(std::byte* dst, std::uint64_t s, std::uint64_t t, const std::uint8_t* codes,
                           codec::AffineParams p) {
  for (std::uint64_t i = s; i < t; ++i) store_f32<D>(dst, i, codec::affine_value(codes[i - s], p));
}

template <DType D>
__attribute__((target("avx2,fma"))) void dequantize_run_fma(std::byte* dst, std::uint64_t s, std::uint64_t t,
                                                           const std::uint8_t* codes, codec::AffineParams p) {
  dequantize_run<D>(dst, s, t, codes, p);
}

// WQ_CPU_BASELINE=1 forces the baseline paths, so the tests can run both on one machine.
bool cpu_has_fma() {
  static const bool has = std::getenv("WQ_CPU_BASELINE") == nullptr &&
                          __builtin_cpu_supports("fma") && __builtin_cpu_supports("avx2");
  return has;
}

}  // namespace

void dequantize_elements(DType dtype, std::byte* dst, const GroupGeometry& geometry,
                         const codec::AffineParams* params, int bits, std::uint64_t begin,
                         std::uint64_t end, const std::uint8_t* codes) {
  const bool fma = cpu_has_fma();
  dispatch_floating(dtype, [&]<DType D>() {
    alignas(64) std::uint8_t block[kBlock];
    for (std::uint64_t b0 = begin; b0 < end; b0 += kBlock) {
      const std::uint64_t b1 = std::min(end, b0 + kBlock);
      unpack_block(codes + b0 / 8 * bits, b1 - b0, bits, block);
      for_each_group_run(geometry, b0, b1, [&](std::uint64_t s, std::uint64_t t, std::uint64_t g) {
        if (fma) {
          dequantize_run_fma<D>(dst, s, t, block + (s - b0), params[g]);
        } else {
          dequantize_run<D>(dst, s, t, block + (s - b0), params[g]);
        }
      });
    }
  });
}

void cast_elements(DType from, const std::byte* src, DType to, std::byte* dst,
                   std::uint64_t begin, std::uint64_t end, bool check_overflow,
                   ErrorStats* stats, std::string_view tensor) {
  dispatch_floating(from, [&]<DType In>() {
    dispatch_floating(to, [&]<DType Out>() {
      LaneStats acc;
      ErrorStats local;
      bool bad = false;
      for (std::uint64_t i = begin; i < end; ++i) {
        const float x = load_f32<In>(src, i);
        store_f32<Out>(dst, i, x);
        const float y = load_f32<Out>(dst, i);
        bad |= !codec::is_finite(y);
        accumulate_one(acc, x, y);
        if ((i - begin) % kBlock == kBlock - 1) acc.fold_into(&local, kBlock);
      }
      acc.fold_into(&local, (end - begin) % kBlock);
      if (check_overflow && bad) {
        for (std::uint64_t i = begin; i < end; ++i) {
          const float x = load_f32<In>(src, i);
          if (!codec::is_finite(x)) report_nonfinite<In>(src, i, i + 1, tensor);
          if (!codec::is_finite(load_f32<Out>(dst, i))) {
            throw Error(ErrorCode::kBadData,
                        "tensor '" + std::string(tensor) + "': element " + std::to_string(i) +
                            " (" + std::to_string(x) + ") overflows " + std::string(dtype_name(Out)) +
                            (Out == DType::kF16 ? " (use --method bf16 for wide ranges)" : ""));
          }
        }
      }
      stats->merge(local);
    });
  });
}

}  // namespace wq::detail
