// Group ranges in two passes: warps reduce tiles of a group, then one thread or warp per
// group folds its tiles and turns the range into the codec's parameters. Per-tensor and long per-channel
// groups split into many tiles (a device-wide two-pass reduction); short groups are one tile.
#include <cuda_runtime.h>

#include <cub/warp/warp_reduce.cuh>

#include "cuda_check.h"
#include "device_elements.cuh"
#include "kernels.h"
#include "wq/codec/affine.h"

namespace wq::cuda {
namespace {

constexpr unsigned kWarpsPerBlock = 8;

struct FloatMin {
  __device__ float operator()(float a, float b) const { return fminf(a, b); }
};
struct FloatMax {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

// Smallest and largest of elements begin, begin + 32, ... < end: four independent loads in
// flight per step hide memory latency.
__device__ __forceinline__ void range_of(ElementType type, const std::uint8_t* base,
                                         std::uint64_t begin, std::uint64_t end, float* lo_out,
                                         float* hi_out) {
  float lo[4], hi[4];
  for (int k = 0; k < 4; ++k) {
    lo[k] = *lo_out;
    hi[k] = *hi_out;
  }
  std::uint64_t i = begin;
  for (; i + 96 < end; i += 128) {
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const float x = load_element(type, base, i + 32 * k);
      lo[k] = fminf(lo[k], x);
      hi[k] = fmaxf(hi[k], x);
    }
  }
  for (; i < end; i += 32) {
    const float x = load_element(type, base, i);
    lo[0] = fminf(lo[0], x);
    hi[0] = fmaxf(hi[0], x);
  }
  *lo_out = fminf(fminf(lo[0], lo[1]), fminf(lo[2], lo[3]));
  *hi_out = fmaxf(fmaxf(hi[0], hi[1]), fmaxf(hi[2], hi[3]));
}

__global__ void tile_range_kernel(const QuantPiece* pieces, unsigned piece_count,
                                  std::uint64_t tiles, const std::uint8_t* input, float* tile_lo,
                                  float* tile_hi) {
  using WarpReduce = cub::WarpReduce<float>;
  __shared__ typename WarpReduce::TempStorage storage[kWarpsPerBlock];
  const unsigned warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const std::uint64_t tile = static_cast<std::uint64_t>(blockIdx.x) * kWarpsPerBlock + warp;
  if (tile >= tiles) return;  // whole warps leave together
  const QuantPiece& p = pieces[find_piece(pieces, piece_count, tile,
                                          [](const QuantPiece& q) { return q.tile_begin; })];
  if (p.host_ranges) return;
  const std::uint64_t local = tile - p.tile_begin;
  const std::uint64_t group = p.first_group + local / p.tiles_per_group;
  const std::uint64_t part = local % p.tiles_per_group;
  std::uint64_t start, length;
  group_extent(p.layout, group, &start, &length);
  std::uint64_t stop = start + length;
  start = start > p.elem_begin ? start : p.elem_begin;  // the group's part inside the piece
  stop = stop < p.elem_end ? stop : p.elem_end;
  const std::uint64_t tile_start = start + part * kRangeTile;
  const std::uint64_t tile_end = tile_start + kRangeTile < stop ? tile_start + kRangeTile : stop;
  const std::uint8_t* base = input + p.src_offset;
  // An empty tile (tile_start >= tile_end) reads nothing and reports +inf, -inf.
  const std::uint64_t begin = tile_start - p.elem_begin + lane;
  const std::uint64_t end = tile_end > tile_start ? tile_end - p.elem_begin : 0;
  float lo = __int_as_float(0x7f800000), hi = -lo;  // +inf, -inf: fminf/fmaxf skip NaN
  switch (p.type) {  // the dtype decided once per tile, not per element
    case ElementType::kF32: range_of(ElementType::kF32, base, begin, end, &lo, &hi); break;
    case ElementType::kF64: range_of(ElementType::kF64, base, begin, end, &lo, &hi); break;
    case ElementType::kF16: range_of(ElementType::kF16, base, begin, end, &lo, &hi); break;
    case ElementType::kBF16: range_of(ElementType::kBF16, base, begin, end, &lo, &hi); break;
  }
  lo = WarpReduce(storage[warp]).Reduce(lo, FloatMin{});
  __syncwarp();
  hi = WarpReduce(storage[warp]).Reduce(hi, FloatMax{});
  if (lane == 0) {
    tile_lo[tile] = lo;
    tile_hi[tile] = hi;
  }
}

// `Lanes` threads per group (1, or 32 where some group has many tiles: a per-tensor range of
// 64M elements has 8192 of them, and one thread folding them was a quarter of the whole
// quantization) fold the group's tiles, then the first turns the range into the codec's
// parameters.
template <unsigned Lanes>
__global__ void group_params_kernel(const QuantPiece* pieces, unsigned piece_count,
                                    std::uint64_t groups, const float* tile_lo,
                                    const float* tile_hi, float* scales, float* mins,
                                    std::uint32_t* stored_scales, std::uint32_t* stored_mins,
                                    std::uint32_t* status) {
  const unsigned lane = threadIdx.x % Lanes;
  const std::uint64_t index = (static_cast<std::uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / Lanes;
  if (index >= groups) return;  // with 32 lanes, whole warps leave together
  const QuantPiece& p = pieces[find_piece(pieces, piece_count, index,
                                          [](const QuantPiece& q) { return q.param_index; })];
  // Single-pass pieces own parameter entries too but are not in this table: skip theirs.
  if (index < p.param_index || index - p.param_index >= p.last_group - p.first_group) return;
  const std::uint64_t first_tile = p.tile_begin + (index - p.param_index) * p.tiles_per_group;
  // Four tiles per lane per step, loaded before any is used: a loop of one load pair per step
  // waits out the L2 latency at every step (8192 tiles: 256 steps per lane).
  constexpr std::uint32_t kAhead = 4;
  float los[kAhead], his[kAhead];
#pragma unroll
  for (std::uint32_t k = 0; k < kAhead; ++k) {
    los[k] = __int_as_float(0x7f800000);  // +inf, -inf: empty tiles hold these too
    his[k] = -los[k];
  }
  const std::uint32_t tiles = p.tiles_per_group;
  std::uint32_t t = lane;
  for (; t + (kAhead - 1) * Lanes < tiles; t += kAhead * Lanes) {
    float l[kAhead], h[kAhead];
#pragma unroll
    for (std::uint32_t k = 0; k < kAhead; ++k) {
      l[k] = tile_lo[first_tile + t + k * Lanes];
      h[k] = tile_hi[first_tile + t + k * Lanes];
    }
#pragma unroll
    for (std::uint32_t k = 0; k < kAhead; ++k) {
      los[k] = fminf(los[k], l[k]);
      his[k] = fmaxf(his[k], h[k]);
    }
  }
  for (; t < tiles; t += Lanes) {
    los[0] = fminf(los[0], tile_lo[first_tile + t]);
    his[0] = fmaxf(his[0], tile_hi[first_tile + t]);
  }
  float lo = fminf(fminf(los[0], los[1]), fminf(los[2], los[3]));
  float hi = fmaxf(fmaxf(his[0], his[1]), fmaxf(his[2], his[3]));
  for (unsigned offset = Lanes / 2; offset >= 1; offset /= 2) {
    lo = fminf(lo, __shfl_xor_sync(0xffffffffu, lo, offset));
    hi = fmaxf(hi, __shfl_xor_sync(0xffffffffu, hi, offset));
  }
  if (lane != 0) return;
  codec::AffineParams params{0.0f, 0.0f};
  std::uint32_t failure = 0;
  if (!codec::is_finite(lo) || !codec::is_finite(hi)) {
    failure = kStatusNonFinite;
  } else {
    // Min-max or symmetric; an mse piece's search then starts from these (launch_mse_params).
    const codec::Recipe recipe{static_cast<codec::RangeRule>(p.rule), p.bits, p.f16_params != 0};
    switch (codec::rule_params(lo, hi, recipe, &params)) {
      case codec::ParamsStatus::kOk: break;
      case codec::ParamsStatus::kRangeOverflow: failure = kStatusRangeOverflow; break;
      case codec::ParamsStatus::kF16Overflow: failure = kStatusF16Overflow; break;
    }
  }
  if (failure != 0) {
    atomicOr(&status[p.piece_index], failure);
    params = {0.0f, 0.0f};
  }
  scales[index] = params.scale;
  mins[index] = params.min;
  stored_scales[index] = p.f16_params ? codec::f32_to_f16_bits(params.scale) : codec::float_bits(params.scale);
  stored_mins[index] = p.f16_params ? codec::f32_to_f16_bits(params.min) : codec::float_bits(params.min);
}

unsigned grid_of(std::uint64_t items, std::uint64_t per_block) {
  return static_cast<unsigned>((items + per_block - 1) / per_block);
}

}  // namespace

void launch_tile_ranges(const QuantPiece* pieces, unsigned piece_count, std::uint64_t tiles,
                        const std::uint8_t* input, float* tile_lo, float* tile_hi,
                        cudaStream_t stream) {
  if (tiles == 0 || piece_count == 0) return;
  tile_range_kernel<<<grid_of(tiles, kWarpsPerBlock), kWarpsPerBlock * 32, 0, stream>>>(
      pieces, piece_count, tiles, input, tile_lo, tile_hi);
  WQ_CUDA_CHECK(cudaGetLastError());
}

void launch_group_params(const QuantPiece* pieces, unsigned piece_count, std::uint64_t groups,
                         const float* tile_lo, const float* tile_hi, float* scales, float* mins,
                         std::uint32_t* stored_scales, std::uint32_t* stored_mins,
                         std::uint32_t* status, std::uint32_t max_tiles_per_group, cudaStream_t stream) {
  if (groups == 0 || piece_count == 0) return;
  if (max_tiles_per_group > 1) {
    group_params_kernel<32><<<grid_of(groups, 256 / 32), 256, 0, stream>>>(
        pieces, piece_count, groups, tile_lo, tile_hi, scales, mins, stored_scales, stored_mins, status);
  } else {
    group_params_kernel<1><<<grid_of(groups, 256), 256, 0, stream>>>(
        pieces, piece_count, groups, tile_lo, tile_hi, scales, mins, stored_scales, stored_mins, status);
  }
  WQ_CUDA_CHECK(cudaGetLastError());
}

}  // namespace wq::cuda
