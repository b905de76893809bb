#include "cuda_backend.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <limits>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "core/ggml_jobs.h"
#include "core/packed_jobs.h"
#include "core/stored_params.h"
#include "cpu/cpu_backend.h"
#include "cuda_check.h"
#include "device_probe.h"
#include "elementwise_plan.h"
#include "ggml_kernels.h"
#include "packed_kernels.h"
#include "kernels.h"
#include "slot_ring.h"
#include "work_plan.h"
#include "wq/codec/pack.h"
#include "wq/error.h"

namespace wq::cuda {
namespace {

constexpr std::uint64_t kMiB = 1ull << 20;
constexpr std::uint64_t kMaxSlotBytes = 256 * kMiB;
constexpr std::uint64_t kMinSlotBytes = 64 * 1024;

// The statistics of a one-item-per-thread launch from its `grid` blocks' partials
// (block_stats.cuh), added in block order: reproducible sums.
ErrorStats block_stats(const DeviceBuffer& partials, unsigned grid, std::uint64_t count) {
  std::vector<double> sums(3 * grid);
  WQ_CUDA_CHECK(cudaMemcpy(sums.data(), partials.get(), sums.size() * sizeof(double), cudaMemcpyDeviceToHost));
  ErrorStats stats;
  for (unsigned b = 0; b < grid; ++b) {
    stats.signal_energy += sums[3 * b];
    stats.error_energy += sums[3 * b + 1];
    stats.max_abs_error = std::max(stats.max_abs_error, sums[3 * b + 2]);
  }
  stats.count = count;
  return stats;
}

ErrorStats sum_blocks(const BlockStats* blocks, std::uint64_t first, std::uint64_t count,
                      std::uint64_t elements) {
  ErrorStats s;
  s.count = elements;
  for (std::uint64_t b = first; b < first + count; ++b) {  // fixed order: reproducible sums
    s.signal_energy += blocks[b].signal;
    s.error_energy += blocks[b].error;
    s.max_abs_error = std::max(s.max_abs_error, blocks[b].max_abs);
  }
  return s;
}

/// The largest slot (a multiple of 64 KiB) of which SlotRing::kSlots fit the budget.
SlotCapacity capacity_for_budget(std::uint64_t budget) {
  std::uint64_t lo = kMinSlotBytes, hi = kMaxSlotBytes;
  while (hi - lo > kMinSlotBytes) {
    const std::uint64_t mid = (lo + hi) / 2 / kMinSlotBytes * kMinSlotBytes;
    if (SlotRing::kSlots * SlotCapacity::for_bytes(mid).device_bytes() <= budget) lo = mid; else hi = mid;
  }
  return SlotCapacity::for_bytes(lo);
}

/// Groups' ranges of a tensor too large for one slot, found by the first pass.
struct GroupRanges {
  std::vector<float> lo, hi;
};

class CudaBackend final : public Backend {
 public:
  CudaBackend(int ordinal, std::uint64_t budget, unsigned host_threads)
      : ordinal_(ordinal), cpu_(detail::make_cpu_backend(1)) {
    WQ_CUDA_CHECK(cudaSetDevice(ordinal));
    std::size_t free_bytes = 0, total_bytes = 0;
    WQ_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    if (budget == 0) budget = std::min<std::uint64_t>(free_bytes / 4, 1536 * kMiB);
    if (budget > free_bytes) {
      throw Error(ErrorCode::kUsage,
                  "a GPU memory budget of " + std::to_string(budget >> 20) + " MiB is more than the " +
                      std::to_string(free_bytes >> 20) + " MiB free on CUDA device " + std::to_string(ordinal),
                  {{"gpu_memory", ""}});
    }
    host_threads_ = host_threads != 0 ? host_threads : std::clamp(std::thread::hardware_concurrency(), 1u, 16u);
    largest_slot_bytes_ = capacity_for_budget(budget).bytes;
    description_ = "cuda, " + device_name(ordinal) + " (device " + std::to_string(ordinal) + "), " +
                   std::to_string(SlotRing::kSlots) + " slots of up to " +
                   std::to_string(largest_slot_bytes_ / 1024) + " KiB";
  }

  std::string_view name() const noexcept override { return "cuda"; }
  std::string description() const override { return description_; }

  using Backend::cast;
  using Backend::dequantize;
  using Backend::encode;
  using Backend::quantize;

