// Launchers of the ggml block kernels (ggml_kernels.cu): the shared per-block arithmetic of
// include/wq/codec/ggml_legacy.h and ggml_kquants.h, one device thread per block.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

#include "work_items.h"
#include "wq/codec/ggml_blocks.h"

namespace wq::cuda {

/// Threads per CUDA block of the ggml kernels.
inline constexpr unsigned kGgmlThreads = 128;

/// CUDA blocks a quantize launch over `blocks` ggml blocks uses: the number of partial sums
/// (three doubles each) that it writes.
unsigned ggml_quantize_grid(std::uint64_t blocks);

/// Quantizes `blocks` ggml blocks of `type` from `input` (elements of `element`) with ggml's
/// reference quantizer, or with wq's search where `search` (a type with one: the caller
/// checks, codec::ggml::has_mse_search()), writing
/// the blocks to `out`, the smallest index of a non-finite element to `*bad_index` (left
/// untouched when there is none; the caller sets it to UINT64_MAX), and per CUDA block the
/// sums of x^2, of (x - decoded)^2 and the largest |x - decoded| to `partials`.
void launch_ggml_quantize(codec::ggml::Type type, bool search, ElementType element, const std::uint8_t* input,
                          std::uint64_t blocks, std::uint8_t* out, unsigned long long* bad_index,
                          double* partials, cudaStream_t stream);

/// Decodes `blocks` ggml blocks of `type` into elements of `element`.
void launch_ggml_decode(codec::ggml::Type type, ElementType element, const std::uint8_t* in, std::uint64_t blocks,
                        std::uint8_t* out, cudaStream_t stream);

}  // namespace wq::cuda
