// Quantize + pack: one thread owns 8 consecutive elements and writes exactly `bits` bytes, so
// no two threads touch the same byte (no atomics). The code of each element is the codec's
// (wq/codec/affine.h), compiled with --fmad=false: the CPU's bytes, bit for bit.
#include <cuda_runtime.h>

#include "cuda_check.h"
#include "device_elements.cuh"
#include "kernels.h"
#include "wq/codec/affine.h"
#include "wq/codec/pack.h"

namespace wq::cuda {
namespace {

// Codes of x[0..count) under params; adds the decoded error to stats and returns whether
// every element was finite.
__device__ inline bool encode_octet(const float (&x)[8], int count, codec::AffineParams p,
                                    float top, std::uint8_t (&codes)[8], ThreadStats& stats) {
  bool finite = true;
  for (int k = 0; k < 8; ++k) {
    if (k >= count) {
      codes[k] = 0;
      continue;
    }
    finite &= codec::is_finite(x[k]);
    const std::uint32_t q = codec::affine_code(x[k], p, top);
    codes[k] = static_cast<std::uint8_t>(q);
    stats.add(x[k], codec::affine_value(q, p));
  }
  return finite;
}

__device__ inline void store_codes(const std::uint8_t (&codes)[8], int count, int bits,
                                   std::uint8_t* out) {
  if (count == 8) {
    codec::pack8(codes, bits, out);
  } else {
    codec::pack_tail(codes, count, bits, out);
  }
}

__global__ void __launch_bounds__(kBlockThreads)
quantize_pack_kernel(const QuantPiece* pieces, unsigned piece_count, const std::uint8_t* input,
                     const float* scales, const float* mins, std::uint8_t* codes_out,
                     std::uint32_t* status, BlockStats* block_stats) {
  const QuantPiece& p = block_piece(pieces, piece_count);
  const std::uint64_t octet = (blockIdx.x - p.block_begin) * kBlockThreads + threadIdx.x;
  const std::uint64_t n = p.elem_end - p.elem_begin;
  ThreadStats stats;
  if (8 * octet < n) {
    const int count = n - 8 * octet < 8 ? static_cast<int>(n - 8 * octet) : 8;
    float x[8];
    load_octet(p.type, input + p.src_offset, octet, count, x);
    const std::uint64_t first = p.elem_begin + 8 * octet;
    const std::uint64_t k0 = group_of(p.layout, first);
    const std::uint64_t k1 = group_of(p.layout, first + count - 1);
    const float top = static_cast<float>(codec::max_code(p.bits));
    std::uint8_t codes[8];
    bool finite;
    if (k0 == k1) {  // the common case: all 8 in one group
      const std::uint64_t g = p.param_index + (k0 - p.first_group);
      finite = encode_octet(x, count, {scales[g], mins[g]}, top, codes, stats);
    } else {
      finite = true;
      for (int k = 0; k < count; ++k) {
        const std::uint64_t g = p.param_index + (group_of(p.layout, first + k) - p.first_group);
        const codec::AffineParams params{scales[g], mins[g]};
        finite &= codec::is_finite(x[k]);
        const std::uint32_t q = codec::affine_code(x[k], params, top);
        codes[k] = static_cast<std::uint8_t>(q);
        stats.add(x[k], codec::affine_value(q, params));
      }
      for (int k = count; k < 8; ++k) codes[k] = 0;
    }
    if (!finite) atomicOr(&status[p.piece_index], kStatusNonFinite);
    store_codes(codes, count, p.bits, codes_out + p.code_offset + octet * p.bits);
  }
  write_block_stats(stats, block_stats);
}

// Groups of W = G/8 octets (W a power of two <= 32) that start at octet multiples of W within
// the piece: a group's owners are W adjacent lanes of one warp.
__global__ void __launch_bounds__(kBlockThreads)
quantize_small_groups_kernel(const QuantPiece* pieces, unsigned piece_count,
                             const std::uint8_t* input, std::uint32_t* stored_scales,
                             std::uint32_t* stored_mins, std::uint8_t* codes_out,
                             std::uint32_t* status, BlockStats* block_stats) {
  const QuantPiece& p = block_piece(pieces, piece_count);
  const std::uint64_t octet = (blockIdx.x - p.block_begin) * kBlockThreads + threadIdx.x;
  const std::uint64_t octets = (p.elem_end - p.elem_begin) / 8;
  const bool active = octet < octets;
  const unsigned width = static_cast<unsigned>(p.layout.group_size / 8);
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
  ThreadStats stats;
  if (active) {
    const std::uint64_t g = p.param_index + octet / width;
    codec::AffineParams params{0.0f, 0.0f};
    std::uint32_t failure = 0;
    if (!codec::is_finite(lo) || !codec::is_finite(hi)) {
      failure = kStatusNonFinite;
    } else {
      switch (codec::affine_params(lo, hi, p.bits, p.f16_params != 0, &params)) {
        case codec::ParamsStatus::kOk: break;
        case codec::ParamsStatus::kRangeOverflow: failure = kStatusRangeOverflow; break;
        case codec::ParamsStatus::kF16Overflow: failure = kStatusF16Overflow; break;
      }
    }
    std::uint8_t codes[8];
    if (failure == 0) {
      if (!encode_octet(x, 8, params, static_cast<float>(codec::max_code(p.bits)), codes, stats)) {
        failure = kStatusNonFinite;
      }
    } else {
      params = {0.0f, 0.0f};
      for (int k = 0; k < 8; ++k) codes[k] = 0;
    }
    if (failure != 0) atomicOr(&status[p.piece_index], failure);
    if (octet % width == 0) {
      stored_scales[g] = p.f16_params ? codec::f32_to_f16_bits(params.scale) : codec::float_bits(params.scale);
      stored_mins[g] = p.f16_params ? codec::f32_to_f16_bits(params.min) : codec::float_bits(params.min);
    }
    codec::pack8(codes, p.bits, codes_out + p.code_offset + octet * p.bits);
  }
  write_block_stats(stats, block_stats);
}

unsigned grid_of(std::uint64_t blocks) { return static_cast<unsigned>(blocks); }

}  // namespace

void launch_quantize_pack(const QuantPiece* pieces, unsigned piece_count, std::uint64_t blocks,
                          const std::uint8_t* input, const float* scales, const float* mins,
                          std::uint8_t* codes, std::uint32_t* status, BlockStats* stats,
                          cudaStream_t stream) {
  if (blocks == 0) return;
  quantize_pack_kernel<<<grid_of(blocks), kBlockThreads, 0, stream>>>(
      pieces, piece_count, input, scales, mins, codes, status, stats);
  WQ_CUDA_CHECK(cudaGetLastError());
}

void launch_quantize_small_groups(const QuantPiece* pieces, unsigned piece_count,
                                  std::uint64_t blocks, const std::uint8_t* input,
                                  std::uint32_t* stored_scales, std::uint32_t* stored_mins,
                                  std::uint8_t* codes, std::uint32_t* status, BlockStats* stats,
                                  cudaStream_t stream) {
  if (blocks == 0) return;
  quantize_small_groups_kernel<<<grid_of(blocks), kBlockThreads, 0, stream>>>(
      pieces, piece_count, input, stored_scales, stored_mins, codes, status, stats);
  WQ_CUDA_CHECK(cudaGetLastError());
}

}  // namespace wq::cuda