  void quantize(std::span<QuantizeJob> jobs) override {
    WQ_CUDA_CHECK(cudaSetDevice(ordinal_));
    // Slots of a third of the batch keep the ring's three slots busy at once, but no smaller
    // than the batch's longest group: a group larger than a slot needs a first pass that reads
    // its input once more.
    std::uint64_t batch_bytes = 0, longest_group_bytes = 0;
    for (const QuantizeJob& job : jobs) {
      batch_bytes += job.input.nbytes();
      longest_group_bytes = std::max(longest_group_bytes, longest_group_bytes_of(job));
    }
    const SlotCapacity& capacity =
        ring_for(std::max((batch_bytes + SlotRing::kSlots - 1) / SlotRing::kSlots, longest_group_bytes)).capacity();
    std::vector<bool> failed(jobs.size(), false), on_host(jobs.size(), false);
    std::vector<QuantTensor> tensors, giants;
    for (std::size_t i = 0; i < jobs.size(); ++i) {
      QuantizeJob& job = jobs[i];
      job.stats = {};
      try {
        job.spec.validate();
      } catch (const Error&) {
        failed[i] = true;  // the CPU backend reports it, below, in batch order
        continue;
      }
      if (!job.spec.is_affine() || !is_floating(job.input.dtype)) {
        failed[i] = true;
        continue;
      }
      QuantTensor t;
      t.job = i;
      t.geometry = group_geometry(job.input.shape, job.spec);
      if (t.geometry.groups == 0) continue;
      t.type = element_type(job.input.dtype);
      t.bits = job.spec.bits;
      t.f16_params = job.spec.scale_dtype == ScaleDType::kF16;
      t.rule = job.spec.recipe().rule;
      t.cut = cut_tensor(t.geometry, job.input.numel(), static_cast<unsigned>(dtype_size(job.input.dtype)), capacity);
      if (t.rule == codec::RangeRule::kMse) {
        // The search (launch_mse_params) runs between the general schedule's parameters and
        // codes, and reads each group whole from one slot. A group larger than a slot (mse per
        // tensor on a large tensor) is searched and coded by the host's CPU backend instead:
        // the same codec, so the same bytes, only slower.
        if (t.cut.kind == PieceKind::kHostRanges) {
          on_host[i] = true;
          continue;
        }
        t.cut.kind = PieceKind::kGeneral;
      }
      if (t.cut.kind == PieceKind::kHostRanges) giants.push_back(t);
      tensors.push_back(std::move(t));
    }

    // First pass: the ranges of groups larger than a slot.
    std::unordered_map<std::size_t, GroupRanges> ranges;
    if (!giants.empty()) {
      for (const QuantTensor& t : giants) {
        GroupRanges& r = ranges[t.job];
        r.lo.assign(t.geometry.groups, std::numeric_limits<float>::infinity());
        r.hi.assign(t.geometry.groups, -std::numeric_limits<float>::infinity());
      }
      const std::vector<QuantSlot> plans = pack_quant_slots(giants, capacity, true);
      ring_->run(
          plans.size(), [&](std::size_t i, Slot& slot) { enqueue_quantize(plans[i], jobs, ranges, slot, true); },
          [&](std::size_t i, Slot& slot) { harvest_ranges(plans[i], slot, ranges); });
    }

    const std::vector<QuantSlot> plans = pack_quant_slots(tensors, capacity, false);
    ring_->run(
        plans.size(), [&](std::size_t i, Slot& slot) { enqueue_quantize(plans[i], jobs, ranges, slot, false); },
        [&](std::size_t i, Slot& slot) { harvest_quantize(plans[i], slot, jobs, failed); });

    for (std::size_t i = 0; i < jobs.size(); ++i) {  // in batch order, so the first error is the first job's
      if (on_host[i]) cpu_->quantize(jobs.subspan(i, 1));
      if (failed[i]) report_failure(jobs.subspan(i, 1), [this](auto one) { cpu_->quantize(one); });
    }
  }

  // The coding stage alone: the caller's parameters are uploaded where launch_group_params()
  // would have written its own, and only the codes kernel runs (the general schedule, which
  // clamps). Unverified on a GPU so far.
  void encode(std::span<EncodeJob> jobs) override {
    WQ_CUDA_CHECK(cudaSetDevice(ordinal_));
    std::uint64_t batch_bytes = 0;
    for (const EncodeJob& job : jobs) batch_bytes += job.input.nbytes();
    const SlotCapacity& capacity = ring_for((batch_bytes + SlotRing::kSlots - 1) / SlotRing::kSlots).capacity();
    std::vector<bool> failed(jobs.size(), false);
    std::vector<std::vector<codec::AffineParams>> given(jobs.size());
    std::vector<QuantTensor> tensors;
    for (std::size_t i = 0; i < jobs.size(); ++i) {
      EncodeJob& job = jobs[i];
      job.stats = {};
      try {
        job.spec.validate();
      } catch (const Error&) {
        failed[i] = true;  // the CPU backend reports it, below, in batch order
        continue;
      }
      if (!job.spec.is_affine() || !is_floating(job.input.dtype)) {
        failed[i] = true;
        continue;
      }
      QuantTensor t;
      t.job = i;
      t.geometry = group_geometry(job.input.shape, job.spec);
      if (t.geometry.groups == 0) continue;
      const AffineTensor stored{nullptr, job.scales, job.spec.method == Method::kSymmetric ? nullptr : job.mins,
                                job.spec.bits, t.geometry.stored_group_size, job.spec.scale_dtype};
      if (detail::first_nonfinite_group(stored, 0, t.geometry.groups) != t.geometry.groups) {
        failed[i] = true;
        continue;
      }
      given[i] = widened_params(stored, t.geometry.groups);
      t.type = element_type(job.input.dtype);
      t.bits = job.spec.bits;
      t.f16_params = job.spec.scale_dtype == ScaleDType::kF16;
      t.cut = cut_tensor(t.geometry, job.input.numel(), static_cast<unsigned>(dtype_size(job.input.dtype)), capacity);
      // Parameters known in advance need no range pass, whatever the group size: any cut will
      // do, and every piece takes the general codes kernel.
      if (t.cut.kind != PieceKind::kHostRanges) t.cut.kind = PieceKind::kGeneral;
      tensors.push_back(std::move(t));
    }
    const std::vector<QuantSlot> plans = pack_quant_slots(tensors, capacity, false);
    ring_->run(
        plans.size(), [&](std::size_t i, Slot& slot) { enqueue_encode(plans[i], jobs, given, slot); },
        [&](std::size_t i, Slot& slot) { harvest_encode(plans[i], slot, jobs, failed); });
    for (std::size_t i = 0; i < jobs.size(); ++i) {
      if (failed[i]) report_failure(jobs.subspan(i, 1), [this](auto one) { cpu_->encode(one); });
    }
  }

