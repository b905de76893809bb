#include "cpu/cpu_backend.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <exception>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "core/ggml_jobs.h"
#include "core/stored_params.h"
#include "cpu/affine_kernels.h"
#include "cpu/cast_kernels.h"
#include "cpu/ggml_kernels.h"
#include "cpu/packed_kernels.h"
#include "cpu/mse_kernels.h"
#include "cpu/thread_pool.h"
#include "wq/codec/half.h"
#include "wq/codec/reciprocal.h"
#include "wq/error.h"

namespace wq::detail {
namespace {

using codec::AffineParams;

// Decoded outputs at least this large bypass the caches (non-temporal stores): they would not
// fit anyway, and plain stores first read every line they write. 24 MiB, like glibc's memcpy
// threshold on a 32 MiB L3 (3/4 of the shared cache).
constexpr std::uint64_t kStreamingOutputBytes = 24ull << 20;

// Ranges handed to one task: large enough to amortise scheduling, small enough to balance.
std::uint64_t task_elements(std::uint64_t n, unsigned threads) {
  return std::clamp<std::uint64_t>(n / (8ull * threads), 1ull << 15, 1ull << 20) / 8 * 8;
}

std::string tensor_label(std::string_view name) { return "tensor '" + std::string(name) + "'"; }

/// Even split of [0, n) into 8-aligned ranges.
std::vector<std::uint64_t> split_elements(std::uint64_t n, std::uint64_t per_task) {
  std::vector<std::uint64_t> bounds{0};
  while (bounds.back() < n) bounds.push_back(std::min(n, bounds.back() + per_task));
  return bounds;
}

struct GroupChunk {
  std::uint64_t first_group, last_group;  // [first, last)
  std::uint64_t begin, end;               // elements
};

/// Cuts the groups into chunks of about `per_task` elements. A chunk may only start at an
/// element index that is a multiple of 8, so that its codes start on a byte boundary and no
/// two tasks write the same byte.
std::vector<GroupChunk> chunk_groups(const GroupGeometry& g, std::uint64_t n,
                                     std::uint64_t per_task) {
  std::vector<GroupChunk> chunks;
  if (g.cols % g.group_size == 0 && g.group_size % 8 == 0) {
    // Rows of whole groups whose starts are all multiples of 8: chunks by arithmetic (the
    // loop below visits every group, 1-2 ms of one thread for 512K groups).
    const std::uint64_t per_chunk = std::max<std::uint64_t>(1, per_task / g.group_size);
    for (std::uint64_t k = 0; k < g.groups; k += per_chunk) {
      const std::uint64_t last = std::min(g.groups, k + per_chunk);
      chunks.push_back(GroupChunk{k, last, k * g.group_size, last * g.group_size});
    }
    return chunks;
  }
  GroupChunk current{0, 0, 0, 0};
  // Row and position kept incrementally: a division per group cost ~4 ms on 262144 groups.
  std::uint64_t row_start = 0, offset = 0;
  for (std::uint64_t k = 0; k < g.groups; ++k) {
    const std::uint64_t start = row_start + offset;
    if (start - current.begin >= per_task && start % 8 == 0) {
      current.last_group = k;
      current.end = start;
      chunks.push_back(current);
      current = GroupChunk{k, 0, start, 0};
    }
    offset += g.group_size;
    if (offset >= g.cols) {
      offset = 0;
      row_start += g.cols;
    }
  }
  current.last_group = g.groups;
  current.end = n;
  chunks.push_back(current);
  return chunks;
}

AffineParams params_of_group(const TensorView& t, const QuantSpec& spec, std::uint64_t group,
                             std::uint64_t begin, std::uint64_t end, float lo, float hi) {
  if (!codec::is_finite(lo) || !codec::is_finite(hi)) throw_first_nonfinite(t.dtype, t.data, begin, end, t.name);
  AffineParams p{};
  switch (codec::rule_params(lo, hi, spec.recipe(), &p)) {
    case codec::ParamsStatus::kOk: return p;
    case codec::ParamsStatus::kRangeOverflow:
    {
      char range[96];
      std::snprintf(range, sizeof range, "[%.9g, %.9g]", static_cast<double>(lo), static_cast<double>(hi));
      throw Error(ErrorCode::kBadData, tensor_label(t.name) + ": group " + std::to_string(group) +
                                           " spans " + range + ", wider than binary32 can represent");
    }
    case codec::ParamsStatus::kF16Overflow:
      throw Error(ErrorCode::kBadData,
                  tensor_label(t.name) + ": group " + std::to_string(group) + " has a scale or min outside the F16 range",
                  {{"scale_dtype_f32", ""}});
  }
  throw Error(ErrorCode::kInternal, "unknown parameter status");
}

void throw_group_failure(const TensorView& t, const QuantSpec& spec, const GroupFailure& f) {
  params_of_group(t, spec, f.group, f.begin, f.end, f.lo, f.hi);  // throws the right error
  throw Error(ErrorCode::kInternal, tensor_label(t.name) + ": group failure without an error");
}

// The parameters of one tensor's groups, in a buffer each thread keeps from one tensor to the
// next: a fresh vector (262144 groups, 2 MiB, for a 4096 x 4096 tensor at group 64) was
// zeroed and faulted in on every call, ~5% of a quantize. A task's parallel loop only writes
// into its caller's buffer, and a thread runs one tensor at a time.
std::span<AffineParams> scratch_params(std::uint64_t groups) {
  thread_local std::vector<AffineParams> buffer;
  if (buffer.size() < groups) buffer.resize(groups);
  return {buffer.data(), groups};
}

// Groups [first, last) of `params` into the caller's scale and min arrays. Local pointers, so
// that the byte stores (which may alias anything) do not reload them.
// A symmetric recipe stores no mins (out.mins may be null).
void store_params(std::span<const AffineParams> params, std::uint64_t first, std::uint64_t last,
                  const QuantSpec& spec, const AffineBuffers& out) {
  const AffineParams* p = params.data() + first;
  const bool f32 = spec.scale_dtype == ScaleDType::kF32;
  const std::uint64_t size = f32 ? 4 : 2;
  std::byte* scales = out.scales + size * first;
  std::byte* mins = spec.recipe().stores_min() ? out.mins + size * first : nullptr;
  const std::size_t n = last - first;
  if (f32) {
    for (std::size_t k = 0; k < n; ++k) std::memcpy(scales + 4 * k, &p[k].scale, 4);
    if (mins) {
      for (std::size_t k = 0; k < n; ++k) std::memcpy(mins + 4 * k, &p[k].min, 4);
    }
    return;
  }
  for (std::size_t k = 0; k < n; ++k) {
    const std::uint16_t s = codec::f32_to_f16_bits(p[k].scale);
    std::memcpy(scales + 2 * k, &s, 2);
  }
  if (!mins) return;
  for (std::size_t k = 0; k < n; ++k) {
    const std::uint16_t m = codec::f32_to_f16_bits(p[k].min);
    std::memcpy(mins + 2 * k, &m, 2);
  }
}

// Groups [first, last) of a stored tensor's scales and mins into `params`; a symmetric
// tensor's mins follow from its scales (codec::symmetric_min).
void load_params(const AffineTensor& in, std::uint64_t first, std::uint64_t last, std::span<AffineParams> params) {
  AffineParams* p = params.data();
  const std::byte* scales = in.scales;
  const std::byte* mins = in.mins;
  const bool f32 = in.scale_dtype == ScaleDType::kF32;
  for (std::uint64_t k = first; k < last; ++k) {
    if (f32) {
      std::memcpy(&p[k].scale, scales + 4 * k, 4);
    } else {
      std::uint16_t s;
      std::memcpy(&s, scales + 2 * k, 2);
      p[k].scale = codec::f16_bits_to_f32(s);
    }
  }
  if (!mins) {
    for (std::uint64_t k = first; k < last; ++k) p[k].min = codec::symmetric_min(p[k].scale, in.bits);
    return;
  }
  for (std::uint64_t k = first; k < last; ++k) {
    if (f32) {
      std::memcpy(&p[k].min, mins + 4 * k, 4);
    } else {
      std::uint16_t m;
      std::memcpy(&m, mins + 2 * k, 2);
      p[k].min = codec::f16_bits_to_f32(m);
    }
  }
}

ErrorStats merge_in_order(const std::vector<ErrorStats>& parts) {
  ErrorStats total;
  for (const ErrorStats& s : parts) total.merge(s);  // fixed order: reproducible sums
  return total;
}

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(unsigned threads) : pool_(threads) {}

