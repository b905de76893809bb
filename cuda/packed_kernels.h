// Launchers of the compressed-tensors (pack-quantized) kernels (packed_kernels.cu): the shared
// arithmetic of include/wq/codec/pack_quantized.h in three launches (group parameters, packed
// codes, packed zero points), so that the device writes the CPU's bytes by construction.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

#include "work_items.h"

namespace wq::cuda {

/// The shape of one launch: a [rows, cols] weight in groups of `group_size` along the rows.
struct PackedLaunch {
  ElementType element = ElementType::kF32;
  int bits = 4;
  bool symmetric = true;
  bool search = false;  ///< codec::ct::search_params instead of group_params
  std::uint64_t rows = 0;
  std::uint64_t cols = 0;
  std::uint64_t group_size = 0;  ///< cols for one group per row
  std::uint64_t groups_per_row = 0;
  std::uint64_t words_per_row = 0;
  std::uint64_t zero_point_rows = 0;
};

/// CUDA blocks of the codes launch: the number of partial sums (three doubles each) it writes.
unsigned packed_codes_grid(const PackedLaunch& launch);

/// Quantizes `input` into `packed`, `scales` (elements of the input's type) and, asymmetric,
/// `zero_points`. `scratch_scale`/`scratch_zero` hold rows * groups_per_row values. Writes the
/// smallest index of a non-finite element, or of one that decodes beyond its dtype, to
/// `*bad_index` and the smallest group whose range
/// overflows to `*bad_group` (each left untouched when there is none; the caller sets them to
/// UINT64_MAX and then discards the outputs), and per CUDA block of the codes launch the sums of
/// x^2, of (x - decoded)^2 and the largest |x - decoded| to `partials`.
void launch_packed_quantize(const PackedLaunch& launch, const std::uint8_t* input, std::uint8_t* packed,
                            std::uint8_t* scales, std::uint8_t* zero_points, float* scratch_scale,
                            int* scratch_zero, unsigned long long* bad_index, unsigned long long* bad_group,
                            double* partials, cudaStream_t stream);

}  // namespace wq::cuda