  void dequantize(std::span<DequantizeJob> jobs) override {
    WQ_CUDA_CHECK(cudaSetDevice(ordinal_));
    for (std::size_t i = 0; i < jobs.size(); ++i) {
      // A wrong dtype or a damaged parameter: the CPU backend throws the error it would give.
      const DequantizeJob& job = jobs[i];
      const std::uint64_t groups =
          is_floating(job.out.dtype) ? stored_group_geometry(job.out.shape, job.input.stored_group_size, job.input.bits).groups : 0;
      if (!is_floating(job.out.dtype) || detail::first_nonfinite_group(job.input, 0, groups) != groups) {
        report_failure(jobs.subspan(i, 1), [this](auto one) { cpu_->dequantize(one); });
      }
    }
    std::uint64_t batch_bytes = 0;
    for (const DequantizeJob& job : jobs) batch_bytes += job.out.nbytes();
    ring_for((batch_bytes + SlotRing::kSlots - 1) / SlotRing::kSlots);
    const std::vector<DequantSlot> plans = plan_dequantize(jobs, ring_->capacity());
    ring_->run(
        plans.size(), [&](std::size_t i, Slot& slot) { enqueue_dequantize(plans[i], jobs, slot); },
        [&](std::size_t i, Slot& slot) {
          const DequantSlot& plan = plans[i];
          std::vector<SlotRing::Copy> copies;
          for (std::size_t k = 0; k < plan.pieces.size(); ++k) {
            const DequantPiece& p = plan.pieces[k];
            const MutableTensorView& out = jobs[plan.jobs[k]].out;
            const std::size_t size = dtype_size(out.dtype);
            copies.push_back({out.data + p.elem_begin * size, slot.host_output.get() + p.dst_offset,
                              (p.elem_end - p.elem_begin) * size});
          }
          ring_->copy_all(copies);
        });
  }

  using Backend::decode_ggml;
  using Backend::quantize_ggml;

  // ggml blocks: one tensor at a time, whole on the device (bounded by the largest tensor, not
  // streamed through the slot ring), one thread per block. Not yet run on a GPU.
  void quantize_ggml(std::span<GgmlQuantizeJob> jobs) override {
    WQ_CUDA_CHECK(cudaSetDevice(ordinal_));
    for (std::size_t i = 0; i < jobs.size(); ++i) {
      GgmlQuantizeJob& job = jobs[i];
      const codec::ggml::TypeLayout layout = detail::check_ggml_quantize_job(job);
      const std::uint64_t blocks = job.input.numel() / layout.block_elements;
      job.stats = {};
      if (blocks == 0) continue;
      const unsigned grid = ggml_quantize_grid(blocks);
      DeviceBuffer input(job.input.nbytes()), out(blocks * layout.block_bytes), bad(sizeof(unsigned long long)),
          partials(3 * sizeof(double) * grid);
      const unsigned long long none = ~0ull;
      WQ_CUDA_CHECK(cudaMemcpy(input.get(), job.input.data, job.input.nbytes(), cudaMemcpyHostToDevice));
      WQ_CUDA_CHECK(cudaMemcpy(bad.get(), &none, sizeof none, cudaMemcpyHostToDevice));
      launch_ggml_quantize(job.type, job.search, element_type(job.input.dtype), input.get(), blocks, out.get(),
                           bad.get<unsigned long long>(), partials.get<double>(), nullptr);
      unsigned long long bad_index = none;
      WQ_CUDA_CHECK(cudaMemcpy(&bad_index, bad.get(), sizeof bad_index, cudaMemcpyDeviceToHost));
      if (bad_index != none) {  // the CPU backend names the element in the same words
        report_failure(jobs.subspan(i, 1), [this](auto one) { cpu_->quantize_ggml(one); });
      }
      WQ_CUDA_CHECK(cudaMemcpy(job.blocks, out.get(), blocks * layout.block_bytes, cudaMemcpyDeviceToHost));
      job.stats = block_stats(partials, grid, job.input.numel());
    }
  }

  using Backend::quantize_packed;

