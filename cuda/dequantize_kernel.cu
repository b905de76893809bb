// Unpack + dequantize: one thread reads the `bits` bytes of 8 codes and writes 8 values.
#include <cuda_runtime.h>

#include "cuda_check.h"
#include "device_elements.cuh"
#include "kernels.h"
#include "wq/codec/affine.h"
#include "wq/codec/pack.h"

namespace wq::cuda {
namespace {

__device__ inline codec::AffineParams stored_params(const DequantPiece& p, const std::uint8_t* input,
                                                    std::uint64_t group) {
  const std::uint64_t local = group - p.first_group;
  if (p.f16_params) {
    const auto* s = reinterpret_cast<const std::uint16_t*>(input + p.scale_offset);
    const auto* m = reinterpret_cast<const std::uint16_t*>(input + p.min_offset);
    const float scale = codec::f16_bits_to_f32(s[local]);
    return {scale, p.symmetric ? codec::symmetric_min(scale, p.bits) : codec::f16_bits_to_f32(m[local])};
  }
  const auto* s = reinterpret_cast<const float*>(input + p.scale_offset);
  const auto* m = reinterpret_cast<const float*>(input + p.min_offset);
  return {s[local], p.symmetric ? codec::symmetric_min(s[local], p.bits) : m[local]};
}

__global__ void __launch_bounds__(kBlockThreads)
dequantize_kernel(const DequantPiece* pieces, unsigned piece_count, const std::uint8_t* input,
                  std::uint8_t* output) {
  const DequantPiece& p = block_piece(pieces, piece_count);
  const std::uint64_t n = p.elem_end - p.elem_begin;
  std::uint8_t* dst = output + p.dst_offset;
  for (unsigned r = 0; r < kOctetsPerThread; ++r) {
    const std::uint64_t octet = thread_octet(p.block_begin, r);
    if (8 * octet >= n) return;
    const int count = n - 8 * octet < 8 ? static_cast<int>(n - 8 * octet) : 8;
    const std::uint8_t* packed = input + p.code_offset + octet * p.bits;
    std::uint8_t codes[8];
    if (count == 8) {
      codec::unpack8(packed, p.bits, codes);
    } else {
      codec::unpack_tail(packed, count, p.bits, codes);
    }
    const std::uint64_t first = p.elem_begin + 8 * octet;
    const std::uint64_t k0 = group_of(p.layout, first);
    const bool one_group = k0 == group_of(p.layout, first + count - 1);
    const codec::AffineParams shared = stored_params(p, input, k0);
    for (int k = 0; k < count; ++k) {
      const codec::AffineParams params =
          one_group ? shared : stored_params(p, input, group_of(p.layout, first + k));
      store_element(p.type, dst, 8 * octet + k, codec::affine_value(codes[k], params));
    }
  }
}

}  // namespace

void launch_dequantize(const DequantPiece* pieces, unsigned piece_count, std::uint64_t blocks,
                       const std::uint8_t* input, std::uint8_t* output, cudaStream_t stream) {
  if (blocks == 0 || piece_count == 0) return;
  dequantize_kernel<<<static_cast<unsigned>(blocks), kBlockThreads, 0, stream>>>(pieces, piece_count,
                                                                                input, output);
  WQ_CUDA_CHECK(cudaGetLastError());
}

}  // namespace wq::cuda
