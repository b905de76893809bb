// The k-quants (Q2_K to Q6_K) on the CPU with the sub-block searches of a super-block side by
// side, one per SIMD lane.
//
// Why a second spelling of ggml_kquant_search.h's fit_scale_and_offset: ggml's search adds its
// sums in element order, one sub-block at a time, so it cannot be vectorised along the
// elements without changing the bytes; but the eight sub-blocks are independent, and lane j
// doing exactly sub-block j's operations, in the same order, changes nothing. The branches of
// the scalar search become per-lane selects. The rest of the block (the 6-bit scales, the final
// codes) is the codec's own finish_scale_min_super_block(). The backend suites and
// tests/reference/ggml_live_check.py hold these blocks to the codec's and to ggml's.
#pragma once

#include "wq/codec/ggml_blocks.h"

namespace wq::detail {

/// codec::ggml::quantize_block() for Q4_K and Q5_K, bit for bit, several times faster. Uses
/// AVX2 where use_avx2() allows, the baseline vector code otherwise.
void quantize_q4_k_lanes(const float* x, codec::ggml::BlockQ4_K* y);
void quantize_q5_k_lanes(const float* x, codec::ggml::BlockQ5_K* y);
/// The same for Q2_K (sixteen make_qkx2_quants searches of 16) and Q6_K (make_qx_quants), in two
/// rounds of eight lanes.
void quantize_q2_k_lanes(const float* x, codec::ggml::BlockQ2_K* y);
void quantize_q6_k_lanes(const float* x, codec::ggml::BlockQ6_K* y);
/// And Q3_K (make_q3_quants with its refinement passes, each lane on its own).
void quantize_q3_k_lanes(const float* x, codec::ggml::BlockQ3_K* y);

}  // namespace wq::detail
