// The CUDA backend: the codec's arithmetic in CUDA kernels, streamed through a slot ring.
#pragma once

#include <cstdint>
#include <memory>

#include "wq/backend.h"

namespace wq::cuda {

/// Creates the backend on device `ordinal`. `memory_budget` bounds the device memory (and the
/// pinned host memory) it allocates; 0 = a quarter of the device's free memory, at most
/// 1.5 GiB. `host_threads` copy data into and out of pinned memory (0 = up to 8 cores).
/// Throws Error(kUnsupported) when the device cannot be used.
std::unique_ptr<Backend> make_cuda_backend(int ordinal, std::uint64_t memory_budget,
                                           unsigned host_threads);

}  // namespace wq::cuda
