// Timing of the CUDA backend's kernels on device-resident data, next to the device's own copy
// bandwidths, for bench/bench_cuda. Inside libwqcuda so every CUDA call goes through the same
// runtime as the backend.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "wq/quant_spec.h"

namespace wq::cuda {

/// Bandwidths in GB/s (1e9 bytes) of bytes moved once: a copy of N bytes counts N.
struct DeviceLimits {
  std::string device;
  double device_copy = 0;   ///< cudaMemcpy device to device
  double host_to_device = 0;  ///< from pinned memory
  double device_to_host = 0;  ///< into pinned memory
};
DeviceLimits measure_device_limits(int device, std::uint64_t bytes);

struct KernelTiming {
  double seconds = 0;        ///< median of the repeats
  double input_gbps = 0;     ///< float32 input bytes per second
  double traffic_gbps = 0;   ///< input + codes + parameters per second
};

/// Quantizes a [rows, cols] float32 tensor already on the device with `spec`, through the
/// same pieces and kernels as the backend (one slot holding the whole tensor).
KernelTiming time_quantize_kernels(int device, std::uint64_t rows, std::uint64_t cols,
                                   const QuantSpec& spec, int repeats);

}  // namespace wq::cuda
