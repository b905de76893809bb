// The k-quants (Q2_K to Q6_K) on the CPU with the sub-block searches of a super-block side by
// side, one per SIMD lane.
//
// Why a second spelling of ggml_kquant_search.h's fit_scale_and_offset: ggml's search adds its
// sums in element order, one sub-block at a time, so it cannot be vectorised along the
// elements without changing the bytes; but the eight sub-blocks are independent, and lane j
// doing exactly sub-block j's operations, in the same order, changes nothing. The branches of
// the scalar search become per-lane selects; two super-blocks are searched together so that the
// core interleaves their chains; candidate codes are rounded in float where that is exact (see
// rounded_code()); Q3_K's refinement passes, which most sub-blocks end after one, run from a queue
// that keeps the lanes full (q3_k_refine_queue()). The sub-block scales and the packing are the
// codec's own functions, but for Q6_K's scales (two registers of a super-block's), Q3_K's (a
// super-block per lane) and Q3_K's packing on AVX-512; the final codes are computed eight at a
// time with the codec's operations. The backend suites,
// tests/unit/ggml_final_codes_test.cpp and tests/reference/ggml_live_check.py hold these blocks
// to the codec's and to ggml's.
#pragma once

#include <cstdint>

#include "wq/codec/ggml_blocks.h"
#include "wq/codec/ggml_kquant_search.h"

namespace wq::detail {

/// How many super-blocks the functions below should be given at once where the caller can: Q3_K
/// refines the sub-blocks of that many together (fewer cost speed, never bytes).
constexpr int kKQuantBatchBlocks = 64;

/// `blocks` super-blocks of x into `out` (unaligned): codec::ggml::quantize_block() for each,
/// bit for bit, several times faster. Uses AVX2 where use_avx2() allows (every type: the same
/// code built for AVX-512VL, with its searches in sixteen lanes, where use_avx512vl() allows),
/// the baseline vector code otherwise.
/// Q4_K and Q5_K: eight make_qkx2_quants searches of 32 per super-block.
void quantize_q4_k_lanes(const float* x, std::uint64_t blocks, std::uint8_t* out);
void quantize_q5_k_lanes(const float* x, std::uint64_t blocks, std::uint8_t* out);
/// Q2_K: sixteen make_qkx2_quants searches of 16; Q6_K: sixteen make_qx_quants.
void quantize_q2_k_lanes(const float* x, std::uint64_t blocks, std::uint8_t* out);
void quantize_q6_k_lanes(const float* x, std::uint64_t blocks, std::uint8_t* out);
/// Q3_K: sixteen make_q3_quants with their refinement passes, each lane on its own. Where
/// `values` is not null, also the value each element decodes to (codec::ggml::decode_block(),
/// bit for bit), 256 per super-block: with AVX-512 from the final codes and steps, without the
/// blocks' unpacking (the backend's statistics decoded them again).
void quantize_q3_k_lanes(const float* x, std::uint64_t blocks, std::uint8_t* out, float* values = nullptr);

/// The k-quants' sub-block searches of `blocks` consecutive super-blocks at x, sixteen lanes at
/// a time (cpu/ggml_kquant_search_avx512.cpp), with the results of the eight-lane searches, in
/// their order: sub-block j of super-block b at index 8 b + j (Q4_K, Q5_K; `blocks` a multiple
/// of 4) or 16 b + j (Q2_K, Q6_K). Only call where use_avx512vl() is true.
void search_scale_min_avx512(const float* x, int blocks, int nmax, codec::ggml::OffsetSearch search, float* scales,
                             float* mins, float* grid_iscale, float* grid_min);
void search_q2_k_avx512(const float* x, int blocks, codec::ggml::OffsetSearch search, float* scales, float* mins,
                        float* grid_iscale, float* grid_min);
void search_q6_k_avx512(const float* x, int blocks, float* scales, float* grid_iscale);
/// Q3_K's sub-block fits of `blocks` (at most kKQuantBatchBlocks) super-blocks, sixteen lanes at
/// a time: each sub-block's scale (16 b + j), as the eight-lane fits give it; no codes.
void fit_q3_k_avx512(const float* x, int blocks, float* scales);
/// Q3_K's final codes and their packing for the super-block at x, as codec::ggml::finish_q3_k()
/// computes them after its scales: sub-block j's codes are symmetric_code(x, steps[j], 4) where
/// bit j of zero_steps is clear (steps[j] != 0), else L[16 j..16 j + 15] (0..7, the caller's);
/// to hmask[32] and qs[64]; where `values` is not null, the 256 values the block decodes to,
/// steps[j] * (code - 4) as codec::ggml::decode_block() computes them.
void q3_k_codes_avx512(const float* x, const float* steps, unsigned zero_steps, const std::int8_t* L,
                       std::uint8_t* hmask, std::uint8_t* qs, float* values);

/// The final codes of one sub-block as the functions above compute them, eight at a time
/// (`count` a multiple of 8): codec::ggml::code_with_offset(x, d, dm, hi) where `offset`, else
/// symmetric_code(x, d, -lo), as bytes. For tests/unit/ggml_final_codes_test.cpp, which holds
/// them to the codec on divisions that land next to a half.
void kquant_final_codes(const float* x, int count, float d, float dm, bool offset, int lo, int hi, std::uint8_t* out);

/// Q3_K's scale bytes, d and steps of eight super-blocks, one per lane, as quantize_q3_k_lanes()
/// computes them: codec::ggml::quantize_q3_k_scales() and q3_k_step() of each. scales: sub-block
/// j of super-block b at 16 b + j, for all eight; writes d and scales of y[0, blocks), steps[8 j
/// + b] and, in zero_steps[b], bit j where that step is 0. For
/// tests/unit/ggml_final_codes_test.cpp, which holds them to the codec on ties, NaN and the ends
/// of binary16.
void q3_k_scales_of_lanes(const float* scales, int blocks, codec::ggml::BlockQ3_K* y, float* steps,
                          unsigned* zero_steps);

}  // namespace wq::detail
