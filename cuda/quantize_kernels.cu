// Quantize + pack: a thread owns octets (8 consecutive elements) and writes exactly `bits`
// bytes for each, so no two threads touch the same byte (no atomics). The codes are the
// codec's (wq/codec/affine.h; through octet_coder.cuh's proved reciprocal), compiled with
// --fmad=false: the CPU's bytes, bit for bit. Four schedules of the same arithmetic:
//   - general: parameters from range_kernels.cu, any group layout;
//   - small groups (8, 16, ..., 256 elements tiling rows): one pass, a group's owners are
//     adjacent lanes of a warp that reduce its range through shuffles;
//   - warp groups (up to 2048 elements tiling rows): one warp per group finds its range through
//     shuffles, then reads the group again (from cache) for the codes;
//   - block groups (2056..65536 elements tiling rows): the same with one block per group.
// Each kernel reads its piece's width once per block and runs the body compiled for it
// (with_bits), so packing uses constant shifts.
// Loading every octet of a thread before using any was tried for the small groups: the extra
// registers cost more occupancy than the loads in flight gained (bench/RESULTS.md).
#include <cuda_runtime.h>

#include <cub/block/block_reduce.cuh>

#include "cuda_check.h"
#include "device_elements.cuh"
#include "kernels.h"
#include "octet_coder.cuh"
#include "wq/codec/affine.h"
#include "wq/codec/pack.h"
#include "wq/error.h"

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
  const codec::Recipe recipe{static_cast<codec::RangeRule>(p.rule), p.bits, p.f16_params != 0};
  switch (codec::rule_params(lo, hi, recipe, params)) {  // mse pieces take the general schedule
    case codec::ParamsStatus::kOk: return 0;
    case codec::ParamsStatus::kRangeOverflow: *params = {0.0f, 0.0f}; return kStatusRangeOverflow;
    case codec::ParamsStatus::kF16Overflow: *params = {0.0f, 0.0f}; return kStatusF16Overflow;
  }
  return 0;
}

// Stores group g's parameters as the container holds them.
__device__ inline void store_params(const QuantPiece& p, std::uint64_t g, codec::AffineParams params,
                                    std::uint32_t* stored_scales, std::uint32_t* stored_mins) {
  stored_scales[g] = stored_bits(params.scale, p.f16_params != 0);
  stored_mins[g] = stored_bits(params.min, p.f16_params != 0);
}

// Codes of an octet of a group whose range failed: all 0 (the host reports the failure).
template <int Bits>
__device__ inline void store_failed_octet(std::uint8_t* out) {
  store_packed<Bits>(0, out);
}

// An octet that is partial (the piece's end) or spans groups: element by element.
__device__ inline void encode_elements(const QuantPiece& p, const float (&x)[8], int count, std::uint64_t first,
                                       const float* scales, const float* mins, float top, ThreadStats& stats,
                                       bool* finite, std::uint8_t* out) {
  std::uint8_t codes[8];
  float decoded[8];
  for (int k = 0; k < 8; ++k) {
    if (k >= count) {
      codes[k] = 0;
      decoded[k] = 0.0f;
      continue;
    }
    const std::uint64_t g = p.param_index + (group_of(p.layout, first + k) - p.first_group);
    const codec::AffineParams params{scales[g], mins[g]};
    *finite &= codec::is_finite(x[k]);
    const std::uint32_t q = codec::affine_code(x[k], params, top);
    codes[k] = static_cast<std::uint8_t>(q);
    decoded[k] = codec::affine_value(q, params);
  }
  stats.add_octet(x, decoded, count);
  if (count == 8) {
    codec::pack8(codes, p.bits, out);
  } else {
    codec::pack_tail(codes, count, p.bits, out);
  }
}

template <int Bits>
__device__ inline void general_octets(const QuantPiece& p, const std::uint8_t* input, const float* scales,
                                      const float* mins, std::uint8_t* codes_out, ThreadStats& stats,
                                      bool* finite) {
  const std::uint64_t n = p.elem_end - p.elem_begin;
  const float top = static_cast<float>(codec::max_code(Bits));
  for (unsigned r = 0; r < kOctetsPerThread; ++r) {
    const std::uint64_t octet = thread_octet(p.block_begin, r);
    if (8 * octet >= n) break;
    const int count = n - 8 * octet < 8 ? static_cast<int>(n - 8 * octet) : 8;
    float x[8];
    load_octet(p.type, input + p.src_offset, octet, count, x);
    const std::uint64_t first = p.elem_begin + 8 * octet;
    const std::uint64_t k0 = group_of(p.layout, first);
    std::uint8_t* out = codes_out + p.code_offset + octet * Bits;
    if (count == 8 && k0 == group_of(p.layout, first + 7)) {  // the common case: one group
      const std::uint64_t g = p.param_index + (k0 - p.first_group);
      const GroupCoder coder = group_coder({scales[g], mins[g]}, top);
      store_packed<Bits>(encode_octet<Bits>(x, coder, stats, finite), out);
    } else {
      encode_elements(p, x, count, first, scales, mins, top, stats, finite, out);
    }
  }
}

