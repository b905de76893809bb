// Every CUDA runtime call is checked; a failure becomes a wq::Error naming the call.
#pragma once

#include <cuda_runtime_api.h>

#include <string>

#include "wq/error.h"

namespace wq::cuda {

[[noreturn]] inline void throw_cuda_error(cudaError_t status, const char* call) {
  cudaGetLastError();  // clear a non-sticky error so the next call starts clean
  if (status == cudaErrorMemoryAllocation) {  // the user's to fix, not a bug: say how
    throw Error(ErrorCode::kUnsupported,
                std::string("CUDA: ") + call + " failed: out of device or pinned host memory",
                {{"gpu_memory", ""}, {"backend_cpu", ""}});
  }
  throw Error(ErrorCode::kInternal,
              std::string("CUDA: ") + call + " failed: " + cudaGetErrorString(status));
}

}  // namespace wq::cuda

#define WQ_CUDA_CHECK(call)                                                  \
  do {                                                                       \
    const cudaError_t wq_cuda_status_ = (call);                              \
    if (wq_cuda_status_ != cudaSuccess) ::wq::cuda::throw_cuda_error(wq_cuda_status_, #call); \
  } while (0)
