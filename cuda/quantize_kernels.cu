// Quantize + pack: a thread owns octets (8 consecutive elements) and writes exactly `bits`
// bytes for each, so no two threads touch the same byte (no atomics). The code of each
// element is the codec's (wq/codec/affine.h), compiled with --fmad=false: the CPU's bytes,
// bit for bit. Three schedules of the same arithmetic:
//   - general: parameters from range_kernels.cu, any group layout;
//   - small groups (8, 16, ..., 256 elements tiling rows): one pass, a group's owners are
//     adjacent lanes of a warp that reduce its range through shuffles;
//   - warp groups (up to 2048 elements tiling rows): one pass, one warp per group holds it in
//     registers while shuffles find its range;
//   - block groups (2056..16384 elements tiling rows): the same with one block per group.
// Loading every octet of a thread before using any was tried for the first two: the extra
// registers cost more occupancy than the loads in flight gained (bench/RESULTS.md).
#include <cuda_runtime.h>

#include <cub/block/block_reduce.cuh>

#include "cuda_check.h"
#include "device_elements.cuh"
#include "kernels.h"
#include "wq/codec/affine.h"
#include "wq/codec/pack.h"

namespace wq::cuda {
namespace {

__device__ inline std::uint32_t stored_bits(float value, bool f16) {
  return f16 ? codec::f32_to_f16_bits(value) : codec::float_bits(value);
}

// The codec's parameters of a range, or a status bit saying why there are none.
__device__ inline std::uint32_t params_of_range(float lo, float hi, const QuantPiece& p,
                                                codec::AffineParams* params) {
  *params = {0.0f, 0.0f};
  if (!codec::is_finite(lo) || !codec::is_finite(hi)) return kStatusNonFinite;
  switch (codec::affine_params(lo, hi, p.bits, p.f16_params != 0, params)) {
    case codec::ParamsStatus::kOk: return 0;
    case codec::ParamsStatus::kRangeOverflow: *params = {0.0f, 0.0f}; return kStatusRangeOverflow;
    case codec::ParamsStatus::kF16Overflow: *params = {0.0f, 0.0f}; return kStatusF16Overflow;
  }
  return 0;
}

// Codes of a whole octet under one group's parameters, its error into `stats`; returns
// whether every element was finite.
__device__ inline bool encode_octet(const float (&x)[8], codec::AffineParams p, float top,
                                    std::uint8_t (&codes)[8], ThreadStats& stats) {
  bool finite = true;
  float decoded[8];
  for (int k = 0; k < 8; ++k) {
    finite &= codec::is_finite(x[k]);
    const std::uint32_t q = codec::affine_code(x[k], p, top);
    codes[k] = static_cast<std::uint8_t>(q);
    decoded[k] = codec::affine_value(q, p);
  }
  stats.add_octet(x, decoded, 8);
  return finite;
}

__global__ void __launch_bounds__(kBlockThreads)
quantize_pack_kernel(const QuantPiece* pieces, unsigned piece_count, const std::uint8_t* input,
                     const float* scales, const float* mins, std::uint8_t* codes_out,
                     std::uint32_t* status, BlockStats* block_stats) {
  const QuantPiece& p = block_piece(pieces, piece_count);
  const std::uint64_t n = p.elem_end - p.elem_begin;
  const float top = static_cast<float>(codec::max_code(p.bits));
  ThreadStats stats;
  bool finite = true;
  for (unsigned r = 0; r < kOctetsPerThread; ++r) {
    const std::uint64_t octet = thread_octet(p.block_begin, r);
    if (8 * octet >= n) break;
    const int count = n - 8 * octet < 8 ? static_cast<int>(n - 8 * octet) : 8;
    float x[8];
    load_octet(p.type, input + p.src_offset, octet, count, x);
    const std::uint64_t first = p.elem_begin + 8 * octet;
    const std::uint64_t k0 = group_of(p.layout, first);
    std::uint8_t codes[8];
    float decoded[8];
    if (k0 == group_of(p.layout, first + count - 1)) {  // the common case: one group
      const std::uint64_t g = p.param_index + (k0 - p.first_group);
      const codec::AffineParams params{scales[g], mins[g]};
      for (int k = 0; k < 8; ++k) {
        finite &= k >= count || codec::is_finite(x[k]);
        const std::uint32_t q = k < count ? codec::affine_code(x[k], params, top) : 0;
        codes[k] = static_cast<std::uint8_t>(q);
        decoded[k] = codec::affine_value(q, params);
      }
    } else {
      for (int k = 0; k < 8; ++k) {
        if (k >= count) {
          codes[k] = 0;
          decoded[k] = 0.0f;
          continue;
        }
        const std::uint64_t g = p.param_index + (group_of(p.layout, first + k) - p.first_group);
        const codec::AffineParams params{scales[g], mins[g]};
        finite &= codec::is_finite(x[k]);
        const std::uint32_t q = codec::affine_code(x[k], params, top);
        codes[k] = static_cast<std::uint8_t>(q);
        decoded[k] = codec::affine_value(q, params);
      }
    }
    stats.add_octet(x, decoded, count);
    std::uint8_t* out = codes_out + p.code_offset + octet * p.bits;
    if (count == 8) {
      store_packed(codec::pack8_word(codes, p.bits), p.bits, out);
    } else {
      codec::pack_tail(codes, count, p.bits, out);
    }
  }
  if (!finite) atomicOr(&status[p.piece_index], kStatusNonFinite);
  write_block_stats(stats, block_stats);
}

// Groups of W = G/8 octets (W a power of two <= 32) that start at octet multiples of W within
// the piece: a group's owners are W adjacent lanes of one warp (blocks start at multiples of
// 256 octets, which W divides).
__global__ void __launch_bounds__(kBlockThreads)
quantize_small_groups_kernel(const QuantPiece* pieces, unsigned piece_count,
                             const std::uint8_t* input, std::uint32_t* stored_scales,
                             std::uint32_t* stored_mins, std::uint8_t* codes_out,
                             std::uint32_t* status, BlockStats* block_stats) {
  const QuantPiece& p = block_piece(pieces, piece_count);
  const std::uint64_t octets = (p.elem_end - p.elem_begin) / 8;
  const auto width = static_cast<unsigned>(p.layout.group_size / 8);
  const unsigned width_shift = __ffs(width) - 1;  // width is a power of two
  const float top = static_cast<float>(codec::max_code(p.bits));
  ThreadStats stats;
  std::uint32_t failure = 0;
  for (unsigned r = 0; r < kOctetsPerThread; ++r) {
    const std::uint64_t octet = thread_octet(p.block_begin, r);
    if ((octet & ~std::uint64_t{31}) >= octets) break;  // whole warps stop together
    const bool active = octet < octets;
    float x[8];
    float lo = __int_as_float(0x7f800000), hi = -lo;
    if (active) {
      load_octet(p.type, input + p.src_offset, octet, 8, x);
      for (int k = 0; k < 8; ++k) {
        lo = fminf(lo, x[k]);
        hi = fmaxf(hi, x[k]);
      }
    }
    for (unsigned offset = width / 2; offset >= 1; offset /= 2) {  // every lane takes part
      lo = fminf(lo, __shfl_xor_sync(0xffffffffu, lo, offset));
      hi = fmaxf(hi, __shfl_xor_sync(0xffffffffu, hi, offset));
    }
    if (!active) continue;
    codec::AffineParams params;
    const std::uint32_t range_failure = params_of_range(lo, hi, p, &params);
    std::uint8_t codes[8];
    if (range_failure == 0) {
      if (!encode_octet(x, params, top, codes, stats)) failure |= kStatusNonFinite;
    } else {
      failure |= range_failure;
      for (int k = 0; k < 8; ++k) codes[k] = 0;
    }
    if ((octet & (width - 1)) == 0) {
      const std::uint64_t g = p.param_index + (octet >> width_shift);
      stored_scales[g] = stored_bits(params.scale, p.f16_params != 0);
      stored_mins[g] = stored_bits(params.min, p.f16_params != 0);
    }
    store_packed(codec::pack8_word(codes, p.bits), p.bits, codes_out + p.code_offset + octet * p.bits);
  }
  if (failure != 0) atomicOr(&status[p.piece_index], failure);
  write_block_stats(stats, block_stats);
}

// One warp per group of W <= 256 octets: lane l holds octets l, l + 32, ... in registers
// between the range reduction (shuffles) and the encoding.
constexpr unsigned kWarpOctetsPerLane = kMaxWarpGroupOctets / 32;

__global__ void __launch_bounds__(kBlockThreads)
quantize_warp_groups_kernel(const QuantPiece* pieces, unsigned piece_count,
                            const std::uint8_t* __restrict__ input, std::uint32_t* stored_scales,
                            std::uint32_t* stored_mins, std::uint8_t* __restrict__ codes_out,
                            std::uint32_t* status, BlockStats* block_stats) {
  const QuantPiece& p = block_piece(pieces, piece_count);
  const unsigned warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const std::uint64_t local_group = (blockIdx.x - p.block_begin) * (kBlockThreads / 32) + warp;
  const bool active = local_group < p.last_group - p.first_group;  // whole warps
  const auto width = static_cast<unsigned>(p.layout.group_size / 8);
  const std::uint64_t first_octet = local_group * width;
  float x[kWarpOctetsPerLane][8];
  float lo = __int_as_float(0x7f800000), hi = -lo;
#pragma unroll
  for (unsigned r = 0; r < kWarpOctetsPerLane; ++r) {
    const unsigned o = r * 32 + lane;
    if (active && o < width) load_octet(p.type, input + p.src_offset, first_octet + o, 8, x[r]);
  }
#pragma unroll
  for (unsigned r = 0; r < kWarpOctetsPerLane; ++r) {
    if (active && r * 32 + lane < width) {
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        lo = fminf(lo, x[r][k]);
        hi = fmaxf(hi, x[r][k]);
      }
    }
  }
  for (unsigned offset = 16; offset >= 1; offset /= 2) {
    lo = fminf(lo, __shfl_xor_sync(0xffffffffu, lo, offset));
    hi = fmaxf(hi, __shfl_xor_sync(0xffffffffu, hi, offset));
  }
  ThreadStats stats;
  std::uint32_t failure = 0;
  if (active) {
    codec::AffineParams params;
    failure = params_of_range(lo, hi, p, &params);
    if (lane == 0) {
      const std::uint64_t g = p.param_index + local_group;
      stored_scales[g] = stored_bits(params.scale, p.f16_params != 0);
      stored_mins[g] = stored_bits(params.min, p.f16_params != 0);
    }
    const float top = static_cast<float>(codec::max_code(p.bits));
#pragma unroll
    for (unsigned r = 0; r < kWarpOctetsPerLane; ++r) {
      const unsigned o = r * 32 + lane;
      if (o < width) {
        std::uint8_t codes[8];
        if (failure == 0) {
          if (!encode_octet(x[r], params, top, codes, stats)) failure |= kStatusNonFinite;
        } else {
          for (int k = 0; k < 8; ++k) codes[k] = 0;
        }
        store_packed(codec::pack8_word(codes, p.bits), p.bits,
                     codes_out + p.code_offset + (first_octet + o) * p.bits);
      }
    }
  }
  if (failure != 0) atomicOr(&status[p.piece_index], failure);
  write_block_stats(stats, block_stats);
}

// One block per group of W octets, 256 < W <= 8 * kBlockThreads: thread t holds octets
// t, t + 256, ... in registers between the range reduction and the encoding.
constexpr unsigned kGroupOctetsPerThread = kMaxBlockGroupOctets / kBlockThreads;

__global__ void __launch_bounds__(kBlockThreads)
quantize_block_groups_kernel(const QuantPiece* pieces, unsigned piece_count,
                             const std::uint8_t* __restrict__ input, std::uint32_t* stored_scales,
                             std::uint32_t* stored_mins, std::uint8_t* __restrict__ codes_out,
                             std::uint32_t* status, BlockStats* block_stats) {
  using Reduce = cub::BlockReduce<float, kBlockThreads>;
  __shared__ typename Reduce::TempStorage storage;
  __shared__ float range[2];
  const QuantPiece& p = block_piece(pieces, piece_count);
  const std::uint64_t local_group = blockIdx.x - p.block_begin;
  const auto width = static_cast<unsigned>(p.layout.group_size / 8);
  const std::uint64_t first_octet = local_group * width;
  float x[kGroupOctetsPerThread][8];
  float lo = __int_as_float(0x7f800000), hi = -lo;
#pragma unroll
  for (unsigned r = 0; r < kGroupOctetsPerThread; ++r) {
    const unsigned o = r * kBlockThreads + threadIdx.x;
    if (o < width) {
      load_octet(p.type, input + p.src_offset, first_octet + o, 8, x[r]);
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        lo = fminf(lo, x[r][k]);
        hi = fmaxf(hi, x[r][k]);
      }
    }
  }
  lo = Reduce(storage).Reduce(lo, [](float a, float b) { return fminf(a, b); });
  __syncthreads();
  hi = Reduce(storage).Reduce(hi, [](float a, float b) { return fmaxf(a, b); });
  if (threadIdx.x == 0) {
    range[0] = lo;
    range[1] = hi;
  }
  __syncthreads();
  codec::AffineParams params;
  std::uint32_t failure = params_of_range(range[0], range[1], p, &params);
  if (threadIdx.x == 0) {
    const std::uint64_t g = p.param_index + local_group;
    stored_scales[g] = stored_bits(params.scale, p.f16_params != 0);
    stored_mins[g] = stored_bits(params.min, p.f16_params != 0);
  }
  const float top = static_cast<float>(codec::max_code(p.bits));
  ThreadStats stats;
#pragma unroll
  for (unsigned r = 0; r < kGroupOctetsPerThread; ++r) {
    const unsigned o = r * kBlockThreads + threadIdx.x;
    if (o < width) {
      std::uint8_t codes[8];
      if (failure == 0) {
        if (!encode_octet(x[r], params, top, codes, stats)) failure |= kStatusNonFinite;
      } else {
        for (int k = 0; k < 8; ++k) codes[k] = 0;
      }
      store_packed(codec::pack8_word(codes, p.bits), p.bits,
                   codes_out + p.code_offset + (first_octet + o) * p.bits);
    }
  }
  if (failure != 0) atomicOr(&status[p.piece_index], failure);
  write_block_stats(stats, block_stats);
}

}  // namespace

