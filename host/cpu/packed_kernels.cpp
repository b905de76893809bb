#include "cpu/packed_kernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/packed_jobs.h"
#include "cpu/bit_packing.h"
#include "cpu/cpu_features.h"
#include "cpu/element_io.h"
#include "cpu/packed_avx2.h"
#include "wq/error.h"
#include "wq/codec/pack_quantized.h"

namespace wq::detail {
namespace {

namespace ct = codec::ct;

// Rows per task: the zero points of 32 rows fill `bits` whole words of each column.
constexpr std::uint64_t kRowsPerRun = 32;

void store_word(std::byte* base, std::uint64_t index, std::uint32_t word) {
  std::memcpy(base + 4 * index, &word, 4);  // little-endian hosts only (as the whole library)
}

// A group's parameters: compressed-tensors' own, or the search's (PackQuantizeJob::search),
// whose candidates' errors the AVX2 loop measures where it can (cpu/packed_avx2.h).
template <DType D>
ct::ParamsStatus params_of(const PackQuantizeJob& job, std::uint64_t begin, std::uint64_t count, float lo, float hi,
                           ct::Params* out) {
  const ct::Scalar scalar = packed_scalar(D);
  if (!job.search) return ct::group_params(lo, hi, job.bits, job.symmetric, scalar, out);
  const std::byte* in = job.input.data + begin * kElementBytes<D>;
  const int bits = job.bits;
  if (avx2_takes(D)) {
    return ct::search_params([=](ct::Params p) { return packed_search_error_avx2(D, in, count, p, bits); }, lo, hi,
                             bits, job.symmetric, scalar, out);
  }
  const auto load = [in](unsigned long long i) { return load_f32<D>(in, i); };
  return ct::search_params([&](ct::Params p) { return ct::search_error(load, count, p, bits, scalar); }, lo, hi, bits,
                           job.symmetric, scalar, out);
}

// Finds and names what the AVX2 loops only detected: the first non-finite element of
// [begin, end), or else the first that decodes beyond the dtype under `p`.
template <DType D>
[[noreturn]] void refuse_what_failed(const PackQuantizeJob& job, std::uint64_t begin, std::uint64_t end,
                                     const ct::Params* p) {
  for (std::uint64_t i = begin; i < end; ++i) {
    const float x = load_f32<D>(job.input.data, i);
    if (!codec::is_finite(x)) refuse_packed_nonfinite(job.input.name, i, x);
    if (p != nullptr &&
        !codec::is_finite(ct::decode(ct::code(x, *p, job.bits, packed_scalar(D)), *p, job.bits, packed_scalar(D)))) {
      refuse_packed_decode(job.input.name, i, x, D);
    }
  }
  throw Error(ErrorCode::kInternal, "tensor '" + std::string(job.input.name) + "': the AVX2 pack-quantized loops "
                                    "reported a failure the codec does not find");
}

// The AVX2 schedule of quantize_run(): the same parameters (the codec's group_params), codes
// from cpu/packed_avx2.h, a row's codes packed by pack_block() (its byte stream, LSB first, is
// compressed-tensors' little-endian words).
template <DType D>
ErrorStats quantize_run_avx2(const PackQuantizeJob& job, const PackedGeometry& g, std::uint64_t run,
                             std::vector<ct::Params>& params) {
  const std::uint64_t first = run * kRowsPerRun, last = std::min(g.rows, first + kRowsPerRun);
  const std::byte* in = job.input.data;
  std::vector<std::uint8_t> codes(g.cols);
  const std::uint64_t row_bytes = (g.cols * static_cast<std::uint64_t>(job.bits) + 7) / 8;
  ErrorStats stats;
  // 4-bit codes of whole octets go straight into the row's words, two to a byte.
  const bool nibbles = job.bits == 4 && g.group_size % 8 == 0;
  for (std::uint64_t r = first; r < last; ++r) {
    const std::uint64_t row = r * g.cols;
    ct::Params* row_params = params.data() + (r - first) * g.groups_per_row;
    auto* words = reinterpret_cast<std::uint8_t*>(job.packed + 4 * r * g.words_per_row);
    for (std::uint64_t k = 0; k < g.groups_per_row; ++k) {
      const std::uint64_t begin = row + k * g.group_size;
      const std::byte* group = in + begin * kElementBytes<D>;
      float lo = 0.0f, hi = 0.0f;
      if (!packed_range_avx2(D, group, g.group_size, &lo, &hi)) refuse_what_failed<D>(job, begin, begin + g.group_size, nullptr);
      if (params_of<D>(job, begin, g.group_size, lo, hi, &row_params[k]) != ct::ParamsStatus::kOk) {
        refuse_packed_range(job.input.name, r * g.groups_per_row + k, D);
      }
      store_f32<D>(job.scales, r * g.groups_per_row + k, row_params[k].scale);
      const bool ok = nibbles ? packed_nibbles_avx2(D, group, g.group_size, row_params[k], words + k * g.group_size / 2, &stats)
                              : packed_codes_avx2(D, group, g.group_size, row_params[k], job.bits,
                                                  codes.data() + k * g.group_size, &stats);
      if (!ok) refuse_what_failed<D>(job, begin, begin + g.group_size, &row_params[k]);
    }
    if (!nibbles) pack_block(codes.data(), g.cols, job.bits, words);
    std::memset(words + row_bytes, 0, 4 * g.words_per_row - row_bytes);  // the last word's padding
  }
  return stats;
}

// The rows of run `run` with the codec's scalar functions, a group's parameters in `params`.
template <DType D>
ErrorStats quantize_run_scalar(const PackQuantizeJob& job, const PackedGeometry& g, std::uint64_t run,
                               std::vector<ct::Params>& params) {
  const ct::Scalar scalar = packed_scalar(D);
  const std::uint64_t first = run * kRowsPerRun, last = std::min(g.rows, first + kRowsPerRun);
  const std::byte* in = job.input.data;
  ErrorStats stats;
  for (std::uint64_t r = first; r < last; ++r) {
    const std::uint64_t row = r * g.cols;
    ct::Params* row_params = params.data() + (r - first) * g.groups_per_row;
    for (std::uint64_t k = 0; k < g.groups_per_row; ++k) {
      const std::uint64_t begin = row + k * g.group_size;
      float lo = load_f32<D>(in, begin), hi = lo;
      for (std::uint64_t i = begin; i < begin + g.group_size; ++i) {
        const float x = load_f32<D>(in, i);
        if (!codec::is_finite(x)) refuse_packed_nonfinite(job.input.name, i, x);
        lo = std::min(lo, x);
        hi = std::max(hi, x);
      }
      if (params_of<D>(job, begin, g.group_size, lo, hi, &row_params[k]) != ct::ParamsStatus::kOk) {
        refuse_packed_range(job.input.name, r * g.groups_per_row + k, D);
      }
      store_f32<D>(job.scales, r * g.groups_per_row + k, row_params[k].scale);  // a value of D: exact
    }
    // 32 elements at a time become `bits` words; the row's last words may be fewer.
    for (std::uint64_t e0 = 0, word = 0; e0 < g.cols; e0 += 32, word += static_cast<std::uint64_t>(job.bits)) {
      const int count = static_cast<int>(std::min<std::uint64_t>(32, g.cols - e0));
      std::uint32_t u[32], words[8];
      for (int e = 0; e < count; ++e) {
        const std::uint64_t col = e0 + static_cast<std::uint64_t>(e);
        const ct::Params p = row_params[col / g.group_size];
        const float x = load_f32<D>(in, row + col);
        u[e] = ct::code(x, p, job.bits, scalar);
        const float decoded = ct::decode(u[e], p, job.bits, scalar);
        if (!codec::is_finite(decoded)) refuse_packed_decode(job.input.name, row + col, x, D);
        const double v = x, err = v - static_cast<double>(decoded);
        stats.signal_energy += v * v;
        stats.error_energy += err * err;
        stats.max_abs_error = std::max(stats.max_abs_error, std::fabs(err));
      }
      ct::pack_32(u, count, job.bits, words);
      const std::uint64_t n = std::min<std::uint64_t>(static_cast<std::uint64_t>(job.bits), g.words_per_row - word);
      for (std::uint64_t w = 0; w < n; ++w) store_word(job.packed, r * g.words_per_row + word + w, words[w]);
    }
  }
  stats.count = (last - first) * g.cols;
  return stats;
}

// Column k of weight_zero_point packs run `run`'s zero points: words [run * bits, + bits).
void pack_zero_points(const PackQuantizeJob& job, const PackedGeometry& g, std::uint64_t run,
                      const std::vector<ct::Params>& params) {
  const std::uint64_t first = run * kRowsPerRun, last = std::min(g.rows, first + kRowsPerRun);
  const int count = static_cast<int>(last - first);
  const std::uint64_t word = run * static_cast<std::uint64_t>(job.bits);
  const std::uint64_t n = std::min<std::uint64_t>(static_cast<std::uint64_t>(job.bits), g.zero_point_rows - word);
  for (std::uint64_t k = 0; k < g.groups_per_row; ++k) {
    std::uint32_t z[32], words[8];
    for (int r = 0; r < count; ++r) z[r] = ct::stored_zero(params[static_cast<std::uint64_t>(r) * g.groups_per_row + k], job.bits);
    ct::pack_32(z, count, job.bits, words);
    for (std::uint64_t w = 0; w < n; ++w) store_word(job.zero_points, (word + w) * g.groups_per_row + k, words[w]);
  }
}

// One run of 32 rows: codes (AVX2 or the codec's scalar schedule), then its zero points.
template <DType D>
ErrorStats quantize_run(const PackQuantizeJob& job, const PackedGeometry& g, std::uint64_t run) {
  const std::uint64_t first = run * kRowsPerRun, last = std::min(g.rows, first + kRowsPerRun);
  std::vector<ct::Params> params((last - first) * g.groups_per_row);
  const ErrorStats stats =
      avx2_takes(D) ? quantize_run_avx2<D>(job, g, run, params) : quantize_run_scalar<D>(job, g, run, params);
  if (!job.symmetric) pack_zero_points(job, g, run, params);
  return stats;
}

}  // namespace

ErrorStats quantize_packed_tensor(const PackQuantizeJob& job, ThreadPool& pool) {
  const PackedGeometry g = check_pack_quantize_job(job);
  const std::uint64_t runs = (g.rows + kRowsPerRun - 1) / kRowsPerRun;
  std::vector<ErrorStats> parts(runs);
  if (g.cols == 0) return {};
  const auto task = [&](std::size_t run) {
    switch (job.input.dtype) {
      case DType::kF16: parts[run] = quantize_run<DType::kF16>(job, g, run); break;
      case DType::kBF16: parts[run] = quantize_run<DType::kBF16>(job, g, run); break;
      default: parts[run] = quantize_run<DType::kF32>(job, g, run); break;
    }
  };
  if (runs <= 1) {
    for (std::size_t r = 0; r < runs; ++r) task(r);
  } else {
    pool.parallel_for(runs, task);
  }
  ErrorStats total;
  for (const ErrorStats& s : parts) total.merge(s);  // fixed order: reproducible sums
  return total;
}

}  // namespace wq::detail