  std::string_view name() const noexcept override { return "cpu"; }
  std::string description() const override {
    return "cpu, " + std::to_string(pool_.size()) + (pool_.size() == 1 ? " thread" : " threads");
  }

  using Backend::cast;
  using Backend::dequantize;
  using Backend::encode;
  using Backend::quantize;
  using Backend::quantize_ggml;
  using Backend::decode_ggml;

  void quantize_ggml(std::span<GgmlQuantizeJob> jobs) override {
    run_batch(jobs, [this](GgmlQuantizeJob& job) {
      check_ggml_quantize_job(job);
      job.stats = quantize_ggml_tensor(job, pool_);
    });
  }

  void decode_ggml(std::span<GgmlDecodeJob> jobs) override {
    run_batch(jobs, [this](GgmlDecodeJob& job) {
      check_ggml_decode_job(job);
      decode_ggml_tensor(job, pool_);
    });
  }

  using Backend::quantize_packed;

  void quantize_packed(std::span<PackQuantizeJob> jobs) override {
    run_batch(jobs, [this](PackQuantizeJob& job) { job.stats = quantize_packed_tensor(job, pool_); });
  }

  void quantize(std::span<QuantizeJob> jobs) override {
    run_batch(jobs, [this](QuantizeJob& job) { job.stats = quantize_one(job.input, job.spec, job.out); });
  }

