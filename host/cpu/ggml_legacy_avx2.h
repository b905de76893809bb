// The legacy blocks (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1) with AVX2: the 32 elements of a block in four
// registers.
//
// Why a second spelling of ggml_legacy.h: its per-element loops are scalar conversions
// (cvttss2si one element at a time). These do the same operations on eight elements at once,
// in the same order and with the same roundings: the block's extremes by comparisons (max and
// min do not depend on the order; the first element of largest magnitude is found by its
// index; Q8_0's largest magnitude by integer maxima of the magnitudes' bits, which also keep a
// NaN, where the codec's loop may skip one: only blocks that the backend refuses differ), d
// and 1/d in scalar code as there, each code by the same multiply, add and
// truncation (cvttps2dq, whose INT32_MIN for NaN and huge values is what cvttss2si gives), then
// ggml's narrowing to a byte and its clamp. The backend suites and
// tests/reference/ggml_live_check.py (subnormal, huge and tie inputs included) hold the bytes
// to the codec's and to ggml's own.
#pragma once

#include "wq/backend.h"
#include "wq/codec/ggml_blocks.h"

namespace wq::detail {

struct WideLaneStats;  // cpu/lanes.h

/// codec::ggml::quantize_block() for these types, bit for bit. Only call when use_avx2()
/// (cpu/cpu_features.h) is true.
void quantize_q8_0_avx2(const float* x, codec::ggml::BlockQ8_0* y);
/// `blocks` blocks of x into `out` (unaligned), eight at a time (their d and 1/d by one vector
/// division each): the bytes of the one-block functions, non-finite blocks included. Only
/// call when use_f16c() is true too.
void quantize_q8_0_blocks_avx2(const float* x, std::uint64_t blocks, std::uint8_t* out);
/// Eight blocks (one statistics chunk of 256 elements) of x into `out`, as the function above,
/// and their error statistics added to *stats (WideLaneStats::add()): the lane
/// sums of lane_stats<8>() over the values that the written blocks decode to, bit for bit,
/// without decoding them again. False, and *stats left alone, where a code of the eight lies
/// outside a byte (a non-finite input, a subnormal d) or a sum is not finite: the blocks are
/// written all the same, and the caller decodes them for the statistics.
bool quantize_q8_0_chunk_avx2(const float* x, std::uint8_t* out, WideLaneStats* stats);
/// The same for the other legacy types (false also where a code of the eight is not the one
/// the block stores).
bool quantize_q4_0_chunk_avx2(const float* x, std::uint8_t* out, WideLaneStats* stats);
bool quantize_q4_1_chunk_avx2(const float* x, std::uint8_t* out, WideLaneStats* stats);
bool quantize_q5_0_chunk_avx2(const float* x, std::uint8_t* out, WideLaneStats* stats);
bool quantize_q5_1_chunk_avx2(const float* x, std::uint8_t* out, WideLaneStats* stats);
void quantize_q4_0_blocks_avx2(const float* x, std::uint64_t blocks, std::uint8_t* out);
void quantize_q4_1_blocks_avx2(const float* x, std::uint64_t blocks, std::uint8_t* out);
void quantize_q5_0_blocks_avx2(const float* x, std::uint64_t blocks, std::uint8_t* out);
void quantize_q5_1_blocks_avx2(const float* x, std::uint64_t blocks, std::uint8_t* out);
void quantize_q4_0_avx2(const float* x, codec::ggml::BlockQ4_0* y);
void quantize_q4_1_avx2(const float* x, codec::ggml::BlockQ4_1* y);
void quantize_q5_0_avx2(const float* x, codec::ggml::BlockQ5_0* y);
void quantize_q5_1_avx2(const float* x, codec::ggml::BlockQ5_1* y);

}  // namespace wq::detail
