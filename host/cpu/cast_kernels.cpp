// CPU casts between floating dtypes (fp16/bf16 encodings and their decoding), with the
// error statistics and overflow checks of Backend::cast.
#include "cpu/cast_kernels.h"

#include <immintrin.h>

#include <cmath>
#include <cstring>
#include <string>

#include "cpu/affine_kernels.h"
#include "cpu/cpu_features.h"
#include "cpu/element_io.h"
#include "cpu/lanes.h"
#include "wq/error.h"

namespace wq::detail {
namespace {

// Elements whose binary32 error sums are folded into binary64 at a time.
constexpr std::uint64_t kStatsBlock = 4096;

}  // namespace

namespace {

// F32 -> F16 with the CPU's own conversion (F16C): IEEE round-to-nearest-even, the same bits
// as codec::f32_to_f16_bits for every value but NaN, and this path runs only where NaN is an
// error anyway (check_overflow). Returns false when a value is not finite or overflows; the
// caller's generic path then finds and names the element.
__attribute__((target("avx2,fma,f16c"))) bool cast_f32_to_f16_f16c(const std::byte* src, std::byte* dst,
                                                                  std::uint64_t begin, std::uint64_t end,
                                                                  ErrorStats* local) {
  for (std::uint64_t b0 = begin; b0 < end; b0 += kStatsBlock) {
    const std::uint64_t b1 = std::min(end, b0 + kStatsBlock);
    LaneStats<8> acc;
    std::uint64_t i = b0;
    for (; i + 8 <= b1; i += 8) {
      const __m256 x = _mm256_loadu_ps(reinterpret_cast<const float*>(src + 4 * i));
      const __m128i h = _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 2 * i), h);
      const __m256 y = _mm256_cvtph_ps(h);
      FloatLanes<8> xv, yv;
      std::memcpy(&xv, &x, sizeof xv);
      std::memcpy(&yv, &y, sizeof yv);
      acc.add(xv, yv);
    }
    for (; i < b1; ++i) {
      const float x = load_f32<DType::kF32>(src, i);
      store_f32<DType::kF16>(dst, i, x);
      acc.add_one(x, load_f32<DType::kF16>(dst, i));
    }
    acc.fold_into(local, b1 - b0);
  }
  // NaN or an infinite result (input or overflow) makes the sums NaN or infinite.
  return std::isfinite(local->error_energy) && std::isfinite(local->signal_energy);
}

}  // namespace

void cast_elements(DType from, const std::byte* src, DType to, std::byte* dst, std::uint64_t begin,
                   std::uint64_t end, bool check_overflow, ErrorStats* stats, std::string_view tensor) {
  if (from == DType::kF32 && to == DType::kF16 && check_overflow && use_f16c()) {
    ErrorStats local;
    if (cast_f32_to_f16_f16c(src, dst, begin, end, &local)) {
      stats->merge(local);
      return;
    }  // else: the generic path below converts again and reports the element
  }
  dispatch_floating(from, [&]<DType In>() {
    dispatch_floating(to, [&]<DType Out>() {
      LaneStats<4> acc;
      ErrorStats local;
      bool bad = false;
      for (std::uint64_t i = begin; i < end; ++i) {
        const float x = load_f32<In>(src, i);
        store_f32<Out>(dst, i, x);
        const float y = load_f32<Out>(dst, i);
        bad |= !codec::is_finite(y);
        acc.add_one(x, y);
        if ((i - begin) % kStatsBlock == kStatsBlock - 1) acc.fold_into(&local, kStatsBlock);
      }
      acc.fold_into(&local, (end - begin) % kStatsBlock);
      if (check_overflow && bad) {
        for (std::uint64_t i = begin; i < end; ++i) {
          const float x = load_f32<In>(src, i);
          if (!codec::is_finite(x)) throw_first_nonfinite(In, src, i, i + 1, tensor);
          if (!codec::is_finite(load_f32<Out>(dst, i))) {
            throw Error(ErrorCode::kBadData,
                        "tensor '" + std::string(tensor) + "': element " + std::to_string(i) + " (" +
                            std::to_string(x) + ") overflows " + std::string(dtype_name(Out)),
                        Out == DType::kF16 ? std::vector<ErrorHint>{{"method_bf16", ""}} : std::vector<ErrorHint>{});
          }
        }
      }
      stats->merge(local);
    });
  });
}

}  // namespace wq::detail
