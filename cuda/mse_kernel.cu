// The range stage of the mse method on the device: one thread per group runs the codec's
// search (wq/codec/mse.h) over the group's elements in the slot's input buffer.
//
// A thread per group keeps the codec's order of operations as written (8 lanes, each in index
// order), so the parameters equal the CPU's bit for bit without a second spelling of the
// search. Unverified on a GPU so far (no device in the sessions that wrote it): see
// docs/cuda-backend.md.
#include <cuda_runtime.h>

#include "cuda_check.h"
#include "device_elements.cuh"
#include "kernels.h"
#include "wq/codec/mse.h"

namespace wq::cuda {
namespace {

struct PieceLoad {
  ElementType type;
  const std::uint8_t* base;  // element 0 of the group
  __device__ float operator()(std::uint64_t i) const { return load_element(type, base, i); }
};

__global__ void mse_params_kernel(const QuantPiece* pieces, unsigned piece_count, std::uint64_t groups,
                                  const std::uint8_t* input, float* scales, float* mins,
                                  std::uint32_t* stored_scales, std::uint32_t* stored_mins,
                                  const std::uint32_t* status) {
  const std::uint64_t index = static_cast<std::uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (index >= groups) return;
  const QuantPiece& p = pieces[find_piece(pieces, piece_count, index,
                                          [](const QuantPiece& q) { return q.param_index; })];
  if (index < p.param_index || index - p.param_index >= p.last_group - p.first_group) return;
  if (p.rule != static_cast<std::int32_t>(codec::RangeRule::kMse) || status[p.piece_index] != 0) return;
  std::uint64_t begin = 0, n = 0;
  group_extent(p.layout, p.first_group + (index - p.param_index), &begin, &n);
  const PieceLoad load{p.type, input + p.src_offset + (begin - p.elem_begin) * element_size(p.type)};
  float lo = __int_as_float(0x7f800000), hi = -lo;
  for (std::uint64_t i = 0; i < n; ++i) {  // NaN is skipped, as in the range kernels
    const float x = load(i);
    lo = fminf(lo, x);
    hi = fmaxf(hi, x);
  }
  codec::AffineParams params{scales[index], mins[index]};  // min-max's, from launch_group_params
  if (codec::mse_params(load, n, lo, hi, p.bits, p.f16_params != 0, &params) != codec::ParamsStatus::kOk) return;
  scales[index] = params.scale;
  mins[index] = params.min;
  stored_scales[index] = p.f16_params ? codec::f32_to_f16_bits(params.scale) : codec::float_bits(params.scale);
  stored_mins[index] = p.f16_params ? codec::f32_to_f16_bits(params.min) : codec::float_bits(params.min);
}

}  // namespace

void launch_mse_params(const QuantPiece* pieces, unsigned piece_count, std::uint64_t groups,
                       const std::uint8_t* input, float* scales, float* mins, std::uint32_t* stored_scales,
                       std::uint32_t* stored_mins, const std::uint32_t* status, cudaStream_t stream) {
  if (groups == 0 || piece_count == 0) return;
  constexpr unsigned kThreads = 128;
  mse_params_kernel<<<static_cast<unsigned>((groups + kThreads - 1) / kThreads), kThreads, 0, stream>>>(
      pieces, piece_count, groups, input, scales, mins, stored_scales, stored_mins, status);
  WQ_CUDA_CHECK(cudaGetLastError());
}

}  // namespace wq::cuda
