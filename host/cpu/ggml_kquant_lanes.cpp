#include "cpu/ggml_kquant_lanes.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "cpu/cpu_features.h"
#include "cpu/ggml_kquant_lane_ops.h"
#include "cpu/ggml_q3_k_fit_lanes.h"
#include "cpu/lanes.h"
#include "wq/codec/ggml_kquants.h"

namespace wq::detail {
namespace {

namespace ggml = codec::ggml;

typedef std::uint8_t B8 __attribute__((vector_size(8)));

// The low byte of each lane is lanes.h's low_bytes(), a byte shuffle (two vpshufb, a vpermq and
// a vpor on AVX2): __builtin_convertvector(code, B8) says the same, but GCC 12 spells it as
// eight extractions, shifts and ORs, which were a fifth of Q6_K's time.
WQ_LANES_INLINE std::uint64_t low_bytes_of(VI code) {
  const B8 bytes = low_bytes(code);
  std::uint64_t out;
  std::memcpy(&out, &bytes, sizeof out);
  return out;
}

// Each sub-block's grid, where the finish takes the search's codes from (fit_lanes(),
// fit_symmetric_x2_lanes()): eight per register of lanes.
struct SubBlockGrids {
  float* iscale;
  float* min;  // offset codes only
};

// fit_lanes()'s R registers of results to their arrays, eight sub-blocks per register.
template <int R>
WQ_LANES_INLINE void store_offset_fits(const V* scale, const V* neg_offset, const V* grid, const V* grid_min,
                                       float* scales, float* mins, SubBlockGrids grids) {
  for (int r = 0; r < R; ++r) {
    std::memcpy(scales + kLanes * r, &scale[r], sizeof(V));
    std::memcpy(mins + kLanes * r, &neg_offset[r], sizeof(V));
    std::memcpy(grids.iscale + kLanes * r, &grid[r], sizeof(V));
    std::memcpy(grids.min + kLanes * r, &grid_min[r], sizeof(V));
  }
}

// search_scale_min_sub_blocks() of R consecutive super-blocks, fitted together: round r's lane j
// is sub-block j of super-block r. No codes: their grids instead.
template <typename Rounding, int R>
WQ_LANES_INLINE void search_lanes(const float* x, int nmax, ggml::OffsetSearch search, float* scales, float* mins,
                                  SubBlockGrids grids) {
  if constexpr (Rounding::kWide && R % 4 == 0) {  // the AVX-512 clone: two super-blocks per register
    search_scale_min_avx512(x, R, nmax, search, scales, mins, grids.iscale, grids.min);
    return;
  }
  V X[R][kSub], W[R][kSub];
  for (int r = 0; r < R; ++r) load_scale_min_sub_blocks(x + ggml::kSuperBlock * r, X[r], W[r]);
  V scale[R], neg_offset[R], grid[R], grid_min[R];
  fit_lanes<Rounding, kSub, R, false>(X, W, nmax, search, grid, grid_min, scale, neg_offset);
  store_offset_fits<R>(scale, neg_offset, grid, grid_min, scales, mins, grids);
}

// search_q2_k_sub_blocks() (weights |x|, absolute error) of R rounds of eight consecutive
// sub-blocks of 16 (round r's lane j is sub-block 8r + j), fitted together. No codes: their grids.
template <typename Rounding, int R>
WQ_LANES_INLINE void search_q2_k_lanes(const float* x, float* scales, float* mins, SubBlockGrids grids) {
  if constexpr (Rounding::kWide && R % 2 == 0) {  // the AVX-512 clone: a super-block per register
    search_q2_k_avx512(x, R / 2, ggml::q2_k_search(), scales, mins, grids.iscale, grids.min);
    return;
  }
  constexpr int n = 16;
  V X[R][n], W[R][n];
  for (int r = 0; r < R; ++r) {
    load_sub_blocks<n>(x + n * kLanes * r, n, X[r]);
    for (int i = 0; i < n; ++i) W[r][i] = abs_of(X[r][i]);
  }
  V scale[R], neg_offset[R], grid[R], grid_min[R];
  fit_lanes<Rounding, n, R, true>(X, W, 3, ggml::q2_k_search(), grid, grid_min, scale, neg_offset);
  store_offset_fits<R>(scale, neg_offset, grid, grid_min, scales, mins, grids);
}

// search_q6_k_sub_blocks() of R rounds of eight consecutive sub-blocks, without the codes: each
// sub-block's scale, and its grid (fit_symmetric_x2_lanes()).
template <typename Rounding, int R>
WQ_LANES_INLINE void search_q6_k_lanes(const float* x, float* scales, SubBlockGrids grids) {
  if constexpr (Rounding::kWide) {  // the AVX-512 clone: both rounds of a super-block in one register
    static_assert(R % 2 == 0);
    search_q6_k_avx512(x, R / 2, scales, grids.iscale);
    return;
  }
  constexpr int n = 16;
  V X[R][n];
  for (int r = 0; r < R; ++r) load_sub_blocks<n>(x + n * kLanes * r, n, X[r]);
  V scale[R], grid[R];
  fit_symmetric_x2_lanes<Rounding, R>(X, grid, scale);
  for (int r = 0; r < R; ++r) {
    std::memcpy(scales + kLanes * r, &scale[r], sizeof(V));
    std::memcpy(grids.iscale + kLanes * r, &grid[r], sizeof(V));
  }
}

// The final codes of one sub-block (`count` elements, a multiple of 8) eight at a time, as the
// codec's code_with_offset() (kOffset) or symmetric_code() gives each: the same addition, the
// same division (vdivps rounds as divss does), the same nearest_int and clamp. The codec's
// finish_*() functions take them in place of their scalar loops (LaneSubBlockCodes below); the
// scalar division per element was a fifth of a block's time.
template <bool kOffset>
WQ_LANES_INLINE void final_codes(const float* x, int count, float d, float dm, int lo, int hi, int bias, void* out) {
  for (int i = 0; i < count; i += kLanes) {
    V v;
    std::memcpy(&v, x + i, sizeof v);
    if constexpr (kOffset) v = v + dm;
    const B8 bytes = low_bytes(clamp(nearest_int(v / d), lo, hi) + bias);
    std::memcpy(static_cast<std::uint8_t*>(out) + i, &bytes, sizeof bytes);
  }
}

// final_codes() as the codec's finish functions take their sub-block loops.
struct LaneSubBlockCodes {
  WQ_LANES_INLINE void offset(const float* x, int count, float d, float dm, int nmax, std::uint8_t* L) const {
    final_codes<true>(x, count, d, dm, 0, nmax, 0, L);
  }
  WQ_LANES_INLINE void symmetric(const float* x, int count, float d, int half, std::int8_t* L) const {
    final_codes<false>(x, count, d, 0.0f, -half, half - 1, half, L);
  }
  // The codec's quantize_q6_k_scales() and q6_k_step()s on two registers of eight scales: the
  // same operations. Its running maximum branches on each scale, a coin flip on weights (with
  // the two divisions behind it, half of the finish's time); here the largest magnitude is a
  // maximum without branches (first_largest()). A NaN scale and an all-zero block take the
  // codec's loop.
  WQ_LANES_INLINE bool q6_k_scales(const float* scales, ggml::BlockQ6_K* y, float* steps) const {
    V s[2];
    std::memcpy(s, scales, sizeof s);
    float max_abs;
    const int first = first_largest(s, &max_abs);
    if (first < 0 || max_abs < ggml::kGroupMaxEps) return ggml::ScalarSubBlockCodes{}.q6_k_scales(scales, y, steps);
    const float iscale = -128.0f / scales[first];
    y->d = codec::f32_to_f16_bits(1.0f / iscale);
    const float d = codec::f16_bits_to_f32(y->d);
    for (int k = 0; k < 2; ++k) {
      const VI l = clamp(nearest_int(iscale * s[k]), -128, 127);  // -128 already: |t| <= 128 (1 + u)^2
      const std::uint64_t bytes = low_bytes_of(l);
      std::memcpy(y->scales + kLanes * k, &bytes, sizeof bytes);
      const V step = d * to_float(l);
      std::memcpy(steps + kLanes * k, &step, sizeof step);
    }
    return true;
  }

