// Q6_K's sub-block search with sixteen lanes: the sixteen sub-blocks of a super-block in one
// 512-bit register, where cpu/ggml_kquant_lanes.cpp has them in two registers of eight. Every
// lane does the same operations in the same order as there (fit_symmetric_x2_lanes() of
// cpu/ggml_kquant_lane_ops.h, the one spelling of it), so the bytes are the same; Zen 5 runs a
// 512-bit multiplication at the rate of a 256-bit one, and the search is bound by its
// multiplications.
//
// This unit alone is compiled for AVX-512 F/VL/BW/DQ (host/CMakeLists.txt), and only called
// where use_avx512vl() allows. A function attribute would not do: GCC 12 lowers the 512-bit
// comparisons of the shared helpers, which carry no target of their own, element by element
// before it inlines them (half the speed of the AVX2 code). Everything it includes that it
// uses has internal linkage, so no AVX-512 copy of a shared inline function can reach the
// linker (tests/CMakeLists.txt checks its symbols).
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "cpu/ggml_kquant_lane_ops.h"
#include "cpu/ggml_kquant_lanes.h"

namespace wq::detail {
namespace {

// vrndscaleps with scale 0 rounds to an integer, to nearest even, without exceptions: the
// rounding of Avx2Rounding's vroundps $8, on sixteen lanes. (The masked form with every lane
// set: GCC 12 warns that the plain intrinsic's undefined source is used uninitialised.)
struct Avx512Rounding {
  static V16 nearest(V16 t) {
    const __m512 v = (__m512)t;
    return (V16)_mm512_mask_roundscale_ps(v, 0xffff, v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
};

// Sub-blocks 0-7 of a super-block from its first register of lanes, 8-15 from its second.
V16 join(V low, V high) {
  return __builtin_shufflevector(low, high, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}

// R super-blocks searched side by side (their chains interleave), one per register.
template <int R>
void search_blocks(const float* x, float* scales, float* grid_iscale) {
  constexpr int n = 16;
  V16 X[R][n];
  for (int r = 0; r < R; ++r) {
    V low[n], high[n];
    load_sub_blocks<n>(x + kquant_ggml::kSuperBlock * r, n, low);
    load_sub_blocks<n>(x + kquant_ggml::kSuperBlock * r + n * kLanes, n, high);
    for (int i = 0; i < n; ++i) X[r][i] = join(low[i], high[i]);
  }
  V16 scale[R], grid[R];
  fit_symmetric_x2_lanes<Avx512Rounding, R>(X, grid, scale);
  for (int r = 0; r < R; ++r) {
    std::memcpy(scales + 16 * r, &scale[r], sizeof scale[r]);
    std::memcpy(grid_iscale + 16 * r, &grid[r], sizeof grid[r]);
  }
}

}  // namespace

void search_q6_k_avx512(const float* x, int blocks, float* scales, float* grid_iscale) {
  int b = 0;
  for (; b + 2 <= blocks; b += 2) {
    search_blocks<2>(x + kquant_ggml::kSuperBlock * b, scales + 16 * b, grid_iscale + 16 * b);
  }
  if (b < blocks) search_blocks<1>(x + kquant_ggml::kSuperBlock * b, scales + 16 * b, grid_iscale + 16 * b);
}

}  // namespace wq::detail