void launch_quantize_pack(const QuantPiece* pieces, unsigned piece_count, std::uint64_t blocks,
                          const std::uint8_t* input, const float* scales, const float* mins,
                          std::uint8_t* codes, std::uint32_t* status, BlockStats* stats,
                          cudaStream_t stream) {
  if (blocks == 0 || piece_count == 0) return;
  quantize_pack_kernel<<<static_cast<unsigned>(blocks), kBlockThreads, 0, stream>>>(
      pieces, piece_count, input, scales, mins, codes, status, stats);
  WQ_CUDA_CHECK(cudaGetLastError());
}

void launch_quantize_small_groups(const QuantPiece* pieces, unsigned piece_count,
                                  std::uint64_t blocks, const std::uint8_t* input,
                                  std::uint32_t* stored_scales, std::uint32_t* stored_mins,
                                  std::uint8_t* codes, std::uint32_t* status, BlockStats* stats,
                                  cudaStream_t stream) {
  if (blocks == 0 || piece_count == 0) return;
  quantize_small_groups_kernel<<<static_cast<unsigned>(blocks), kBlockThreads, 0, stream>>>(
      pieces, piece_count, input, stored_scales, stored_mins, codes, status, stats);
  WQ_CUDA_CHECK(cudaGetLastError());
}