  // compressed-tensors' pack-quantized weights: one tensor at a time, whole on the device (as
  // the ggml blocks). Not yet run on a GPU.
  void quantize_packed(std::span<PackQuantizeJob> jobs) override {
    WQ_CUDA_CHECK(cudaSetDevice(ordinal_));
    for (std::size_t i = 0; i < jobs.size(); ++i) {
      PackQuantizeJob& job = jobs[i];
      const detail::PackedGeometry g = detail::check_pack_quantize_job(job);
      job.stats = {};
      const std::uint64_t groups = g.rows * g.groups_per_row;
      if (groups == 0) continue;
      const PackedLaunch launch{element_type(job.input.dtype), job.bits, job.symmetric, job.search, g.rows, g.cols,
                                g.group_size, g.groups_per_row, g.words_per_row, g.zero_point_rows};
      const unsigned grid = packed_codes_grid(launch);
      const std::size_t packed_bytes = 4 * g.rows * g.words_per_row, scale_bytes = groups * dtype_size(job.input.dtype);
      const std::size_t zero_bytes = job.symmetric ? 0 : 4 * g.zero_point_rows * g.groups_per_row;
      DeviceBuffer input(job.input.nbytes()), packed(packed_bytes), scales(scale_bytes), zeros(zero_bytes),
          scratch_scale(4 * groups), scratch_zero(4 * groups), bad(2 * sizeof(unsigned long long)),
          partials(3 * sizeof(double) * grid);
      const unsigned long long none[2] = {~0ull, ~0ull};
      WQ_CUDA_CHECK(cudaMemcpy(input.get(), job.input.data, job.input.nbytes(), cudaMemcpyHostToDevice));
      WQ_CUDA_CHECK(cudaMemcpy(bad.get(), none, sizeof none, cudaMemcpyHostToDevice));
      launch_packed_quantize(launch, input.get(), packed.get(), scales.get(), zeros.get(), scratch_scale.get<float>(),
                             scratch_zero.get<int>(), bad.get<unsigned long long>(),
                             bad.get<unsigned long long>() + 1, partials.get<double>(), nullptr);
      unsigned long long found[2] = {~0ull, ~0ull};
      WQ_CUDA_CHECK(cudaMemcpy(found, bad.get(), sizeof found, cudaMemcpyDeviceToHost));
      if (found[0] != none[0] || found[1] != none[1]) {  // the CPU backend names the element or group
        report_failure(jobs.subspan(i, 1), [this](auto one) { cpu_->quantize_packed(one); });
      }
      WQ_CUDA_CHECK(cudaMemcpy(job.packed, packed.get(), packed_bytes, cudaMemcpyDeviceToHost));
      WQ_CUDA_CHECK(cudaMemcpy(job.scales, scales.get(), scale_bytes, cudaMemcpyDeviceToHost));
      if (zero_bytes != 0) WQ_CUDA_CHECK(cudaMemcpy(job.zero_points, zeros.get(), zero_bytes, cudaMemcpyDeviceToHost));
      job.stats = block_stats(partials, grid, job.input.numel());
    }
  }

  void decode_ggml(std::span<GgmlDecodeJob> jobs) override {
    WQ_CUDA_CHECK(cudaSetDevice(ordinal_));
    for (GgmlDecodeJob& job : jobs) {
      const codec::ggml::TypeLayout layout = detail::check_ggml_decode_job(job);
      const std::uint64_t blocks = job.out.numel() / layout.block_elements;
      if (blocks == 0) continue;
      DeviceBuffer in(blocks * layout.block_bytes), out(job.out.nbytes());
      WQ_CUDA_CHECK(cudaMemcpy(in.get(), job.blocks, in.size(), cudaMemcpyHostToDevice));
      launch_ggml_decode(job.type, element_type(job.out.dtype), in.get(), blocks, out.get(), nullptr);
      WQ_CUDA_CHECK(cudaMemcpy(job.out.data, out.get(), job.out.nbytes(), cudaMemcpyDeviceToHost));
    }
  }

  void cast(std::span<CastJob> jobs) override {
    WQ_CUDA_CHECK(cudaSetDevice(ordinal_));
    std::vector<bool> failed(jobs.size(), false);
    std::vector<ErrorStats> stats(jobs.size());
    for (std::size_t i = 0; i < jobs.size(); ++i) {
      failed[i] = !is_floating(jobs[i].input.dtype) || !is_floating(jobs[i].out.dtype);
    }
    std::uint64_t batch_bytes = 0;
    for (const CastJob& job : jobs) batch_bytes += std::max(job.input.nbytes(), job.out.nbytes());
    ring_for((batch_bytes + SlotRing::kSlots - 1) / SlotRing::kSlots);
    const std::vector<CastSlot> plans = plan_cast(jobs, failed, ring_->capacity());
    ring_->run(
        plans.size(), [&](std::size_t i, Slot& slot) { enqueue_cast(plans[i], jobs, slot); },
        [&](std::size_t i, Slot& slot) {
          const CastSlot& plan = plans[i];
          std::vector<SlotRing::Copy> copies;
          for (std::size_t k = 0; k < plan.pieces.size(); ++k) {
            const CastPiece& p = plan.pieces[k];
            CastJob& job = jobs[plan.jobs[k]];
            if (slot.host_status.get<std::uint32_t>()[p.piece_index] != 0 && job.check_overflow) {
              failed[plan.jobs[k]] = true;
            }
            const std::size_t size = dtype_size(job.out.dtype);
            copies.push_back({job.out.data + plan.firsts[k] * size,
                              slot.host_output.get() + p.dst_offset, p.count * size});
            stats[plan.jobs[k]].merge(sum_blocks(slot.host_stats.get<BlockStats>(), p.block_begin,
                                                 blocks_for(p.count), p.count));
          }
          ring_->copy_all(copies);
        });
    for (std::size_t i = 0; i < jobs.size(); ++i) {
      if (failed[i]) report_failure(jobs.subspan(i, 1), [this](auto one) { cpu_->cast(one); });
      jobs[i].stats = stats[i];
    }
  }

 private:
  // Input bytes of a job's longest group (0 for a job that will fail validation).
  static std::uint64_t longest_group_bytes_of(const QuantizeJob& job) {
    if (job.spec.bits < 1 || job.spec.bits > 8 || !job.spec.is_affine() || !is_floating(job.input.dtype) ||
        (job.spec.granularity == Granularity::kGroup && job.spec.group_size == 0)) {
      return 0;
    }
    const GroupGeometry g = group_geometry(job.input.shape, job.spec);
    return std::min(g.group_size, g.cols) * dtype_size(job.input.dtype);
  }