  void encode(std::span<EncodeJob> jobs) override {
    run_batch(jobs, [this](EncodeJob& job) { job.stats = encode_one(job); });
  }

  void dequantize(std::span<DequantizeJob> jobs) override {
    run_batch(jobs, [this](DequantizeJob& job) { dequantize_one(job.input, job.out); });
  }

  void cast(std::span<CastJob> jobs) override {
    run_batch(jobs, [this](CastJob& job) { job.stats = cast_one(job.input, job.out, job.check_overflow); });
  }

 private:
  // Jobs run in parallel, each on one thread (nested loops run inline); a single job spreads
  // over the whole pool instead. The error reported is that of the first failing job in batch
  // order, whatever order the threads finished in.
  template <typename Job, typename Fn>
  void run_batch(std::span<Job> jobs, Fn&& run) {
    if (jobs.size() == 1) {
      run(jobs[0]);
      return;
    }
    std::vector<std::exception_ptr> errors(jobs.size());
    pool_.parallel_for(jobs.size(), [&](std::size_t i) {
      try {
        run(jobs[i]);
      } catch (...) {
        errors[i] = std::current_exception();
      }
    });
    for (const std::exception_ptr& e : errors) {
      if (e) std::rethrow_exception(e);
    }
  }

  ErrorStats quantize_one(const TensorView& t, const QuantSpec& spec, const AffineBuffers& out) {
    spec.validate();
    if (!spec.is_affine()) throw Error(ErrorCode::kUsage, "quantize() needs an affine method");
    if (!is_floating(t.dtype)) {
      throw Error(ErrorCode::kUsage, tensor_label(t.name) + ": dtype " +
                                         std::string(dtype_name(t.dtype)) + " cannot be quantized");
    }
    const GroupGeometry g = group_geometry(t.shape, spec);
    const codec::Recipe recipe = spec.recipe();
    const std::uint64_t n = t.numel();
    if (g.groups == 0) return {};
    const std::uint64_t per_task = task_elements(n, pool_.size());
    const std::span<AffineParams> params = scratch_params(g.groups);
    std::vector<ErrorStats> stats;

    if (g.groups == 1) {
      // One range over everything: reduce in parallel first, then quantize in parallel.
      const std::vector<std::uint64_t> bounds = split_elements(n, per_task);
      const std::size_t tasks = bounds.size() - 1;
      std::vector<float> lo(tasks, std::numeric_limits<float>::infinity());
      std::vector<float> hi(tasks, -std::numeric_limits<float>::infinity());
      pool_.parallel_for(tasks, [&](std::size_t i) {
        minmax_elements(t.dtype, t.data, bounds[i], bounds[i + 1], &lo[i], &hi[i]);
      });
      const float tensor_lo = *std::min_element(lo.begin(), lo.end());
      const float tensor_hi = *std::max_element(hi.begin(), hi.end());
      params[0] = params_of_group(t, spec, 0, 0, n, tensor_lo, tensor_hi);
      if (recipe.rule == codec::RangeRule::kMse) {  // the range stage: one search over every element
        mse_span_params(t.dtype, t.data, n, tensor_lo, tensor_hi, recipe, &params[0]);  // min-max's status, checked above
      }
      // A range that may clip (symmetric, F16 parameters, mse) may not clip this tensor: then
      // its codes skip the clamp too.
      codec::Coverage coverage = recipe.coverage();
      const float scale = params[0].scale;
      if (coverage == codec::Coverage::kMayClip && scale != 0.0f && codec::reciprocal_is_exact_enough(scale)) {
        coverage = codec::reciprocal_coverage(tensor_lo, tensor_hi, params[0], codec::div_rn(1.0f, scale),
                                              static_cast<float>(codec::max_code(recipe.bits)));
      }
      stats.resize(tasks);
      pool_.parallel_for(tasks, [&](std::size_t i) {
        quantize_elements(t.dtype, t.data, g, params.data(), recipe.bits, coverage, bounds[i], bounds[i + 1],
                          out.codes, &stats[i], t.name);
      });
    } else {
      // Many groups: each task owns whole groups, reduces and quantizes them while they are
      // still in cache.
      // Chunks of whole groups sized to keep their codes in L2.
      const std::vector<GroupChunk> chunks = chunk_groups(g, n, std::min<std::uint64_t>(per_task, 1u << 17));
      stats.resize(chunks.size());
      pool_.parallel_for(chunks.size(), [&](std::size_t c) {
        const GroupChunk& chunk = chunks[c];
        if (recipe.rule == codec::RangeRule::kMse) {
          // The range stage first (the search), then the ordinary coders with those ranges.
          const GroupFailure failure =
              mse_group_params(t.dtype, t.data, g, recipe, chunk.first_group, chunk.last_group, params.data());
          if (failure.failed) throw_group_failure(t, spec, failure);
          quantize_elements(t.dtype, t.data, g, params.data(), recipe.bits, codec::Coverage::kMayClip, chunk.begin,
                            chunk.end, out.codes, &stats[c], t.name);
        } else {
          const GroupFailure failure = quantize_groups(t.dtype, t.data, g, recipe, chunk.first_group, chunk.last_group,
                                                       chunk.begin, chunk.end, params.data(), out.codes, &stats[c],
                                                       t.name);
          if (failure.failed) throw_group_failure(t, spec, failure);
        }
        // Each chunk stores its own groups' parameters: one thread storing 512K groups' after
        // the parallel part was a tenth of a group-32 quantize on two threads.
        store_params(params, chunk.first_group, chunk.last_group, spec, out);
      });
      return merge_in_order(stats);
    }
    store_params(params, 0, 1, spec, out);
    return merge_in_order(stats);
  }

