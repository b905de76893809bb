#include "kernel_benchmark.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstring>
#include <random>

#include "device_memory.h"
#include "device_probe.h"
#include "kernels.h"
#include "work_plan.h"
#include "wq/codec/pack.h"

namespace wq::cuda {
namespace {

/// Milliseconds of `work` enqueued on `stream`, timed by events; median of `repeats`.
template <typename Work>
double median_seconds(cudaStream_t stream, int repeats, Work&& work) {
  cudaEvent_t start, stop;
  WQ_CUDA_CHECK(cudaEventCreate(&start));
  WQ_CUDA_CHECK(cudaEventCreate(&stop));
  work();  // warm-up
  std::vector<double> seconds;
  for (int i = 0; i < repeats; ++i) {
    WQ_CUDA_CHECK(cudaEventRecord(start, stream));
    work();
    WQ_CUDA_CHECK(cudaEventRecord(stop, stream));
    WQ_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    WQ_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    seconds.push_back(ms / 1e3);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(seconds.begin(), seconds.end());
  return seconds[seconds.size() / 2];
}

}  // namespace

DeviceLimits measure_device_limits(int device, std::uint64_t bytes) {
  WQ_CUDA_CHECK(cudaSetDevice(device));
  DeviceLimits limits;
  limits.device = device_name(device);
  DeviceBuffer a(bytes), b(bytes);
  PinnedBuffer host(bytes);
  std::memset(host.get(), 1, bytes);
  WQ_CUDA_CHECK(cudaMemset(a.get(), 1, bytes));
  Stream stream;
  const double gb = static_cast<double>(bytes) / 1e9;
  limits.device_copy = gb / median_seconds(stream.get(), 10, [&] {
    WQ_CUDA_CHECK(cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice, stream.get()));
  });
  limits.host_to_device = gb / median_seconds(stream.get(), 5, [&] {
    WQ_CUDA_CHECK(cudaMemcpyAsync(a.get(), host.get(), bytes, cudaMemcpyHostToDevice, stream.get()));
  });
  limits.device_to_host = gb / median_seconds(stream.get(), 5, [&] {
    WQ_CUDA_CHECK(cudaMemcpyAsync(host.get(), a.get(), bytes, cudaMemcpyDeviceToHost, stream.get()));
  });
  return limits;
}

KernelTiming time_quantize_kernels(int device, std::uint64_t rows, std::uint64_t cols,
                                   const QuantSpec& spec, int repeats) {
  WQ_CUDA_CHECK(cudaSetDevice(device));
  const Shape shape{rows, cols};
  const std::uint64_t n = rows * cols;
  const GroupGeometry g = group_geometry(shape, spec);
  const SlotCapacity capacity = SlotCapacity::for_bytes(aligned_size(n * 4));
  QuantTensor t;
  t.geometry = g;
  t.bits = spec.bits;
  t.f16_params = spec.scale_dtype == ScaleDType::kF16;
  t.cut = cut_tensor(g, n, 4, capacity);
  const std::vector<QuantSlot> slots = pack_quant_slots({t}, capacity, false);
  if (slots.size() != 1) throw Error(ErrorCode::kInternal, "kernel benchmark: tensor does not fit one slot");
  const QuantSlot& slot = slots[0];
  std::vector<QuantPiece> tables[kQuantLaunches];
  for (const PlacedQuantPiece& p : slot.pieces) tables[static_cast<int>(launch_of(p.kind))].push_back(p.desc);

  std::vector<float> host(n);
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  for (float& v : host) v = normal(rng);
  DeviceBuffer input(n * 4), codes(capacity.bytes), tile_lo(capacity.tiles * 4), tile_hi(capacity.tiles * 4);
  DeviceBuffer scales(capacity.groups * 4), mins(capacity.groups * 4), stored_scales(capacity.groups * 4),
      stored_mins(capacity.groups * 4), status(capacity.pieces * 4), stats(capacity.blocks * sizeof(BlockStats));
  WQ_CUDA_CHECK(cudaMemcpy(input.get(), host.data(), n * 4, cudaMemcpyHostToDevice));
  DeviceBuffer device_tables[kQuantLaunches];
  for (int l = 0; l < kQuantLaunches; ++l) {
    device_tables[l] = DeviceBuffer(std::max<std::size_t>(1, tables[l].size()) * sizeof(QuantPiece));
    WQ_CUDA_CHECK(cudaMemcpy(device_tables[l].get(), tables[l].data(), tables[l].size() * sizeof(QuantPiece),
                             cudaMemcpyHostToDevice));
  }
  Stream stream;
  const cudaStream_t s = stream.get();
  const auto* gt = device_tables[0].get<QuantPiece>();
  const auto general_count = static_cast<unsigned>(tables[0].size());
  const auto single_pass = [&](QuantLaunch launch) {
    const int l = static_cast<int>(launch);
    launch_quantize_single_pass(launch, device_tables[l].get<QuantPiece>(), static_cast<unsigned>(tables[l].size()), slot.launch_blocks[l],
             input.get(), stored_scales.get<std::uint32_t>(), stored_mins.get<std::uint32_t>(), codes.get(),
             status.get<std::uint32_t>(), stats.get<BlockStats>() + slot.first_block(launch), s);
  };
  KernelTiming timing;
  timing.seconds = median_seconds(s, repeats, [&] {
    launch_tile_ranges(gt, general_count, slot.tiles, input.get(), tile_lo.get<float>(), tile_hi.get<float>(), s);
    launch_group_params(gt, general_count, slot.groups, tile_lo.get<float>(), tile_hi.get<float>(),
                        scales.get<float>(), mins.get<float>(), stored_scales.get<std::uint32_t>(),
                        stored_mins.get<std::uint32_t>(), status.get<std::uint32_t>(), slot.max_tiles_per_group, s);
    launch_quantize_pack(gt, general_count, slot.launch_blocks[0], input.get(), scales.get<float>(),
                         mins.get<float>(), codes.get(), status.get<std::uint32_t>(), stats.get<BlockStats>(), s);
    single_pass(QuantLaunch::kSmallGroups);
    single_pass(QuantLaunch::kWarpGroups);
    single_pass(QuantLaunch::kBlockGroups);
  });
  const double param_bytes = static_cast<double>(g.groups) * (t.f16_params ? 4 : 8);
  timing.input_gbps = static_cast<double>(n * 4) / timing.seconds / 1e9;
  timing.traffic_gbps = (static_cast<double>(n * 4 + codec::packed_bytes(n, spec.bits)) + param_bytes) / timing.seconds / 1e9;
  return timing;
}

}  // namespace wq::cuda