  // Slots grow with the work instead of taking the whole budget at once: a run over small
  // files never pins (or allocates on the device) more than it uses. The largest request so
  // far decides, in powers of two from 4 MiB up to the budget's slot size.
  SlotRing& ring_for(std::uint64_t slot_bytes) {
    std::uint64_t want = std::min<std::uint64_t>(4 * kMiB, largest_slot_bytes_);
    while (want < slot_bytes && want < largest_slot_bytes_) want *= 2;
    want = std::min(want, largest_slot_bytes_);
    if (!ring_ || ring_->capacity().bytes < want) {
      ring_.reset();  // its destructor waits for its streams
      ring_ = std::make_unique<SlotRing>(SlotCapacity::for_bytes(want), host_threads_);
    }
    return *ring_;
  }

  // A job the device flagged (or that is invalid) is run again on the CPU backend, which
  // throws the very error the CPU would have given: messages do not depend on the backend.
  template <typename Job, typename Run>
  void report_failure(std::span<Job> one, Run&& run_on_cpu) {
    run_on_cpu(one);
    throw Error(ErrorCode::kInternal, "the CUDA backend flagged a tensor in which the CPU backend finds no fault");
  }

  // --- quantize --------------------------------------------------------------------------

  void enqueue_quantize(const QuantSlot& plan, std::span<QuantizeJob> jobs,
                        const std::unordered_map<std::size_t, GroupRanges>& ranges, Slot& slot,
                        bool range_pass) {
    QuantPiece* tables[kQuantLaunches];
    unsigned counts[kQuantLaunches] = {};
    for (int l = 0; l < kQuantLaunches; ++l) tables[l] = slot.host_tables[l].get<QuantPiece>();
    std::vector<SlotRing::Copy> copies;
    for (const PlacedQuantPiece& placed : plan.pieces) {
      const QuantPiece& d = placed.desc;
      const int l = static_cast<int>(launch_of(placed.kind));
      tables[l][counts[l]++] = d;
      const TensorView& in = jobs[placed.job].input;
      const std::size_t size = dtype_size(in.dtype);
      copies.push_back({slot.host_input.get() + d.src_offset, in.data + d.elem_begin * size,
                        (d.elem_end - d.elem_begin) * size});
      if (d.host_ranges) {
        const GroupRanges& r = ranges.at(placed.job);
        for (std::uint64_t g = d.first_group; g < d.last_group; ++g) {
          slot.host_tile_lo.get<float>()[d.tile_begin + (g - d.first_group)] = r.lo[g];
          slot.host_tile_hi.get<float>()[d.tile_begin + (g - d.first_group)] = r.hi[g];
        }
      }
    }
    ring_->copy_all(copies);

    const cudaStream_t stream = slot.stream.get();
    for (int l = 0; l < kQuantLaunches; ++l) {
      // Most slots use one or two of the launches; an empty table's copy would still be a
      // driver call (a small file makes ~15 of them in all).
      if (counts[l] == 0) continue;
      WQ_CUDA_CHECK(cudaMemcpyAsync(slot.tables[l].get(), tables[l], counts[l] * sizeof(QuantPiece),
                                    cudaMemcpyHostToDevice, stream));
    }
    WQ_CUDA_CHECK(cudaMemcpyAsync(slot.input.get(), slot.host_input.get(), plan.input_bytes,
                                  cudaMemcpyHostToDevice, stream));
    const auto* table = slot.tables[0].get<QuantPiece>();
    const unsigned general_count = counts[0];
    if (range_pass) {
      launch_tile_ranges(table, general_count, plan.tiles, slot.input.get(),
                         slot.tile_lo.get<float>(), slot.tile_hi.get<float>(), stream);
      WQ_CUDA_CHECK(cudaMemcpyAsync(slot.host_tile_lo.get(), slot.tile_lo.get(), plan.tiles * 4,
                                    cudaMemcpyDeviceToHost, stream));
      WQ_CUDA_CHECK(cudaMemcpyAsync(slot.host_tile_hi.get(), slot.tile_hi.get(), plan.tiles * 4,
                                    cudaMemcpyDeviceToHost, stream));
      return;
    }
    if (plan.host_ranges) {
      WQ_CUDA_CHECK(cudaMemcpyAsync(slot.tile_lo.get(), slot.host_tile_lo.get(), plan.tiles * 4,
                                    cudaMemcpyHostToDevice, stream));
      WQ_CUDA_CHECK(cudaMemcpyAsync(slot.tile_hi.get(), slot.host_tile_hi.get(), plan.tiles * 4,
                                    cudaMemcpyHostToDevice, stream));
    }
    auto* status = slot.status.get<std::uint32_t>();
    auto* stats = slot.stats.get<BlockStats>();
    WQ_CUDA_CHECK(cudaMemsetAsync(status, 0, plan.piece_count() * 4, stream));
    launch_tile_ranges(table, general_count, plan.tiles, slot.input.get(), slot.tile_lo.get<float>(),
                       slot.tile_hi.get<float>(), stream);
    launch_group_params(table, general_count, plan.groups, slot.tile_lo.get<float>(),
                        slot.tile_hi.get<float>(), slot.scales.get<float>(), slot.mins.get<float>(),
                        slot.stored_scales.get<std::uint32_t>(), slot.stored_mins.get<std::uint32_t>(),
                        status, plan.max_tiles_per_group, stream);
    const bool mse = std::any_of(plan.pieces.begin(), plan.pieces.end(), [](const PlacedQuantPiece& placed) {
      return placed.desc.rule == static_cast<std::int32_t>(codec::RangeRule::kMse);
    });
    if (mse) {  // no launch at all for the other methods
      launch_mse_params(table, general_count, plan.groups, slot.input.get(), slot.scales.get<float>(),
                        slot.mins.get<float>(), slot.stored_scales.get<std::uint32_t>(),
                        slot.stored_mins.get<std::uint32_t>(), status, stream);
    }
    launch_quantize_pack(table, general_count, plan.launch_blocks[0], slot.input.get(),
                         slot.scales.get<float>(), slot.mins.get<float>(), slot.output.get(), status,
                         stats, stream);
    const auto single_pass = [&](QuantLaunch launch) {
      const int l = static_cast<int>(launch);
      launch_quantize_single_pass(launch, slot.tables[l].get<QuantPiece>(), counts[l], plan.launch_blocks[l], slot.input.get(),
               slot.stored_scales.get<std::uint32_t>(), slot.stored_mins.get<std::uint32_t>(),
               slot.output.get(), status, stats + plan.first_block(launch), stream);
    };
    single_pass(QuantLaunch::kSmallGroups);
    single_pass(QuantLaunch::kWarpGroups);
    single_pass(QuantLaunch::kBlockGroups);
    WQ_CUDA_CHECK(cudaMemcpyAsync(slot.host_output.get(), slot.output.get(), plan.code_bytes,
                                  cudaMemcpyDeviceToHost, stream));
    WQ_CUDA_CHECK(cudaMemcpyAsync(slot.host_stored_scales.get(), slot.stored_scales.get(), plan.groups * 4,
                                  cudaMemcpyDeviceToHost, stream));
    WQ_CUDA_CHECK(cudaMemcpyAsync(slot.host_stored_mins.get(), slot.stored_mins.get(), plan.groups * 4,
                                  cudaMemcpyDeviceToHost, stream));
    WQ_CUDA_CHECK(cudaMemcpyAsync(slot.host_status.get(), status, plan.piece_count() * 4,
                                  cudaMemcpyDeviceToHost, stream));
    WQ_CUDA_CHECK(cudaMemcpyAsync(slot.host_stats.get(), stats,
                                  plan.blocks() * sizeof(BlockStats),
                                  cudaMemcpyDeviceToHost, stream));
  }

