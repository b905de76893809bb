#include "cpu/affine_kernels.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "cpu/element_io.h"
#include "wq/codec/pack.h"
#include "wq/error.h"

namespace wq::detail {
namespace {

// Work is done in blocks of codes that stay in L1; a multiple of 8 so blocks pack to whole
// bytes.
constexpr std::uint64_t kBlock = 4096;
// Floating-point sums are not reassociated by the compiler (no fast-math), so the loops keep
// kLanes independent partial results by hand; that is what lets them vectorise.
constexpr int kLanes = 8;

struct LaneStats {
  double signal[kLanes] = {};
  double error[kLanes] = {};
  double max_error[kLanes] = {};
  std::uint64_t count = 0;

  void add_to(ErrorStats* stats) const {
    ErrorStats s;
    s.count = count;
    for (int l = 0; l < kLanes; ++l) {
      s.signal_energy += signal[l];
      s.error_energy += error[l];
      s.max_abs_error = std::max(s.max_abs_error, max_error[l]);
    }
    stats->merge(s);
  }
};

// The decoded value, for error statistics only. fma(scale, q, min) is computed in binary64:
// the product is exact there and the sum differs from the single-rounded binary32 fma by at
// most one binary32 ulp in rare double-rounding cases, which a statistic cannot see; a libm
// fma call per element would cost more than the quantization.
inline float approx_decoded(std::uint32_t code, codec::AffineParams p) {
  return static_cast<float>(static_cast<double>(p.scale) * code + static_cast<double>(p.min));
}

inline void accumulate(LaneStats& acc, int lane, float x, float decoded) {
  const double e = static_cast<double>(x) - static_cast<double>(decoded);
  acc.signal[lane] += static_cast<double>(x) * x;
  acc.error[lane] += e * e;
  const double a = std::fabs(e);
  acc.max_error[lane] = a > acc.max_error[lane] ? a : acc.max_error[lane];
}

template <DType D>
void minmax_run(const std::byte* src, std::uint64_t begin, std::uint64_t end, float* lo_out,
                float* hi_out) {
  float lo[kLanes], hi[kLanes];
  for (int l = 0; l < kLanes; ++l) {
    lo[l] = std::numeric_limits<float>::infinity();
    hi[l] = -std::numeric_limits<float>::infinity();
  }
  std::uint64_t i = begin;
  for (; i + kLanes <= end; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      const float x = load_f32<D>(src, i + l);
      lo[l] = x < lo[l] ? x : lo[l];
      hi[l] = x > hi[l] ? x : hi[l];
    }
  }
  for (; i < end; ++i) {
    const float x = load_f32<D>(src, i);
    lo[0] = x < lo[0] ? x : lo[0];
    hi[0] = x > hi[0] ? x : hi[0];
  }
  float l0 = *lo_out, h0 = *hi_out;
  for (int l = 0; l < kLanes; ++l) {
    l0 = lo[l] < l0 ? lo[l] : l0;
    h0 = hi[l] > h0 ? hi[l] : h0;
  }
  *lo_out = l0;
  *hi_out = h0;
}

template <DType D>
void quantize_run(const std::byte* src, std::uint64_t begin, std::uint64_t end,
                  codec::AffineParams p, float max_code, std::uint8_t* codes, LaneStats& acc) {
  std::uint64_t i = begin;
  for (; i + kLanes <= end; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      const float x = load_f32<D>(src, i + l);
      const std::uint32_t q = codec::affine_code(x, p, max_code);
      codes[i - begin + l] = static_cast<std::uint8_t>(q);
      accumulate(acc, l, x, approx_decoded(q, p));
    }
  }
  for (; i < end; ++i) {
    const float x = load_f32<D>(src, i);
    const std::uint32_t q = codec::affine_code(x, p, max_code);
    codes[i - begin] = static_cast<std::uint8_t>(q);
    accumulate(acc, 0, x, approx_decoded(q, p));
  }
  acc.count += end - begin;
}

void pack_block(const std::uint8_t* codes, std::uint64_t count, int bits, std::uint8_t* out) {
  const std::uint64_t full = count / 8;
  for (std::uint64_t k = 0; k < full; ++k) codec::pack8(codes + 8 * k, bits, out + k * bits);
  const int tail = static_cast<int>(count % 8);
  if (tail != 0) codec::pack_tail(codes + 8 * full, tail, bits, out + full * bits);
}

void unpack_block(const std::uint8_t* in, std::uint64_t count, int bits, std::uint8_t* codes) {
  const std::uint64_t full = count / 8;
  for (std::uint64_t k = 0; k < full; ++k) codec::unpack8(in + k * bits, bits, codes + 8 * k);
  const int tail = static_cast<int>(count % 8);
  if (tail != 0) codec::unpack_tail(in + full * bits, tail, bits, codes + 8 * full);
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
    for (std::uint64_t b0 = begin; b0 < end; b0 += kBlock) {
      const std::uint64_t b1 = std::min(end, b0 + kBlock);
      for_each_group_run(geometry, b0, b1, [&](std::uint64_t s, std::uint64_t t, std::uint64_t g) {
        quantize_run<D>(src, s, t, params[g], max_code, block + (s - b0), acc);
      });
      pack_block(block, b1 - b0, bits, codes + b0 / 8 * bits);
    }
    ErrorStats local;
    acc.add_to(&local);
    // NaN anywhere makes the error energy NaN (min/max skip NaN, the code of NaN is 0), and
    // infinity makes it infinite: one check per range finds both without a separate pass.
    if (!std::isfinite(local.error_energy) || !std::isfinite(local.signal_energy)) {
      report_nonfinite<D>(src, begin, end, tensor);
    }
    stats->merge(local);
  });
}

void dequantize_elements(DType dtype, std::byte* dst, const GroupGeometry& geometry,
                         const codec::AffineParams* params, int bits, std::uint64_t begin,
                         std::uint64_t end, const std::uint8_t* codes) {
  dispatch_floating(dtype, [&]<DType D>() {
    alignas(64) std::uint8_t block[kBlock];
    for (std::uint64_t b0 = begin; b0 < end; b0 += kBlock) {
      const std::uint64_t b1 = std::min(end, b0 + kBlock);
      unpack_block(codes + b0 / 8 * bits, b1 - b0, bits, block);
      for_each_group_run(geometry, b0, b1, [&](std::uint64_t s, std::uint64_t t, std::uint64_t g) {
        const codec::AffineParams p = params[g];
        for (std::uint64_t i = s; i < t; ++i) {
          store_f32<D>(dst, i, codec::affine_value(block[i - b0], p));
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
      bool bad = false;
      for (std::uint64_t i = begin; i < end; ++i) {
        const float x = load_f32<In>(src, i);
        store_f32<Out>(dst, i, x);
        const float y = load_f32<Out>(dst, i);
        bad |= !codec::is_finite(y);
        accumulate(acc, static_cast<int>(i % kLanes), x, y);
      }
      acc.count += end - begin;
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
      ErrorStats local;
      acc.add_to(&local);
      stats->merge(local);
    });
  });
}

}  // namespace wq::detail
