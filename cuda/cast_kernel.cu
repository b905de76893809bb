// Floating-point casts: one thread converts 8 elements with the codec's conversions and
// flags any result that is not finite (NaN/Inf inputs, F16 overflow).
#include <cuda_runtime.h>

#include "cuda_check.h"
#include "device_elements.cuh"
#include "kernels.h"

namespace wq::cuda {
namespace {

__global__ void __launch_bounds__(kBlockThreads)
cast_kernel(const CastPiece* pieces, unsigned piece_count, const std::uint8_t* input,
            std::uint8_t* output, std::uint32_t* status, BlockStats* block_stats) {
  const CastPiece& p = block_piece(pieces, piece_count);
  const std::uint64_t octet = (blockIdx.x - p.block_begin) * kBlockThreads + threadIdx.x;
  ThreadStats stats;
  if (8 * octet < p.count) {
    const int count = p.count - 8 * octet < 8 ? static_cast<int>(p.count - 8 * octet) : 8;
    float x[8];
    load_octet(p.from, input + p.src_offset, octet, count, x);
    std::uint8_t* dst = output + p.dst_offset;
    bool finite = true;
    for (int k = 0; k < count; ++k) {
      store_element(p.to, dst, 8 * octet + k, x[k]);
      const float y = load_element(p.to, dst, 8 * octet + k);
      finite &= codec::is_finite(y);
      stats.add(x[k], y);
    }
    if (!finite) atomicOr(&status[p.piece_index], kStatusCastOverflow);
  }
  write_block_stats(stats, block_stats);
}

}  // namespace

void launch_cast(const CastPiece* pieces, unsigned piece_count, std::uint64_t blocks,
                 const std::uint8_t* input, std::uint8_t* output, std::uint32_t* status,
                 BlockStats* stats, cudaStream_t stream) {
  if (blocks == 0) return;
  cast_kernel<<<static_cast<unsigned>(blocks), kBlockThreads, 0, stream>>>(pieces, piece_count, input,
                                                                          output, status, stats);
  WQ_CUDA_CHECK(cudaGetLastError());
}

}  // namespace wq::cuda