  // A stored tensor's parameters widened to binary32, symmetric mins derived (as the CPU's).
  static std::vector<codec::AffineParams> widened_params(const AffineTensor& in, std::uint64_t groups) {
    std::vector<codec::AffineParams> p(groups);
    for (std::uint64_t k = 0; k < groups; ++k) {
      if (in.scale_dtype == ScaleDType::kF32) {
        std::memcpy(&p[k].scale, in.scales + 4 * k, 4);
        if (in.mins) std::memcpy(&p[k].min, in.mins + 4 * k, 4);
      } else {
        std::uint16_t h;
        std::memcpy(&h, in.scales + 2 * k, 2);
        p[k].scale = codec::f16_bits_to_f32(h);
        if (in.mins) {
          std::memcpy(&h, in.mins + 2 * k, 2);
          p[k].min = codec::f16_bits_to_f32(h);
        }
      }
      if (!in.mins) p[k].min = codec::symmetric_min(p[k].scale, in.bits);
    }
    return p;
  }

  void enqueue_encode(const QuantSlot& plan, std::span<EncodeJob> jobs,
                      const std::vector<std::vector<codec::AffineParams>>& given, Slot& slot) {
    auto* table = slot.host_tables[0].get<QuantPiece>();
    auto* host_scales = slot.host_stored_scales.get<float>();  // staging: nothing else uses them here
    auto* host_mins = slot.host_stored_mins.get<float>();
    unsigned count = 0;
    std::vector<SlotRing::Copy> copies;
    for (const PlacedQuantPiece& placed : plan.pieces) {
      const QuantPiece& d = placed.desc;
      table[count++] = d;
      const TensorView& in = jobs[placed.job].input;
      const std::size_t size = dtype_size(in.dtype);
      copies.push_back({slot.host_input.get() + d.src_offset, in.data + d.elem_begin * size,
                        (d.elem_end - d.elem_begin) * size});
      const std::vector<codec::AffineParams>& p = given[placed.job];
      for (std::uint64_t g = d.first_group; g < d.last_group; ++g) {
        host_scales[d.param_index + (g - d.first_group)] = p[g].scale;
        host_mins[d.param_index + (g - d.first_group)] = p[g].min;
      }
    }
    ring_->copy_all(copies);
    const cudaStream_t stream = slot.stream.get();
    WQ_CUDA_CHECK(cudaMemcpyAsync(slot.tables[0].get(), table, count * sizeof(QuantPiece), cudaMemcpyHostToDevice, stream));
    WQ_CUDA_CHECK(cudaMemcpyAsync(slot.input.get(), slot.host_input.get(), plan.input_bytes, cudaMemcpyHostToDevice, stream));
    WQ_CUDA_CHECK(cudaMemcpyAsync(slot.scales.get(), host_scales, plan.groups * 4, cudaMemcpyHostToDevice, stream));
    WQ_CUDA_CHECK(cudaMemcpyAsync(slot.mins.get(), host_mins, plan.groups * 4, cudaMemcpyHostToDevice, stream));
    auto* status = slot.status.get<std::uint32_t>();
    auto* stats = slot.stats.get<BlockStats>();
    WQ_CUDA_CHECK(cudaMemsetAsync(status, 0, plan.piece_count() * 4, stream));
    launch_quantize_pack(slot.tables[0].get<QuantPiece>(), count, plan.launch_blocks[0], slot.input.get(),
                         slot.scales.get<float>(), slot.mins.get<float>(), slot.output.get(), status, stats, stream);
    WQ_CUDA_CHECK(cudaMemcpyAsync(slot.host_output.get(), slot.output.get(), plan.code_bytes, cudaMemcpyDeviceToHost, stream));
    WQ_CUDA_CHECK(cudaMemcpyAsync(slot.host_status.get(), status, plan.piece_count() * 4, cudaMemcpyDeviceToHost, stream));
    WQ_CUDA_CHECK(cudaMemcpyAsync(slot.host_stats.get(), stats, plan.blocks() * sizeof(BlockStats),
                                  cudaMemcpyDeviceToHost, stream));
  }

