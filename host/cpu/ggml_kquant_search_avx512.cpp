// The k-quants' sub-block searches with sixteen lanes: two registers of eight sub-blocks side by
// side in one 512-bit register (Q2_K, Q3_K and Q6_K: the two of a super-block; Q4_K and Q5_K:
// those of two super-blocks). Every lane does the same operations in the same order as the
// eight-lane searches of cpu/ggml_kquant_lanes.cpp (fit_lanes() and fit_symmetric_x2_lanes() of
// cpu/ggml_kquant_lane_ops.h, Q3_K's fit of cpu/ggml_q3_k_fit_lanes.h: the one spelling of
// each), so the bytes are the same. The searches are bound by their multiplications, and Zen 5
// runs a 512-bit one at the rate of a 256-bit one. Q3_K's final codes and their packing are here
// too (q3_k_codes_avx512()), the codec's operations a sub-block per register.
//
// This unit alone is compiled for AVX-512 F/VL/BW/DQ (host/CMakeLists.txt), and only called
// where use_avx512vl() allows. A function attribute would not do: GCC 12 lowers the 512-bit
// comparisons of the shared helpers, which carry no target of their own, element by element
// before it inlines them (half the speed of the AVX2 code). Everything it includes that it
// uses has internal linkage, so no AVX-512 copy of a shared inline function can reach the
// linker (the test library.isa_units_share_no_symbols checks its symbols).
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "cpu/ggml_kquant_lane_ops.h"
#include "cpu/ggml_kquant_lanes.h"
#include "cpu/ggml_q3_k_fit_lanes.h"

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

template <int R>
void store_lanes(const V16* v, float* out) {
  for (int r = 0; r < R; ++r) std::memcpy(out + 16 * r, &v[r], sizeof v[r]);
}

// Q4_K and Q5_K: 2R super-blocks, super-blocks 2r and 2r + 1 in register r.
template <int R>
void search_scale_min_blocks(const float* x, int nmax, kquant_ggml::OffsetSearch search, float* scales, float* mins,
                             float* grid_iscale, float* grid_min) {
  constexpr int n = 32;
  V16 X[R][n], W[R][n];
  for (int r = 0; r < R; ++r) {
    V X0[n], W0[n], X1[n], W1[n];
    load_scale_min_sub_blocks(x + kquant_ggml::kSuperBlock * 2 * r, X0, W0);
    load_scale_min_sub_blocks(x + kquant_ggml::kSuperBlock * (2 * r + 1), X1, W1);
    for (int i = 0; i < n; ++i) {
      X[r][i] = join_lanes(X0[i], X1[i]);
      W[r][i] = join_lanes(W0[i], W1[i]);
    }
  }
  V16 scale[R], neg_offset[R], grid[R], min[R];
  fit_lanes<Avx512Rounding, n, R, false>(X, W, nmax, search, grid, min, scale, neg_offset);
  store_lanes<R>(scale, scales);
  store_lanes<R>(neg_offset, mins);
  store_lanes<R>(grid, grid_iscale);
  store_lanes<R>(min, grid_min);
}

// Q2_K: R super-blocks, one per register (sub-blocks 0-7 from the first row of lanes, 8-15
// from the second).
template <int R>
void search_q2_k_blocks(const float* x, kquant_ggml::OffsetSearch search, float* scales, float* mins,
                        float* grid_iscale, float* grid_min) {
  constexpr int n = 16;
  V16 X[R][n], W[R][n];
  for (int r = 0; r < R; ++r) {
    load_sub_blocks16(x + kquant_ggml::kSuperBlock * r, X[r]);
    for (int i = 0; i < n; ++i) W[r][i] = abs_of(X[r][i]);
  }
  V16 scale[R], neg_offset[R], grid[R], min[R];
  fit_lanes<Avx512Rounding, n, R, true>(X, W, 3, search, grid, min, scale, neg_offset);
  store_lanes<R>(scale, scales);
  store_lanes<R>(neg_offset, mins);
  store_lanes<R>(grid, grid_iscale);
  store_lanes<R>(min, grid_min);
}

// Q6_K: R super-blocks, one per register, as Q2_K's.
template <int R>
void search_q6_k_blocks(const float* x, float* scales, float* grid_iscale) {
  constexpr int n = 16;
  V16 X[R][n];
  for (int r = 0; r < R; ++r) load_sub_blocks16(x + kquant_ggml::kSuperBlock * r, X[r]);
  V16 scale[R], grid[R];
  fit_symmetric_x2_lanes<Avx512Rounding, R>(X, grid, scale);
  store_lanes<R>(scale, scales);
  store_lanes<R>(grid, grid_iscale);
}