void launch_quantize_warp_groups(const QuantPiece* pieces, unsigned piece_count,
                                 std::uint64_t blocks, const std::uint8_t* input,
                                 std::uint32_t* stored_scales, std::uint32_t* stored_mins,
                                 std::uint8_t* codes, std::uint32_t* status, BlockStats* stats,
                                 cudaStream_t stream) {
  if (blocks == 0 || piece_count == 0) return;
  quantize_warp_groups_kernel<<<static_cast<unsigned>(blocks), kBlockThreads, 0, stream>>>(
      pieces, piece_count, input, stored_scales, stored_mins, codes, status, stats);
  WQ_CUDA_CHECK(cudaGetLastError());
}

void launch_quantize_block_groups(const QuantPiece* pieces, unsigned piece_count,
                                  std::uint64_t blocks, const std::uint8_t* input,
                                  std::uint32_t* stored_scales, std::uint32_t* stored_mins,
                                  std::uint8_t* codes, std::uint32_t* status, BlockStats* stats,
                                  cudaStream_t stream) {
  if (blocks == 0 || piece_count == 0) return;
  quantize_block_groups_kernel<<<static_cast<unsigned>(blocks), kBlockThreads, 0, stream>>>(
      pieces, piece_count, input, stored_scales, stored_mins, codes, status, stats);
  WQ_CUDA_CHECK(cudaGetLastError());
}

}  // namespace wq::cuda
