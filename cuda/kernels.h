// Launchers of the CUDA backend's kernels. Each takes a slot's device buffers and piece table
// (see work_items.h) and enqueues its work on `stream`; none synchronises.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "work_items.h"
#include "work_plan.h"

namespace wq::cuda {

/// Ranges of the general (two-pass) pieces: one warp per tile of up to kRangeTile elements of
/// a group; tile_lo/hi[t] get the tile's smallest and largest value, NaN skipped (empty: +inf,
/// -inf). Pieces with host_ranges are left alone.
void launch_tile_ranges(const QuantPiece* pieces, unsigned piece_count, std::uint64_t tiles,
                        const std::uint8_t* input, float* tile_lo, float* tile_hi,
                        cudaStream_t stream);

/// One thread per group of the general pieces (a warp when max_tiles_per_group > 1): folds
/// its tiles into a range, computes the
/// codec's parameters into scales/mins (binary32) and stored_scales/stored_mins (the stored
/// bits: binary32, or binary16 in the low half), and flags failures in status[piece].
void launch_group_params(const QuantPiece* pieces, unsigned piece_count, std::uint64_t groups,
                         const float* tile_lo, const float* tile_hi, float* scales, float* mins,
                         std::uint32_t* stored_scales, std::uint32_t* stored_mins,
                         std::uint32_t* status, std::uint32_t max_tiles_per_group, cudaStream_t stream);

/// The range stage of the mse method (codec/mse.h): one thread per group of the general pieces
/// whose rule is kMse, after launch_group_params() has stored min-max's parameters. Each thread
/// runs the codec's search over its group in the input buffer (the codec's fixed order of
/// sums, so the CPU chooses the same parameters) and overwrites the group's parameters. Groups
/// already flagged in status are left alone.
void launch_mse_params(const QuantPiece* pieces, unsigned piece_count, std::uint64_t groups,
                       const std::uint8_t* input, float* scales, float* mins, std::uint32_t* stored_scales,
                       std::uint32_t* stored_mins, const std::uint32_t* status, cudaStream_t stream);

/// Codes of the general pieces from their groups' parameters: a thread writes exactly `bits`
/// bytes per 8 elements. stats[b] gets block b's error sums.
void launch_quantize_pack(const QuantPiece* pieces, unsigned piece_count, std::uint64_t blocks,
                          const std::uint8_t* input, const float* scales, const float* mins,
                          std::uint8_t* codes, std::uint32_t* status, BlockStats* stats,
                          cudaStream_t stream);

/// Single-pass quantization of the pieces of one schedule (any but kGeneral), each block
/// finding its group's range, parameters and codes while the values stay in registers:
///  - kSmallGroups: groups of 8, 16, ..., 256 elements that tile every row; a group's
///    8-element owners reduce its range through warp shuffles;
///  - kWarpGroups: groups of up to 2048 elements (multiples of 8) that tile every row; one warp
///    per group, kWarpGroupsPerBlock groups per block;
///  - kBlockGroups: groups of 2056..65536 elements (multiples of 8) that tile every row; one
///    block per group (blocks = the pieces' groups).
void launch_quantize_single_pass(QuantLaunch schedule, const QuantPiece* pieces, unsigned piece_count,
                                 std::uint64_t blocks, const std::uint8_t* input, std::uint32_t* stored_scales,
                                 std::uint32_t* stored_mins, std::uint8_t* codes, std::uint32_t* status,
                                 BlockStats* stats, cudaStream_t stream);

/// Decodes pieces: one thread per 8 codes.
void launch_dequantize(const DequantPiece* pieces, unsigned piece_count, std::uint64_t blocks,
                       const std::uint8_t* input, std::uint8_t* output, cudaStream_t stream);

/// Casts pieces between floating dtypes; a non-finite result sets kStatusCastOverflow.
void launch_cast(const CastPiece* pieces, unsigned piece_count, std::uint64_t blocks,
                 const std::uint8_t* input, std::uint8_t* output, std::uint32_t* status,
                 BlockStats* stats, cudaStream_t stream);

}  // namespace wq::cuda