// The low byte of each of sixteen lanes to out (vpmovdb), and sixteen bytes widened with their
// sign (vpmovsxbd). As intrinsics: GCC 12 spells __builtin_convertvector() between these types
// lane by lane. (The masked forms with every lane set, as in Avx512Rounding.)
WQ_LANES_INLINE void store_lane_bytes(VI16 v, std::uint8_t* out) {
  _mm512_mask_cvtepi32_storeu_epi8(out, 0xffff, (__m512i)v);
}
WQ_LANES_INLINE VI16 widen_bytes(const std::int8_t* bytes) {
  return (VI16)_mm512_maskz_cvtepi8_epi32(0xffff, _mm_loadu_si128(reinterpret_cast<const __m128i*>(bytes)));
}

}  // namespace

void q3_k_codes_avx512(const float* x, const float* steps, unsigned zero_steps, const std::int8_t* L,
                       std::uint8_t* hmask, std::uint8_t* qs, float* values) {
  constexpr int half = 4;
  VI16 C[16];
  for (int j = 0; j < 16; ++j) {
    V16 v;
    std::memcpy(&v, x + 16 * j, sizeof v);
    C[j] = clamp(nearest_int(v / steps[j]), -half, half - 1) + half;  // symmetric_code(), as vdivps rounds
  }
  // The caller's codes where the step is 0 (sub-blocks fitted again alone: rare), in place of
  // the division's.
  for (; zero_steps != 0; zero_steps &= zero_steps - 1) {
    const int j = __builtin_ctz(zero_steps);
    C[j] = widen_bytes(L + 16 * j);
  }
  if (values != nullptr) {  // decode_block()'s dl * (code - 4), dl being the step
    for (int j = 0; j < 16; ++j) {
      const V16 v = steps[j] * to_float(C[j] - half);
      std::memcpy(values + 16 * j, &v, sizeof v);
    }
  }
  // Element e = 32 k + 16 a + t is sub-block 2 k + a's lane t: bit 2 of its code is bit k of
  // hmask[16 a + t]; its low two bits are bits 2 s..2 s + 1 of qs[32 h + 16 a + t] for
  // e = 128 h + 32 s + 16 a + t (pack_q3_k_codes(), pack_two_bit_planes()).
  for (int a = 0; a < 2; ++a) {
    VI16 high = VI16{};
    for (int k = 0; k < 8; ++k) high |= ((C[2 * k + a] >> 2) & 1) << k;
    store_lane_bytes(high, hmask + 16 * a);
  }
  for (int h = 0; h < 2; ++h) {
    for (int a = 0; a < 2; ++a) {
      VI16 planes = VI16{};
      for (int s = 0; s < 4; ++s) planes |= (C[8 * h + 2 * s + a] & 3) << (2 * s);
      store_lane_bytes(planes, qs + 32 * h + 16 * a);
    }
  }
}

// Four super-blocks' first passes side by side, whose sums are chains of sixteen additions in
// order (1.02-1.05x two, Zen 5, once signed_extreme_lanes() no longer held each register up;
// the AVX2 clone's eight-lane registers ran the same either way); four registers in the queue,
// whose steps wait on each other (two: 0.97x, one: 0.86x; Zen 5, 2 MiB in cache).
void fit_q3_k_avx512(const float* x, int blocks, float* scales) { fit_q3_k_chunk<V16, 4>(x, blocks, scales); }

void search_scale_min_avx512(const float* x, int blocks, int nmax, codec::ggml::OffsetSearch search, float* scales,
                             float* mins, float* grid_iscale, float* grid_min) {
  // Four at a time, two registers: one register's chains alone left the core waiting (1.25x).
  for (int b = 0; b + 4 <= blocks; b += 4) {
    search_scale_min_blocks<2>(x + kquant_ggml::kSuperBlock * b, nmax, search, scales + 8 * b, mins + 8 * b,
                               grid_iscale + 8 * b, grid_min + 8 * b);
  }
}

void search_q2_k_avx512(const float* x, int blocks, codec::ggml::OffsetSearch search, float* scales, float* mins,
                        float* grid_iscale, float* grid_min) {
  int b = 0;
  for (; b + 2 <= blocks; b += 2) {
    search_q2_k_blocks<2>(x + kquant_ggml::kSuperBlock * b, search, scales + 16 * b, mins + 16 * b, grid_iscale + 16 * b,
                          grid_min + 16 * b);
  }
  if (b < blocks) {
    search_q2_k_blocks<1>(x + kquant_ggml::kSuperBlock * b, search, scales + 16 * b, mins + 16 * b, grid_iscale + 16 * b,
                          grid_min + 16 * b);
  }
}

void search_q6_k_avx512(const float* x, int blocks, float* scales, float* grid_iscale) {
  int b = 0;
  for (; b + 2 <= blocks; b += 2) search_q6_k_blocks<2>(x + kquant_ggml::kSuperBlock * b, scales + 16 * b, grid_iscale + 16 * b);
  if (b < blocks) search_q6_k_blocks<1>(x + kquant_ggml::kSuperBlock * b, scales + 16 * b, grid_iscale + 16 * b);
}

}  // namespace wq::detail
