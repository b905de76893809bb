// The ggml block kernels. Each thread quantizes (or decodes) whole blocks with the codec's
// per-block functions, so the device writes the CPU's bytes by construction; the only work
// here is scheduling. A k-quant block's search is serial and branchy, so one thread per block
// (not a warp) keeps the arithmetic identical and the code shared; the parallelism is across
// the millions of blocks of a tensor.
#include "ggml_kernels.h"

#include "block_stats.cuh"
#include "cuda_check.h"
#include "device_elements.cuh"
#include "wq/codec/ggml_kquants.h"
#include "wq/codec/ggml_legacy.h"
#include "wq/codec/ggml_legacy_search.h"

namespace wq::cuda {
namespace {

namespace ggml = codec::ggml;

constexpr unsigned kMaxGrid = 65535u * 8u;

unsigned grid_for(std::uint64_t blocks) {
  const std::uint64_t grid = (blocks + kGgmlThreads - 1) / kGgmlThreads;
  return static_cast<unsigned>(grid < kMaxGrid ? (grid == 0 ? 1 : grid) : kMaxGrid);
}

// Search: wq's search in the type's layout (codec/ggml_legacy_search.h) instead of the
// reference quantizer; the same per-block functions as the CPU's, one thread per block.
template <typename Block, bool Search>
__global__ void __launch_bounds__(kGgmlThreads)
ggml_quantize_kernel(ElementType element, const std::uint8_t* input, std::uint64_t blocks, std::uint8_t* out,
                     unsigned long long* bad_index, double* partials) {
  double signal = 0.0, error = 0.0, max_error = 0.0;
  for (std::uint64_t b = blockIdx.x * static_cast<std::uint64_t>(kGgmlThreads) + threadIdx.x; b < blocks;
       b += static_cast<std::uint64_t>(gridDim.x) * kGgmlThreads) {
    const std::uint64_t base = b * Block::kElements;
    float x[Block::kElements];
    bool finite = true;
    for (int i = 0; i < Block::kElements; ++i) {
      x[i] = load_element(element, input, base + i);
      if (!codec::is_finite(x[i])) {
        atomicMin(bad_index, static_cast<unsigned long long>(base + i));
        finite = false;
      }
    }
    if (!finite) continue;  // the host reports the element and discards the output
    Block block;
    if constexpr (Search) {
      ggml::search_block(x, &block);
    } else {
      ggml::quantize_block(x, &block);
    }
    reinterpret_cast<Block*>(out)[b] = block;  // cudaMalloc'd, and every block size is even
    float decoded[Block::kElements];
    ggml::decode_block(block, decoded);
    for (int i = 0; i < Block::kElements; ++i) {
      const double v = x[i];
      const double e = __dsub_rn(v, static_cast<double>(decoded[i]));
      signal = __dadd_rn(signal, __dmul_rn(v, v));
      error = __dadd_rn(error, __dmul_rn(e, e));
      max_error = fmax(max_error, fabs(e));
    }
  }
  store_block_stats<kGgmlThreads>(signal, error, max_error, partials);
}

template <typename Block>
__global__ void __launch_bounds__(kGgmlThreads)
ggml_decode_kernel(ElementType element, const std::uint8_t* in, std::uint64_t blocks, std::uint8_t* out) {
  for (std::uint64_t b = blockIdx.x * static_cast<std::uint64_t>(kGgmlThreads) + threadIdx.x; b < blocks;
       b += static_cast<std::uint64_t>(gridDim.x) * kGgmlThreads) {
    float decoded[Block::kElements];
    ggml::decode_block(reinterpret_cast<const Block*>(in)[b], decoded);
    for (int i = 0; i < Block::kElements; ++i) store_element(element, out, b * Block::kElements + i, decoded[i]);
  }
}

}  // namespace

unsigned ggml_quantize_grid(std::uint64_t blocks) { return grid_for(blocks); }

void launch_ggml_quantize(ggml::Type type, bool search, ElementType element, const std::uint8_t* input,
                          std::uint64_t blocks, std::uint8_t* out, unsigned long long* bad_index, double* partials,
                          cudaStream_t stream) {
  ggml::visit_block_type(type, [&](auto tag) {
    using Block = decltype(tag);
    if constexpr (ggml::kHasSearch<Block>) {
      if (search) {
        ggml_quantize_kernel<Block, true><<<grid_for(blocks), kGgmlThreads, 0, stream>>>(element, input, blocks, out,
                                                                                        bad_index, partials);
        return;
      }
    }
    ggml_quantize_kernel<Block, false><<<grid_for(blocks), kGgmlThreads, 0, stream>>>(element, input, blocks, out,
                                                                                     bad_index, partials);
  });
  WQ_CUDA_CHECK(cudaGetLastError());
}

void launch_ggml_decode(ggml::Type type, ElementType element, const std::uint8_t* in, std::uint64_t blocks,
                        std::uint8_t* out, cudaStream_t stream) {
  ggml::visit_block_type(type, [&](auto tag) {
    ggml_decode_kernel<decltype(tag)><<<grid_for(blocks), kGgmlThreads, 0, stream>>>(element, in, blocks, out);
  });
  WQ_CUDA_CHECK(cudaGetLastError());
}

}  // namespace wq::cuda