  void harvest_encode(const QuantSlot& plan, Slot& slot, std::span<EncodeJob> jobs, std::vector<bool>& failed) {
    const auto* status = slot.host_status.get<std::uint32_t>();
    std::vector<SlotRing::Copy> copies;
    for (const PlacedQuantPiece& placed : plan.pieces) {
      const QuantPiece& d = placed.desc;
      if (status[d.piece_index] != 0) failed[placed.job] = true;
      if (failed[placed.job]) continue;
      EncodeJob& job = jobs[placed.job];
      const std::uint64_t n = d.elem_end - d.elem_begin;
      copies.push_back({job.codes + d.elem_begin / 8 * static_cast<std::uint64_t>(d.bits),
                        slot.host_output.get() + d.code_offset, codec::packed_bytes(n, d.bits)});
      job.stats.merge(sum_blocks(slot.host_stats.get<BlockStats>(), plan.first_block(QuantLaunch::kGeneral) + d.block_begin,
                                 blocks_of(placed.kind, n, d.last_group - d.first_group), n));
    }
    ring_->copy_all(copies);
  }

  static void harvest_ranges(const QuantSlot& plan, Slot& slot,
                             std::unordered_map<std::size_t, GroupRanges>& ranges) {
    const auto* lo = slot.host_tile_lo.get<float>();
    const auto* hi = slot.host_tile_hi.get<float>();
    for (const PlacedQuantPiece& placed : plan.pieces) {
      const QuantPiece& d = placed.desc;
      GroupRanges& r = ranges.at(placed.job);
      const std::uint64_t tiles = (d.last_group - d.first_group) * d.tiles_per_group;
      for (std::uint64_t t = 0; t < tiles; ++t) {
        const std::uint64_t g = d.first_group + t / d.tiles_per_group;
        r.lo[g] = std::fmin(r.lo[g], lo[d.tile_begin + t]);
        r.hi[g] = std::fmax(r.hi[g], hi[d.tile_begin + t]);
      }
    }
  }

  void harvest_quantize(const QuantSlot& plan, Slot& slot, std::span<QuantizeJob> jobs,
                        std::vector<bool>& failed) {
    const auto* status = slot.host_status.get<std::uint32_t>();
    const auto* stored_scales = slot.host_stored_scales.get<std::uint32_t>();
    const auto* stored_mins = slot.host_stored_mins.get<std::uint32_t>();
    std::vector<SlotRing::Copy> copies;
    for (const PlacedQuantPiece& placed : plan.pieces) {
      const QuantPiece& d = placed.desc;
      if (status[d.piece_index] != 0) failed[placed.job] = true;
      if (failed[placed.job]) continue;
      QuantizeJob& job = jobs[placed.job];
      const std::uint64_t n = d.elem_end - d.elem_begin;
      copies.push_back({job.out.codes + d.elem_begin / 8 * static_cast<std::uint64_t>(d.bits),
                        slot.host_output.get() + d.code_offset, codec::packed_bytes(n, d.bits)});
      const std::uint64_t groups = d.last_group - d.first_group;
      const bool symmetric = d.rule == static_cast<std::int32_t>(codec::RangeRule::kSymmetric);
      if (d.f16_params) {
        for (std::uint64_t g = 0; g < groups; ++g) {
          const auto s = static_cast<std::uint16_t>(stored_scales[d.param_index + g]);
          const auto m = static_cast<std::uint16_t>(stored_mins[d.param_index + g]);
          std::memcpy(job.out.scales + 2 * (d.first_group + g), &s, 2);
          if (symmetric) continue;  // no mins to store (job.out.mins may be null)
          std::memcpy(job.out.mins + 2 * (d.first_group + g), &m, 2);
        }
      } else {  // the stored words are the binary32 bits, little-endian like the container
        std::memcpy(job.out.scales + 4 * d.first_group, stored_scales + d.param_index, 4 * groups);
        if (!symmetric) std::memcpy(job.out.mins + 4 * d.first_group, stored_mins + d.param_index, 4 * groups);
      }
      job.stats.merge(sum_blocks(slot.host_stats.get<BlockStats>(),
                                 plan.first_block(launch_of(placed.kind)) + d.block_begin,
                                 blocks_of(placed.kind, n, groups), n));
    }
    ring_->copy_all(copies);
  }