 private:
  // The index of the first of 16 scales of the largest magnitude, as the codec's loops find it
  // (`a > max` from 0: the first of equal magnitudes; all zero: index 0, magnitude 0), and that
  // magnitude; -1 where a scale is NaN, which those loops skip.
  WQ_LANES_INLINE static int first_largest(const V* s, float* max_abs) {
    const V a[2] = {abs_of(s[0]), abs_of(s[1])};
    if (!all_lanes((a[0] == a[0]) & (a[1] == a[1]))) return -1;
    const V larger = a[0] > a[1] ? a[0] : a[1];
    float max = 0.0f;
    for (int j = 0; j < kLanes; ++j) max = larger[j] > max ? larger[j] : max;
    int first = 0;
    for (int i = 2 * kLanes - 1; i >= 0; --i) first = a[i / kLanes][i % kLanes] == max ? i : first;
    *max_abs = max;
    return first;
  }
};

// The finish after a search that kept grids, not codes (Q2_K, Q4_K, Q5_K, Q6_K): sub-blocks whose
// stored step is 0 (all-zero ones, and ones far smaller than the super-block's largest) take the
// search's codes, from their grid as the codec's fits compute them.
struct LaneGridCodes : LaneSubBlockCodes {
  const float* iscale;  // the super-block's grids: iscale 0 for an all-zero sub-block
  const float* min;     // offset codes: the offset each grid was computed from
  int nmax;
  WQ_LANES_INLINE void unscaled(const float* x, int count, int j, std::uint8_t* L) const {
    for (int i = 0; i < count; ++i) {
      L[i] = static_cast<std::uint8_t>(ggml::offset_grid_code(x[i], iscale[j], min[j], nmax));
    }
  }
  WQ_LANES_INLINE void unscaled(const float* x, int count, int j, std::int8_t* L) const {
    for (int i = 0; i < count; ++i) {
      L[i] = static_cast<std::int8_t>(iscale[j] == 0.0f ? 0 : nmax + ggml::grid_code(x[i], iscale[j], nmax));
    }
  }
};

// Q3_K's finish after fits that kept no codes (Q3KChunk): a sub-block whose stored step is 0
// (an all-zero one, or one far smaller than the super-block's largest) is fitted again alone,
// by the codec, for its codes.
struct Q3KFitCodes : LaneSubBlockCodes {
  WQ_LANES_INLINE void unscaled(const float* x, int count, int /*j*/, std::int8_t* L) const {
    ggml::fit_symmetric_refined(count, 4, x, L);
  }
};

// The codec's quantize_q3_k_scales() and q3_k_step() of kLanes super-blocks, super-block b in
// lane b, the codec's operations lane by lane: its largest scale by signed_extreme_lanes(), its
// sixteen 6-bit scales, their packed bytes and d. A super-block at a time (its sixteen scales
// in two registers, the largest found by a scalar search, then a test per sub-block for a zero
// step) they were a tenth of Q3_K's time.
// scales: sub-block j of super-block b at 16 b + j, for kLanes super-blocks (those past
// `blocks` too: their lanes are computed, not stored). Writes d and scales of y[0, blocks),
// sub-block j's step of super-block b to steps[kLanes j + b], and bit j of zero_steps[b] where
// that step is 0.
WQ_LANES_INLINE void q3_k_scales_lanes(const float* scales, int blocks, ggml::BlockQ3_K* y, float* steps,
                                       unsigned* zero_steps) {
  V S[16];
  load_sub_blocks<16>(scales, 16, S);
  V amax;
  const V max_scale = signed_extreme_lanes(S, 16, &amax);
  const VI scaled = max_scale != 0.0f;
  const V iscale = -32.0f / max_scale;  // unused in lanes without a scale
  VI l[16];                             // 0..63: each sub-block's scale, as stored
  for (int j = 0; j < 16; ++j) {
    const VI code = (nearest_int(iscale * S[j]) << 24) >> 24;  // the codec's cast to int8_t
    l[j] = scaled ? clamp(code, -32, 31) + 32 : VI{};
  }
  // The twelve bytes as three little-endian words: bytes 0-7 hold the low nibbles (sub-block k
  // in byte k's low half, k + 8 in its high half), bytes 8-11 the high two bits (sub-block j's in
  // byte 8 + j % 4 at bit 2 (j / 4)).
  VI low = VI{}, middle = VI{}, high = VI{};
  for (int k = 0; k < 4; ++k) {
    low |= ((l[k] & 15) | (l[k + 8] & 15) << 4) << (8 * k);
    middle |= ((l[k + 4] & 15) | (l[k + 12] & 15) << 4) << (8 * k);
  }
  for (int j = 0; j < 16; ++j) high |= (l[j] >> 4) << (8 * (j % 4) + 2 * (j / 4));
  const V d = scaled ? 1.0f / iscale : V{};
  V stored_d;  // d through its binary16
  for (int b = 0; b < kLanes; ++b) {
    const std::uint16_t bits = codec::f32_to_f16_bits(d[b]);
    stored_d[b] = codec::f16_bits_to_f32(bits);
    if (b >= blocks) continue;
    const std::uint32_t words[3] = {static_cast<std::uint32_t>(low[b]), static_cast<std::uint32_t>(middle[b]),
                                    static_cast<std::uint32_t>(high[b])};
    static_assert(sizeof words == sizeof y[b].scales);
    std::memcpy(y[b].scales, words, sizeof words);
    y[b].d = bits;
  }
  VI zero = VI{};
  for (int j = 0; j < 16; ++j) {
    const V step = stored_d * to_float(l[j] - 32);
    std::memcpy(steps + kLanes * j, &step, sizeof step);
    zero |= (step == 0.0f) & (1 << j);
  }
  for (int b = 0; b < blocks; ++b) zero_steps[b] = static_cast<unsigned>(zero[b]);
}

// Q3_K's finish after q3_k_scales_lanes(), which wrote the block's d and scale bytes: its steps,
// for finish_q3_k(), which would otherwise compute all three.
struct Q3KLaneScaleCodes : Q3KFitCodes {
  const float* steps;  // sub-block j's at steps[kLanes j]
  WQ_LANES_INLINE void q3_k_scales(const float* /*scales*/, ggml::BlockQ3_K* /*y*/, float* out) const {
    for (int j = 0; j < 16; ++j) out[j] = steps[kLanes * j];
  }
};

// `blocks` (at most Q3KChunk::kBlocks) super-blocks of Q3_K into y; where `values` is not null,
// the values they decode to as well (256 per super-block).
template <typename Rounding>
WQ_LANES_INLINE void quantize_q3_k_chunk(const float* x, int blocks, ggml::BlockQ3_K* y, float* values) {
  float scales[Q3KChunk::kSubBlocks];
  if constexpr (Rounding::kWide) {  // the AVX-512 clone: a super-block per register
    fit_q3_k_avx512(x, blocks, scales);
  } else {
    fit_q3_k_chunk<V, 4>(x, blocks, scales);
  }
  static_assert(Q3KChunk::kBlocks % kLanes == 0);
  const int whole = (blocks + kLanes - 1) / kLanes * kLanes;  // the last lanes' scales: any finite value
  std::fill(scales + 16 * blocks, scales + 16 * whole, 0.0f);
  float steps[Q3KChunk::kSubBlocks];
  unsigned zero_steps[Q3KChunk::kBlocks];
  for (int b = 0; b < blocks; b += kLanes) {
    q3_k_scales_lanes(scales + 16 * b, std::min(kLanes, blocks - b), y + b, steps + 16 * b, zero_steps + b);
  }
  for (int b = 0; b < blocks; ++b) {
    const float* xb = x + ggml::kSuperBlock * b;
    const Q3KLaneScaleCodes codes{{}, steps + 16 * (b - b % kLanes) + b % kLanes};
    std::int8_t L[ggml::kSuperBlock];
    if constexpr (Rounding::kWide) {
      // finish_q3_k()'s steps spelled for sixteen lanes: the codes of the sub-blocks whose step
      // is 0 as its Codes::unscaled() gives them, then every other code and the packing a
      // sub-block per 512-bit register (q3_k_codes_avx512(); the finish was a quarter of Q3_K's
      // time, two thirds of it the codes' divisions and their conversion to bytes).
      // The zero steps come as a mask from q3_k_scales_lanes(), not from a test per sub-block.
      float block_steps[16];
      codes.q3_k_scales(nullptr, nullptr, block_steps);
      for (unsigned zeros = zero_steps[b]; zeros != 0; zeros &= zeros - 1) {
        const int j = __builtin_ctz(zeros);
        codes.unscaled(xb + 16 * j, 16, j, L + 16 * j);
      }
      q3_k_codes_avx512(xb, block_steps, zero_steps[b], L, y[b].hmask, y[b].qs,
                        values != nullptr ? values + ggml::kSuperBlock * b : nullptr);
    } else {
      ggml::finish_q3_k(xb, scales + 16 * b, L, y + b, codes);
      if (values != nullptr) ggml::decode_block(y[b], values + ggml::kSuperBlock * b);
    }
  }
}

// Q2_K and Q6_K: kBlocks consecutive super-blocks (2 * kBlocks rounds of lanes) searched together,
// then each finished by the codec, with the lanes' final codes.
template <int kBlocks, typename Rounding>
WQ_LANES_INLINE void quantize_lanes(const float* x, ggml::BlockQ2_K* y) {
  std::uint8_t L[kBlocks * ggml::kSuperBlock];
  float scales[kBlocks * 16], mins[kBlocks * 16], grid_iscale[kBlocks * 16], grid_min[kBlocks * 16];
  search_q2_k_lanes<Rounding, 2 * kBlocks>(x, scales, mins, SubBlockGrids{grid_iscale, grid_min});
  for (int b = 0; b < kBlocks; ++b) {
    const LaneGridCodes codes{{}, grid_iscale + 16 * b, grid_min + 16 * b, 3};
    ggml::finish_q2_k(x + ggml::kSuperBlock * b, scales + 16 * b, mins + 16 * b, L + ggml::kSuperBlock * b, y + b,
                      codes);
  }
}

template <int kBlocks, typename Rounding>
WQ_LANES_INLINE void quantize_lanes(const float* x, ggml::BlockQ6_K* y) {
  std::int8_t L[kBlocks * ggml::kSuperBlock];
  float scales[kBlocks * 16], grid_iscale[kBlocks * 16];
  search_q6_k_lanes<Rounding, 2 * kBlocks>(x, scales, SubBlockGrids{grid_iscale, nullptr});
  for (int b = 0; b < kBlocks; ++b) {
    const LaneGridCodes codes{{}, grid_iscale + 16 * b, nullptr, 32};
    ggml::finish_q6_k(x + ggml::kSuperBlock * b, scales + 16 * b, L + ggml::kSuperBlock * b, y + b, codes);
  }
}

// Q4_K and Q5_K: R consecutive super-blocks searched together, then each finished.
template <int R, typename Rounding, typename Block>
WQ_LANES_INLINE void quantize_scale_min_lanes(const float* x, Block* y) {
  constexpr bool q4 = sizeof(Block) == sizeof(ggml::BlockQ4_K);
  constexpr int nmax = q4 ? ggml::kQ4KMax : ggml::kQ5KMax;
  std::uint8_t L[R * ggml::kSuperBlock];
  float scales[R * kLanes], mins[R * kLanes], grid_iscale[R * kLanes], grid_min[R * kLanes];
  search_lanes<Rounding, R>(x, nmax, q4 ? ggml::q4_k_search() : ggml::q5_k_search(), scales, mins,
                            SubBlockGrids{grid_iscale, grid_min});
  for (int r = 0; r < R; ++r) {
    Block* const b = y + r;
    std::uint8_t* const Lb = L + ggml::kSuperBlock * r;
    const LaneGridCodes codes{{}, grid_iscale + kLanes * r, grid_min + kLanes * r, nmax};
    ggml::finish_scale_min_super_block(x + ggml::kSuperBlock * r, nmax, scales + kLanes * r, mins + kLanes * r, &b->d,
                                       &b->dmin, b->scales, Lb, codes);
    if constexpr (q4) {
      ggml::pack_q4_k_codes(Lb, b);
    } else {
      ggml::pack_q5_k_codes(Lb, b);
    }
  }
}

template <int kBlocks, typename Rounding, typename Block>
WQ_LANES_INLINE void quantize_lanes(const float* x, Block* y) {
  quantize_scale_min_lanes<kBlocks, Rounding>(x, y);
}

// How many super-blocks are searched together: their rounds of lanes go through each step side by
// side. Measured (bench/RESULTS.md, "Issue 15, fourth round" and "sixth round"): two beat one by
// 1.1-1.2x on every type but Q6_K, whose two rounds of one super-block already fill the
// registers (four rounds spill the sums: one is 1.06x two); four spill and halve Q3_K. The
// searches in sixteen lanes (Rounding::kWide, 32 registers) want two registers side by side too:
// Q2_K's and Q6_K's hold a super-block each (two at once: 1.2x one; four: within the noise),
// Q4_K's and Q5_K's two (four super-blocks at once: 1.25x two).
template <typename Block, typename Rounding>
constexpr int kBlocksAtOnce = 2;
template <typename Rounding>
constexpr int kBlocksAtOnce<ggml::BlockQ6_K, Rounding> = Rounding::kWide ? 2 : 1;
template <typename Rounding>
constexpr int kBlocksAtOnce<ggml::BlockQ4_K, Rounding> = Rounding::kWide ? 4 : 2;
template <typename Rounding>
constexpr int kBlocksAtOnce<ggml::BlockQ5_K, Rounding> = Rounding::kWide ? 4 : 2;

// `blocks` super-blocks from x into out (unaligned), kBlocksAtOnce at a time, the rest one by one;
// Q3_K in chunks of Q3KChunk::kBlocks, whose sub-blocks share one refinement queue, and with
// the values its blocks decode to where `values` is not null (null for every other type).
template <typename Block, typename Rounding>
WQ_LANES_INLINE void quantize_run(const float* x, std::uint64_t blocks, std::uint8_t* out, float* values) {
  if constexpr (std::is_same_v<Block, ggml::BlockQ3_K>) {
    for (std::uint64_t b = 0; b < blocks; b += Q3KChunk::kBlocks) {
      const int n = static_cast<int>(std::min<std::uint64_t>(Q3KChunk::kBlocks, blocks - b));
      ggml::BlockQ3_K y[Q3KChunk::kBlocks];  // built aligned, then copied
      quantize_q3_k_chunk<Rounding>(x + b * ggml::kSuperBlock, n, y,
                                    values != nullptr ? values + b * ggml::kSuperBlock : nullptr);
      std::memcpy(out + b * sizeof(Block), y, static_cast<std::size_t>(n) * sizeof(Block));
    }
  } else {
    constexpr int kAtOnce = kBlocksAtOnce<Block, Rounding>;
    std::uint64_t b = 0;
    for (; b + kAtOnce <= blocks; b += kAtOnce) {
      Block y[kAtOnce];  // built aligned, then copied
      quantize_lanes<kAtOnce, Rounding>(x + b * ggml::kSuperBlock, y);
      std::memcpy(out + b * sizeof(Block), y, sizeof y);
    }
    for (; b < blocks; ++b) {
      Block y;
      quantize_lanes<1, Rounding>(x + b * ggml::kSuperBlock, &y);
      std::memcpy(out + b * sizeof(Block), &y, sizeof y);
    }
  }
}

template <typename Block>
__attribute__((target("avx2"))) void quantize_avx2(const float* x, std::uint64_t blocks, std::uint8_t* out,
                                                   float* values) {
  quantize_run<Block, Avx2Rounding>(x, blocks, out, values);
}

// The AVX-512 clone's rounding: Avx2Rounding's, and the searches in sixteen lanes
// (search_*_avx512(), cpu/ggml_kquant_search_avx512.cpp).
struct Avx512CloneRounding : Avx2Rounding {
  static constexpr bool kWide = true;
};

// The k-quants' code with 32 vector registers (AVX-512VL, 256-bit operations), and their
// searches in sixteen lanes (512-bit, search_*_avx512() and fit_q3_k_avx512()) where
// Rounding::kWide says so: 1.3-1.6x (Zen 5, bench/RESULTS.md). Avx2Rounding's asm keeps its "x"
// operands in the sixteen registers that vroundps can address.
template <typename Block>
__attribute__((target("avx2,avx512f,avx512vl,avx512bw,avx512dq"))) void quantize_avx512(const float* x,
                                                                                        std::uint64_t blocks,
                                                                                        std::uint8_t* out,
                                                                                        float* values) {
  quantize_run<Block, Avx512CloneRounding>(x, blocks, out, values);
}

template <typename Block>
void quantize_baseline(const float* x, std::uint64_t blocks, std::uint8_t* out, float* values) {
  quantize_run<Block, BaselineRounding>(x, blocks, out, values);
}

__attribute__((target("avx2"))) void q3_k_scales_avx2(const float* scales, int blocks, ggml::BlockQ3_K* y,
                                                      float* steps, unsigned* zero_steps) {
  q3_k_scales_lanes(scales, blocks, y, steps, zero_steps);
}

void q3_k_scales_baseline(const float* scales, int blocks, ggml::BlockQ3_K* y, float* steps, unsigned* zero_steps) {
  q3_k_scales_lanes(scales, blocks, y, steps, zero_steps);
}

template <bool kOffset>
__attribute__((target("avx2"))) void final_codes_avx2(const float* x, int count, float d, float dm, int lo, int hi,
                                                      int bias, std::uint8_t* out) {
  final_codes<kOffset>(x, count, d, dm, lo, hi, bias, out);
}

template <bool kOffset>
void final_codes_baseline(const float* x, int count, float d, float dm, int lo, int hi, int bias, std::uint8_t* out) {
  final_codes<kOffset>(x, count, d, dm, lo, hi, bias, out);
}

template <typename Block>
void quantize_blocks(const float* x, std::uint64_t blocks, std::uint8_t* out, float* values = nullptr) {
  if (use_avx512vl()) return quantize_avx512<Block>(x, blocks, out, values);
  use_avx2() ? quantize_avx2<Block>(x, blocks, out, values) : quantize_baseline<Block>(x, blocks, out, values);
}

}  // namespace

void quantize_q4_k_lanes(const float* x, std::uint64_t blocks, std::uint8_t* out) {
  quantize_blocks<ggml::BlockQ4_K>(x, blocks, out);
}

void quantize_q5_k_lanes(const float* x, std::uint64_t blocks, std::uint8_t* out) {
  quantize_blocks<ggml::BlockQ5_K>(x, blocks, out);
}

void quantize_q2_k_lanes(const float* x, std::uint64_t blocks, std::uint8_t* out) {
  quantize_blocks<ggml::BlockQ2_K>(x, blocks, out);
}

void quantize_q6_k_lanes(const float* x, std::uint64_t blocks, std::uint8_t* out) {
  quantize_blocks<ggml::BlockQ6_K>(x, blocks, out);
}

void quantize_q3_k_lanes(const float* x, std::uint64_t blocks, std::uint8_t* out, float* values) {
  quantize_blocks<ggml::BlockQ3_K>(x, blocks, out, values);
}

void q3_k_scales_of_lanes(const float* scales, int blocks, codec::ggml::BlockQ3_K* y, float* steps,
                          unsigned* zero_steps) {
  use_avx2() ? q3_k_scales_avx2(scales, blocks, y, steps, zero_steps)
             : q3_k_scales_baseline(scales, blocks, y, steps, zero_steps);
}

void kquant_final_codes(const float* x, int count, float d, float dm, bool offset, int lo, int hi, std::uint8_t* out) {
  const int bias = offset ? 0 : -lo;
  if (offset) {
    use_avx2() ? final_codes_avx2<true>(x, count, d, dm, lo, hi, bias, out)
               : final_codes_baseline<true>(x, count, d, dm, lo, hi, bias, out);
  } else {
    use_avx2() ? final_codes_avx2<false>(x, count, d, dm, lo, hi, bias, out)
               : final_codes_baseline<false>(x, count, d, dm, lo, hi, bias, out);
  }
}

}  // namespace wq::detail
