// The legacy blocks' decoders (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1) with AVX2 and F16C, eight
// elements at a time.
//
// Why a second spelling of ggml_legacy.h's decode_block(): that one is a loop of 32 elements
// behind a software binary16 conversion per block, which the compiler keeps mostly scalar
// (5-11 GB/s), and the statistics of Backend::quantize_ggml decode every block it writes. Each
// element here is the same value: d and m come from vcvtph2ps, exact as the codec's
// conversion; the code is the same integer; then one multiply, and for the types with a min one
// separate add, each rounded once as mul_rn and add_rn. (The product of a code below 2^8 and a
// binary16 d is exact in binary32, so the add is the only rounding that can matter.) The backend
// suites, tests/unit/ggml_vectors_test.cpp and tests/reference/ggml_live_check.py (ggml's own
// dequantize_row_*, on random block bytes too) hold the values to the codec's and to ggml's.
#pragma once

#include <cstdint>

#include "wq/codec/ggml_blocks.h"

namespace wq::detail {

/// `blocks` blocks at `in` (unaligned) into out[0 .. 32 * blocks): codec::ggml::decode_block()
/// of each, bit for bit. Only call when use_f16c() (cpu/cpu_features.h) is true.
void decode_q8_0_blocks_avx2(const std::uint8_t* in, std::uint64_t blocks, float* out);
void decode_q4_0_blocks_avx2(const std::uint8_t* in, std::uint64_t blocks, float* out);
void decode_q4_1_blocks_avx2(const std::uint8_t* in, std::uint64_t blocks, float* out);
void decode_q5_0_blocks_avx2(const std::uint8_t* in, std::uint64_t blocks, float* out);
void decode_q5_1_blocks_avx2(const std::uint8_t* in, std::uint64_t blocks, float* out);

}  // namespace wq::detail
