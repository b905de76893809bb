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
  ThreadStats stats;
  bool finite = true;
  std::uint8_t* dst = output + p.dst_offset;
  for (unsigned r = 0; r < kOctetsPerThread; ++r) {
    const std::uint64_t octet = thread_octet(p.block_begin, r);
    if (8 * octet >= p.count) break;
    const int count = p.count - 8 * octet < 8 ? static_cast<int>(p.count - 8 * octet) : 8;
    float x[8], y[8];
    load_octet(p.from, input + p.src_offset, octet, count, x);
    for (int k = 0; k < 8; ++k) {
      y[k] = 0.0f;
      if (k >= count) continue;
      store_element(p.to, dst, 8 * octet + k, x[k]);
      y[k] = stored_value(p.to, x[k]);
      finite &= codec::is_finite(y[k]);
    }
    stats.add_octet(x, y, count);
  }
  if (!finite) atomicOr(&status[p.piece_index], kStatusCastOverflow);
  write_block_stats(stats, block_stats);
}

}  // namespace

void launch_cast(const CastPiece* pieces, unsigned piece_count, std::uint64_t blocks,
                 const std::uint8_t* input, std::uint8_t* output, std::uint32_t* status,
                 BlockStats* stats, cudaStream_t stream) {
  if (blocks == 0 || piece_count == 0) return;
  cast_kernel<<<static_cast<unsigned>(blocks), kBlockThreads, 0, stream>>>(pieces, piece_count, input,
                                                                          output, status, stats);
  WQ_CUDA_CHECK(cudaGetLastError());
}

}  // namespace wq::cuda
