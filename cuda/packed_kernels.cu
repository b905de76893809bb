// The compressed-tensors kernels: one thread per group for the parameters, one per 32 elements
// of a row for the codes (32 codes fill `bits` whole words), one per 32 rows of a column for the
// zero points (packed down the rows). Each thread runs the codec's functions; scheduling is all
// that is here. Not yet run on a GPU.
#include "packed_kernels.h"

#include "block_stats.cuh"
#include "cuda_check.h"
#include "device_elements.cuh"
#include "wq/codec/pack_quantized.h"

namespace wq::cuda {
namespace {

namespace ct = codec::ct;

constexpr unsigned kThreads = 128;
constexpr unsigned kMaxGrid = 65535u * 8u;

unsigned grid_for(std::uint64_t items) {
  const std::uint64_t grid = (items + kThreads - 1) / kThreads;
  return static_cast<unsigned>(grid < kMaxGrid ? (grid == 0 ? 1 : grid) : kMaxGrid);
}

__device__ ct::Scalar scalar_of(ElementType e) {
  return e == ElementType::kF16 ? ct::Scalar::kF16 : e == ElementType::kBF16 ? ct::Scalar::kBF16 : ct::Scalar::kF32;
}

__global__ void __launch_bounds__(kThreads)
params_kernel(PackedLaunch l, const std::uint8_t* input, std::uint8_t* scales, float* scratch_scale, int* scratch_zero,
              unsigned long long* bad_index, unsigned long long* bad_group) {
  const std::uint64_t groups = l.rows * l.groups_per_row;
  for (std::uint64_t g = blockIdx.x * static_cast<std::uint64_t>(kThreads) + threadIdx.x; g < groups;
       g += static_cast<std::uint64_t>(gridDim.x) * kThreads) {
    const std::uint64_t begin = (g / l.groups_per_row) * l.cols + (g % l.groups_per_row) * l.group_size;
    float lo = load_element(l.element, input, begin), hi = lo;
    bool finite = true;
    for (std::uint64_t i = begin; i < begin + l.group_size; ++i) {
      const float x = load_element(l.element, input, i);
      if (!codec::is_finite(x)) {
        atomicMin(bad_index, static_cast<unsigned long long>(i));
        finite = false;
        break;
      }
      lo = fminf(lo, x);
      hi = fmaxf(hi, x);
    }
    ct::Params p;
    const ct::Scalar scalar = scalar_of(l.element);
    const auto load = [&](unsigned long long i) { return load_element(l.element, input, begin + i); };
    const auto error = [&](ct::Params c) { return ct::search_error(load, l.group_size, c, l.bits, scalar); };
    const ct::ParamsStatus status = !finite ? ct::ParamsStatus::kOk
                                    : l.search ? ct::search_params(error, lo, hi, l.bits, l.symmetric, scalar, &p)
                                               : ct::group_params(lo, hi, l.bits, l.symmetric, scalar, &p);
    if (finite && status != ct::ParamsStatus::kOk) {
      atomicMin(bad_group, static_cast<unsigned long long>(g));
      finite = false;
    }
    if (!finite) p = ct::Params{1.0f, 0};  // the host discards the outputs
    scratch_scale[g] = p.scale;
    scratch_zero[g] = p.zero;
    store_element(l.element, scales, g, p.scale);  // a value of the element type: exact
  }
}

__global__ void __launch_bounds__(kThreads)
codes_kernel(PackedLaunch l, const std::uint8_t* input, const float* scratch_scale, const int* scratch_zero,
             std::uint32_t* packed, unsigned long long* bad_index, double* partials) {
  const std::uint64_t chunks_per_row = (l.cols + 31) / 32;
  const std::uint64_t chunks = l.rows * chunks_per_row;
  const ct::Scalar scalar = scalar_of(l.element);
  double signal = 0.0, error = 0.0, max_error = 0.0;
  for (std::uint64_t c = blockIdx.x * static_cast<std::uint64_t>(kThreads) + threadIdx.x; c < chunks;
       c += static_cast<std::uint64_t>(gridDim.x) * kThreads) {
    const std::uint64_t r = c / chunks_per_row, e0 = (c % chunks_per_row) * 32;
    const int count = static_cast<int>(min(static_cast<std::uint64_t>(32), l.cols - e0));
    std::uint32_t u[32], words[8];
    for (int e = 0; e < count; ++e) {
      const std::uint64_t col = e0 + static_cast<std::uint64_t>(e);
      const std::uint64_t g = r * l.groups_per_row + col / l.group_size;
      const ct::Params p{scratch_scale[g], scratch_zero[g]};
      const float x = load_element(l.element, input, r * l.cols + col);
      u[e] = ct::code(x, p, l.bits, scalar);
      const float decoded = ct::decode(u[e], p, l.bits, scalar);
      if (!codec::is_finite(decoded)) atomicMin(bad_index, static_cast<unsigned long long>(r * l.cols + col));
      const double v = x;
      const double err = __dsub_rn(v, static_cast<double>(decoded));
      signal = __dadd_rn(signal, __dmul_rn(v, v));
      error = __dadd_rn(error, __dmul_rn(err, err));
      max_error = fmax(max_error, fabs(err));
    }
    ct::pack_32(u, count, l.bits, words);
    const std::uint64_t word = (c % chunks_per_row) * static_cast<std::uint64_t>(l.bits);
    const std::uint64_t n = min(static_cast<std::uint64_t>(l.bits), l.words_per_row - word);
    for (std::uint64_t w = 0; w < n; ++w) packed[r * l.words_per_row + word + w] = words[w];
  }
  store_block_stats<kThreads>(signal, error, max_error, partials);
}

__global__ void __launch_bounds__(kThreads)
zero_points_kernel(PackedLaunch l, const int* scratch_zero, std::uint32_t* zero_points) {
  const std::uint64_t runs = (l.rows + 31) / 32;
  const std::uint64_t items = runs * l.groups_per_row;
  for (std::uint64_t t = blockIdx.x * static_cast<std::uint64_t>(kThreads) + threadIdx.x; t < items;
       t += static_cast<std::uint64_t>(gridDim.x) * kThreads) {
    const std::uint64_t run = t / l.groups_per_row, k = t % l.groups_per_row;
    const int count = static_cast<int>(min(static_cast<std::uint64_t>(32), l.rows - run * 32));
    std::uint32_t z[32], words[8];
    for (int r = 0; r < count; ++r) {
      z[r] = ct::stored_zero(ct::Params{1.0f, scratch_zero[(run * 32 + r) * l.groups_per_row + k]}, l.bits);
    }
    ct::pack_32(z, count, l.bits, words);
    const std::uint64_t word = run * static_cast<std::uint64_t>(l.bits);
    const std::uint64_t n = min(static_cast<std::uint64_t>(l.bits), l.zero_point_rows - word);
    for (std::uint64_t w = 0; w < n; ++w) zero_points[(word + w) * l.groups_per_row + k] = words[w];
  }
}

}  // namespace

unsigned packed_codes_grid(const PackedLaunch& l) { return grid_for(l.rows * ((l.cols + 31) / 32)); }

void launch_packed_quantize(const PackedLaunch& l, const std::uint8_t* input, std::uint8_t* packed,
                            std::uint8_t* scales, std::uint8_t* zero_points, float* scratch_scale, int* scratch_zero,
                            unsigned long long* bad_index, unsigned long long* bad_group, double* partials,
                            cudaStream_t stream) {
  params_kernel<<<grid_for(l.rows * l.groups_per_row), kThreads, 0, stream>>>(l, input, scales, scratch_scale,
                                                                             scratch_zero, bad_index, bad_group);
  WQ_CUDA_CHECK(cudaGetLastError());
  codes_kernel<<<packed_codes_grid(l), kThreads, 0, stream>>>(l, input, scratch_scale, scratch_zero,
                                                              reinterpret_cast<std::uint32_t*>(packed), bad_index,
                                                              partials);
  WQ_CUDA_CHECK(cudaGetLastError());
  if (!l.symmetric) {
    zero_points_kernel<<<grid_for(((l.rows + 31) / 32) * l.groups_per_row), kThreads, 0, stream>>>(
        l, scratch_zero, reinterpret_cast<std::uint32_t*>(zero_points));
    WQ_CUDA_CHECK(cudaGetLastError());
  }
}

}  // namespace wq::cuda