  // --- dequantize ------------------------------------------------------------------------

  void enqueue_dequantize(const DequantSlot& plan, std::span<DequantizeJob> jobs, Slot& slot) {
    std::vector<SlotRing::Copy> copies;
    for (std::size_t k = 0; k < plan.pieces.size(); ++k) {
      const DequantPiece& p = plan.pieces[k];
      const AffineTensor& in = jobs[plan.jobs[k]].input;
      const std::uint64_t param_size = p.f16_params ? 2 : 4;
      const GroupGeometry g = stored_group_geometry(jobs[plan.jobs[k]].out.shape, in.stored_group_size, in.bits);
      std::uint64_t first = 0, last = 0;
      overlapping_groups(g, p.elem_begin, p.elem_end, &first, &last);
      copies.push_back({slot.host_input.get() + p.code_offset, in.codes + p.elem_begin / 8 * in.bits,
                        codec::packed_bytes(p.elem_end - p.elem_begin, in.bits)});
      copies.push_back({slot.host_input.get() + p.scale_offset, in.scales + first * param_size,
                        (last - first) * param_size});
      if (in.mins != nullptr) {  // symmetric tensors have none: the kernel derives them
        copies.push_back({slot.host_input.get() + p.min_offset, in.mins + first * param_size,
                          (last - first) * param_size});
      }
    }
    ring_->copy_all(copies);
    std::memcpy(slot.host_tables[0].get(), plan.pieces.data(), plan.pieces.size() * sizeof(DequantPiece));
    const cudaStream_t stream = slot.stream.get();
    WQ_CUDA_CHECK(cudaMemcpyAsync(slot.tables[0].get(), slot.host_tables[0].get(),
                                  plan.pieces.size() * sizeof(DequantPiece), cudaMemcpyHostToDevice, stream));
    WQ_CUDA_CHECK(cudaMemcpyAsync(slot.input.get(), slot.host_input.get(), plan.input_bytes,
                                  cudaMemcpyHostToDevice, stream));
    launch_dequantize(slot.tables[0].get<DequantPiece>(), static_cast<unsigned>(plan.pieces.size()), plan.blocks,
                      slot.input.get(), slot.output.get(), stream);
    WQ_CUDA_CHECK(cudaMemcpyAsync(slot.host_output.get(), slot.output.get(), plan.output_bytes,
                                  cudaMemcpyDeviceToHost, stream));
  }

  // --- cast ------------------------------------------------------------------------------

  void enqueue_cast(const CastSlot& plan, std::span<CastJob> jobs, Slot& slot) {
    std::vector<SlotRing::Copy> copies;
    for (std::size_t k = 0; k < plan.pieces.size(); ++k) {
      const CastPiece& p = plan.pieces[k];
      const TensorView& in = jobs[plan.jobs[k]].input;
      const std::size_t size = dtype_size(in.dtype);
      copies.push_back({slot.host_input.get() + p.src_offset, in.data + plan.firsts[k] * size, p.count * size});
    }
    ring_->copy_all(copies);
    std::memcpy(slot.host_tables[0].get(), plan.pieces.data(), plan.pieces.size() * sizeof(CastPiece));
    const cudaStream_t stream = slot.stream.get();
    auto* status = slot.status.get<std::uint32_t>();
    WQ_CUDA_CHECK(cudaMemcpyAsync(slot.tables[0].get(), slot.host_tables[0].get(),
                                  plan.pieces.size() * sizeof(CastPiece), cudaMemcpyHostToDevice, stream));
    WQ_CUDA_CHECK(cudaMemcpyAsync(slot.input.get(), slot.host_input.get(), plan.input_bytes,
                                  cudaMemcpyHostToDevice, stream));
    WQ_CUDA_CHECK(cudaMemsetAsync(status, 0, plan.pieces.size() * 4, stream));
    launch_cast(slot.tables[0].get<CastPiece>(), static_cast<unsigned>(plan.pieces.size()), plan.blocks,
                slot.input.get(), slot.output.get(), status, slot.stats.get<BlockStats>(), stream);
    WQ_CUDA_CHECK(cudaMemcpyAsync(slot.host_output.get(), slot.output.get(), plan.output_bytes,
                                  cudaMemcpyDeviceToHost, stream));
    WQ_CUDA_CHECK(cudaMemcpyAsync(slot.host_status.get(), status, plan.pieces.size() * 4,
                                  cudaMemcpyDeviceToHost, stream));
    WQ_CUDA_CHECK(cudaMemcpyAsync(slot.host_stats.get(), slot.stats.get(), plan.blocks * sizeof(BlockStats),
                                  cudaMemcpyDeviceToHost, stream));
  }

  int ordinal_;
  unsigned host_threads_ = 1;
  std::uint64_t largest_slot_bytes_ = 0;
  std::unique_ptr<Backend> cpu_;
  std::unique_ptr<SlotRing> ring_;
  std::string description_;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(int ordinal, std::uint64_t memory_budget,
                                           unsigned host_threads) {
  std::string reason;
  const int count = device_count(&reason);
  if (count == 0) throw Error(ErrorCode::kUnsupported, reason);
  if (ordinal < 0 || ordinal >= count) {
    throw Error(ErrorCode::kUnsupported, "CUDA device " + std::to_string(ordinal) +
                                             " does not exist (" + std::to_string(count) + " present)");
  }
  return std::make_unique<CudaBackend>(ordinal, memory_budget, host_threads);
}

}  // namespace wq::cuda
