// The error statistics of a kernel that runs one item per thread: each CUDA block reduces its
// threads' sums of x^2, of (x - decoded)^2 and their largest |x - decoded| into three partials,
// which the host adds in block order (reproducible sums). Shared by the ggml and
// compressed-tensors kernels.
#pragma once

#include <cub/block/block_reduce.cuh>

namespace wq::cuda {

struct MaxOfDoubles {
  __device__ double operator()(double a, double b) const { return fmax(a, b); }
};

/// Writes this CUDA block's three partials to partials[3 * blockIdx.x ...]; every thread of
/// the block calls it.
template <unsigned kThreads>
__device__ void store_block_stats(double signal, double error, double max_error, double* partials) {
  using Reduce = cub::BlockReduce<double, kThreads>;
  __shared__ typename Reduce::TempStorage storage;
  const double total_signal = Reduce(storage).Sum(signal);
  __syncthreads();
  const double total_error = Reduce(storage).Sum(error);
  __syncthreads();
  const double total_max = Reduce(storage).Reduce(max_error, MaxOfDoubles{});
  if (threadIdx.x == 0) {
    partials[3 * blockIdx.x] = total_signal;
    partials[3 * blockIdx.x + 1] = total_error;
    partials[3 * blockIdx.x + 2] = total_max;
  }
}

}  // namespace wq::cuda