  // The coding stage alone: the caller's parameters, the coders that clamp.
  ErrorStats encode_one(const EncodeJob& job) {
    const TensorView& t = job.input;
    const QuantSpec& spec = job.spec;
    spec.validate();
    if (!spec.is_affine()) throw Error(ErrorCode::kUsage, "encode() needs an affine method");
    if (!is_floating(t.dtype)) {
      throw Error(ErrorCode::kUsage, tensor_label(t.name) + ": dtype " + std::string(dtype_name(t.dtype)) +
                                         " cannot be quantized");
    }
    const GroupGeometry g = group_geometry(t.shape, spec);
    if (g.groups == 0) return {};
    const AffineTensor stored{nullptr, job.scales, spec.method == Method::kSymmetric ? nullptr : job.mins, spec.bits,
                              g.stored_group_size, spec.scale_dtype};
    const std::uint64_t bad = first_nonfinite_group(stored, 0, g.groups);
    if (bad != g.groups) {
      throw Error(ErrorCode::kUsage, tensor_label(t.name) + ": group " + std::to_string(bad) +
                                         " was given a NaN or infinite scale or min");
    }
    const std::span<AffineParams> params = scratch_params(g.groups);
    load_params(stored, 0, g.groups, params);
    const std::uint64_t n = t.numel();
    const std::vector<std::uint64_t> bounds = split_elements(n, task_elements(n, pool_.size()));
    std::vector<ErrorStats> stats(bounds.size() - 1);
    pool_.parallel_for(stats.size(), [&](std::size_t i) {
      quantize_elements(t.dtype, t.data, g, params.data(), spec.bits, codec::Coverage::kMayClip, bounds[i],
                        bounds[i + 1], job.codes, &stats[i], t.name);
    });
    return merge_in_order(stats);
  }