__global__ void __launch_bounds__(kBlockThreads)
quantize_pack_kernel(const QuantPiece* pieces, unsigned piece_count, const std::uint8_t* input,
                     const float* scales, const float* mins, std::uint8_t* codes_out,
                     std::uint32_t* status, BlockStats* block_stats) {
  const QuantPiece& p = block_piece(pieces, piece_count);
  ThreadStats stats;
  bool finite = true;
  with_bits(p.bits, [&]<int B>() { general_octets<B>(p, input, scales, mins, codes_out, stats, &finite); });
  if (!finite) atomicOr(&status[p.piece_index], kStatusNonFinite);
  write_block_stats(stats, block_stats);
}

// Where a single-pass kernel writes: the stored parameters and the codes of the slot.
struct SinglePassOutput {
  std::uint32_t* stored_scales;
  std::uint32_t* stored_mins;
  std::uint8_t* codes;
};

// Groups of W = G/8 octets (W a power of two <= 32) that start at octet multiples of W within
// the piece: a group's owners are W adjacent lanes of one warp (blocks start at multiples of
// 256 octets, which W divides).
template <int Bits>
__device__ inline void small_groups(const QuantPiece& p, const std::uint8_t* input, SinglePassOutput out,
                                    ThreadStats& stats, std::uint32_t* failure) {
  const std::uint64_t octets = (p.elem_end - p.elem_begin) / 8;
  const auto width = static_cast<unsigned>(p.layout.group_size / 8);
  const unsigned width_shift = __ffs(width) - 1;  // width is a power of two
  const float top = static_cast<float>(codec::max_code(Bits));
  bool finite = true;
  for (unsigned r = 0; r < kOctetsPerThread; ++r) {
    const std::uint64_t octet = thread_octet(p.block_begin, r);
    if ((octet & ~std::uint64_t{31}) >= octets) break;  // whole warps stop together
    const bool active = octet < octets;
    float x[8];
    float lo = __int_as_float(0x7f800000), hi = -lo;
    if (active) {
      load_octet(p.type, input + p.src_offset, octet, 8, x);
#pragma unroll
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
    std::uint8_t* codes = out.codes + p.code_offset + octet * Bits;
    if (range_failure == 0) {
      store_packed<Bits>(encode_octet<Bits>(x, group_coder(params, top), stats, &finite), codes);
    } else {
      *failure |= range_failure;
      store_failed_octet<Bits>(codes);
    }
    if ((octet & (width - 1)) == 0) {
      store_params(p, p.param_index + (octet >> width_shift), params, out.stored_scales, out.stored_mins);
    }
  }
  if (!finite) *failure |= kStatusNonFinite;
}

// The range of octets first, first + stride, ... of the piece's local group (NaN skipped).
__device__ inline void octet_range(const QuantPiece& p, const std::uint8_t* __restrict__ input,
                                   std::uint64_t local_group, unsigned first, unsigned stride, float* lo, float* hi) {
  const auto width = static_cast<unsigned>(p.layout.group_size / 8);
  const std::uint64_t group_octet = local_group * width;
#pragma unroll 4  // loads of four octets in flight
  for (unsigned o = first; o < width; o += stride) {
    float x[8];
    load_octet(p.type, input + p.src_offset, group_octet + o, 8, x);
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      *lo = fminf(*lo, x[k]);
      *hi = fmaxf(*hi, x[k]);
    }
  }
}

// A group's parameters from its range [lo, hi] (the owner of octet 0 stores them), then the
// codes of octets first, first + stride, ... below width, read again: the range pass has just
// brought them into the SM's L1 (or L2), so DRAM sees them once.
template <int Bits>
__device__ inline void code_group(const QuantPiece& p, const std::uint8_t* __restrict__ input, SinglePassOutput out,
                                  std::uint64_t local_group, float lo, float hi, unsigned first, unsigned stride,
                                  ThreadStats& stats, std::uint32_t* failure) {
  const auto width = static_cast<unsigned>(p.layout.group_size / 8);
  const std::uint64_t group_octet = local_group * width;
  codec::AffineParams params;
  const std::uint32_t range_failure = params_of_range(lo, hi, p, &params);
  *failure |= range_failure;
  if (first == 0) store_params(p, p.param_index + local_group, params, out.stored_scales, out.stored_mins);
  const GroupCoder coder = group_coder(params, static_cast<float>(codec::max_code(Bits)));
  bool finite = true;
  for (unsigned o = first; o < width; o += stride) {
    std::uint8_t* codes = out.codes + p.code_offset + (group_octet + o) * Bits;
    if (range_failure != 0) {
      store_failed_octet<Bits>(codes);
      continue;
    }
    float x[8];
    load_octet(p.type, input + p.src_offset, group_octet + o, 8, x);
    store_packed<Bits>(encode_octet<Bits>(x, coder, stats, &finite), codes);
  }
  if (!finite) *failure |= kStatusNonFinite;
}