  void dequantize_one(const AffineTensor& in, const MutableTensorView& out) {
    if (!is_floating(out.dtype)) {
      throw Error(ErrorCode::kUsage, tensor_label(out.name) + ": cannot decode into dtype " +
                                         std::string(dtype_name(out.dtype)));
    }
    const GroupGeometry g = stored_group_geometry(out.shape, in.stored_group_size, in.bits);
    const std::uint64_t n = out.numel();
    if (g.groups == 0) return;
    const std::span<AffineParams> params = scratch_params(g.groups);
    const std::vector<std::uint64_t> group_bounds = split_elements(g.groups, std::max<std::uint64_t>(1u << 14, g.groups / (4ull * pool_.size())));
    std::vector<std::uint64_t> bad(group_bounds.size() - 1);  // each task's first damaged group
    pool_.parallel_for(group_bounds.size() - 1, [&](std::size_t i) {
      bad[i] = first_nonfinite_group(in, group_bounds[i], group_bounds[i + 1]);
      load_params(in, group_bounds[i], group_bounds[i + 1], params);
    });
    for (std::size_t i = 0; i < bad.size(); ++i) {
      if (bad[i] != group_bounds[i + 1]) {
        throw Error(ErrorCode::kBadFormat, tensor_label(out.name) + ": group " + std::to_string(bad[i]) +
                                               " has a NaN or infinite scale or min (the container is damaged)");
      }
    }
    const std::vector<std::uint64_t> bounds = split_elements(n, task_elements(n, pool_.size()));
    const bool stream = n * dtype_size(out.dtype) >= kStreamingOutputBytes;
    pool_.parallel_for(bounds.size() - 1, [&](std::size_t i) {
      dequantize_elements(out.dtype, out.data, g, params.data(), in.bits, bounds[i], bounds[i + 1],
                          in.codes, stream);
    });
  }

  ErrorStats cast_one(const TensorView& in, const MutableTensorView& out, bool check_overflow) {
    if (!is_floating(in.dtype) || !is_floating(out.dtype)) {
      throw Error(ErrorCode::kUsage, tensor_label(in.name) + ": cast needs floating dtypes");
    }
    const std::uint64_t n = in.numel();
    const std::vector<std::uint64_t> bounds = split_elements(n, task_elements(n, pool_.size()));
    std::vector<ErrorStats> stats(bounds.size() - 1);
    pool_.parallel_for(stats.size(), [&](std::size_t i) {
      cast_elements(in.dtype, in.data, out.dtype, out.data, bounds[i], bounds[i + 1],
                    check_overflow, &stats[i], in.name);
    });
    return merge_in_order(stats);
  }

  ThreadPool pool_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(unsigned threads) {
  return std::make_unique<CpuBackend>(threads);
}

}  // namespace wq::detail