// One warp per group of W <= 256 octets, lane l owning octets l, l + 32, ...: the range through
// shuffles, then the codes. The octets are read twice rather than held in registers: holding
// 8 per lane took ~110 registers and two blocks per SM, too few loads in flight.
template <int Bits>
__device__ inline void warp_groups(const QuantPiece& p, const std::uint8_t* __restrict__ input, SinglePassOutput out,
                                   ThreadStats& stats, std::uint32_t* failure) {
  const unsigned warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const std::uint64_t local_group = (blockIdx.x - p.block_begin) * (kBlockThreads / 32) + warp;
  if (local_group >= p.last_group - p.first_group) return;  // whole warps
  float lo = __int_as_float(0x7f800000), hi = -lo;
  octet_range(p, input, local_group, lane, 32, &lo, &hi);
  for (unsigned offset = 16; offset >= 1; offset /= 2) {
    lo = fminf(lo, __shfl_xor_sync(0xffffffffu, lo, offset));
    hi = fmaxf(hi, __shfl_xor_sync(0xffffffffu, hi, offset));
  }
  code_group<Bits>(p, input, out, local_group, lo, hi, lane, 32, stats, failure);
}

// One block per group of 256 < W <= kMaxBlockGroupOctets octets, thread t owning octets t,
// t + 256, ...: the range through a block reduction, then the codes (read twice, as above).
template <int Bits>
__device__ inline void block_group(const QuantPiece& p, const std::uint8_t* __restrict__ input, SinglePassOutput out,
                                   ThreadStats& stats, std::uint32_t* failure) {
  using Reduce = cub::BlockReduce<float2, kBlockThreads>;
  __shared__ typename Reduce::TempStorage storage;
  __shared__ float2 range;
  const std::uint64_t local_group = blockIdx.x - p.block_begin;
  float lo = __int_as_float(0x7f800000), hi = -lo;
  octet_range(p, input, local_group, threadIdx.x, kBlockThreads, &lo, &hi);
  const float2 total = Reduce(storage).Reduce(make_float2(lo, hi), [](float2 a, float2 b) {
    return make_float2(fminf(a.x, b.x), fmaxf(a.y, b.y));
  });
  if (threadIdx.x == 0) range = total;
  __syncthreads();
  code_group<Bits>(p, input, out, local_group, range.x, range.y, threadIdx.x, kBlockThreads, stats, failure);
}

// One kernel per single-pass schedule; Schedule picks the body.
template <QuantLaunch Schedule>
__global__ void __launch_bounds__(kBlockThreads)
single_pass_kernel(const QuantPiece* pieces, unsigned piece_count, const std::uint8_t* __restrict__ input,
                   SinglePassOutput out, std::uint32_t* status, BlockStats* block_stats) {
  const QuantPiece& p = block_piece(pieces, piece_count);
  ThreadStats stats;
  std::uint32_t failure = 0;
  with_bits(p.bits, [&]<int B>() {
    if constexpr (Schedule == QuantLaunch::kSmallGroups) {
      small_groups<B>(p, input, out, stats, &failure);
    } else if constexpr (Schedule == QuantLaunch::kWarpGroups) {
      warp_groups<B>(p, input, out, stats, &failure);
    } else {
      block_group<B>(p, input, out, stats, &failure);
    }
  });
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

void launch_quantize_single_pass(QuantLaunch schedule, const QuantPiece* pieces, unsigned piece_count,
                                 std::uint64_t blocks, const std::uint8_t* input, std::uint32_t* stored_scales,
                                 std::uint32_t* stored_mins, std::uint8_t* codes, std::uint32_t* status,
                                 BlockStats* stats, cudaStream_t stream) {
  if (blocks == 0 || piece_count == 0) return;
  const SinglePassOutput out{stored_scales, stored_mins, codes};
  const auto grid = static_cast<unsigned>(blocks);
  switch (schedule) {
    case QuantLaunch::kSmallGroups:
      single_pass_kernel<QuantLaunch::kSmallGroups><<<grid, kBlockThreads, 0, stream>>>(pieces, piece_count, input, out, status, stats);
      break;
    case QuantLaunch::kWarpGroups:
      single_pass_kernel<QuantLaunch::kWarpGroups><<<grid, kBlockThreads, 0, stream>>>(pieces, piece_count, input, out, status, stats);
      break;
    case QuantLaunch::kBlockGroups:
      single_pass_kernel<QuantLaunch::kBlockGroups><<<grid, kBlockThreads, 0, stream>>>(pieces, piece_count, input, out, status, stats);
      break;
    case QuantLaunch::kGeneral:
      throw Error(ErrorCode::kInternal, "launch_quantize_single_pass: the general schedule has two passes");
  }
  WQ_CUDA_CHECK(cudaGetLastError());
}

}  // namespace wq::cuda
