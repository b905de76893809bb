#include "cpu/ggml_kernels.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "cpu/element_io.h"
#include "cpu/cpu_features.h"
#include "cpu/ggml_kquant_lanes.h"
#include "cpu/ggml_legacy_avx2.h"
#include "cpu/ggml_legacy_decode_avx2.h"
#include "cpu/ggml_legacy_search_avx2.h"
#include "cpu/lanes.h"
#include "wq/codec/ggml_kquants.h"
#include "wq/codec/ggml_legacy.h"
#include "wq/codec/ggml_legacy_search.h"
#include "wq/error.h"

namespace wq::detail {
namespace {

namespace ggml = codec::ggml;

// Work is handed out in runs of blocks big enough to amortise the pool's dispatch (a k-quant
// block costs microseconds, a legacy one tens of nanoseconds).
constexpr std::uint64_t kValuesPerTask = 1u << 16;

template <typename Function>
void for_each_run(std::uint64_t blocks, std::uint64_t blocks_per_task, ThreadPool* pool, const Function& run) {
  const std::uint64_t tasks = (blocks + blocks_per_task - 1) / blocks_per_task;
  auto task = [&](std::size_t t) {
    const std::uint64_t first = t * blocks_per_task;
    run(t, first, std::min(blocks, first + blocks_per_task));
  };
  if (pool == nullptr || tasks <= 1) {
    for (std::uint64_t t = 0; t < tasks; ++t) task(t);
  } else {
    pool->parallel_for(tasks, task);
  }
}

// One block with the codec, or with a vector spelling where there is one (Q8_0, Q4_0, Q4_1,
// Q5_0, Q5_1 on AVX2: cpu/ggml_legacy_avx2.h, which says why it gives the same bytes). The
// k-quants never come here: quantize_blocks_at_once() takes them all.
template <typename Block>
void quantize_one(const float* x, Block* y) {
  if constexpr (std::is_same_v<Block, ggml::BlockQ8_0>) {
    use_avx2() ? quantize_q8_0_avx2(x, y) : ggml::quantize_block(x, y);
  } else if constexpr (std::is_same_v<Block, ggml::BlockQ4_0>) {
    use_avx2() ? quantize_q4_0_avx2(x, y) : ggml::quantize_block(x, y);
  } else if constexpr (std::is_same_v<Block, ggml::BlockQ4_1>) {
    use_avx2() ? quantize_q4_1_avx2(x, y) : ggml::quantize_block(x, y);
  } else if constexpr (std::is_same_v<Block, ggml::BlockQ5_0>) {
    use_avx2() ? quantize_q5_0_avx2(x, y) : ggml::quantize_block(x, y);
  } else if constexpr (std::is_same_v<Block, ggml::BlockQ5_1>) {
    use_avx2() ? quantize_q5_1_avx2(x, y) : ggml::quantize_block(x, y);
  } else {
    ggml::quantize_block(x, y);
  }
}

// Blocks [0, n) of x into `out` several at a time where a type has such a path (the k-quants:
// cpu/ggml_kquant_lanes.h; the legacy types on AVX2 with F16C: cpu/ggml_legacy_avx2.h); false
// where it has none. Q3_K also writes the values its blocks decode to where `values` is not
// null (for quantize_tensor()'s statistics); every other type ignores it.
template <typename Block>
bool quantize_blocks_at_once(const float* x, std::uint64_t n, std::uint8_t* out, float* values = nullptr) {
  if constexpr (std::is_same_v<Block, ggml::BlockQ4_K>) {
    quantize_q4_k_lanes(x, n, out);
    return true;
  } else if constexpr (std::is_same_v<Block, ggml::BlockQ5_K>) {
    quantize_q5_k_lanes(x, n, out);
    return true;
  } else if constexpr (std::is_same_v<Block, ggml::BlockQ3_K>) {
    quantize_q3_k_lanes(x, n, out, values);
    return true;
  } else if constexpr (std::is_same_v<Block, ggml::BlockQ2_K>) {
    quantize_q2_k_lanes(x, n, out);
    return true;
  } else if constexpr (std::is_same_v<Block, ggml::BlockQ6_K>) {
    quantize_q6_k_lanes(x, n, out);
    return true;
  }
  if (!use_f16c()) return false;  // implies AVX2
  if constexpr (std::is_same_v<Block, ggml::BlockQ8_0>) {
    quantize_q8_0_blocks_avx2(x, n, out);
  } else if constexpr (std::is_same_v<Block, ggml::BlockQ4_0>) {
    quantize_q4_0_blocks_avx2(x, n, out);
  } else if constexpr (std::is_same_v<Block, ggml::BlockQ4_1>) {
    quantize_q4_1_blocks_avx2(x, n, out);
  } else if constexpr (std::is_same_v<Block, ggml::BlockQ5_0>) {
    quantize_q5_0_blocks_avx2(x, n, out);
  } else if constexpr (std::is_same_v<Block, ggml::BlockQ5_1>) {
    quantize_q5_1_blocks_avx2(x, n, out);
  } else {
    return false;
  }
  return true;
}

// The legacy types' eight blocks (one statistics chunk) and their statistics at once, on AVX2
// with F16C (cpu/ggml_legacy_avx2.h); false where the caller must decode the written blocks.
template <typename Block>
constexpr bool kHasChunkWithStats = Block::kElements == ggml::kLegacyBlock;  // the legacy types

template <typename Block>
bool quantize_chunk_with_stats(const float* x, std::uint8_t* out, WideLaneStats* stats) {
  if constexpr (std::is_same_v<Block, ggml::BlockQ8_0>) return quantize_q8_0_chunk_avx2(x, out, stats);
  if constexpr (std::is_same_v<Block, ggml::BlockQ4_0>) return quantize_q4_0_chunk_avx2(x, out, stats);
  if constexpr (std::is_same_v<Block, ggml::BlockQ4_1>) return quantize_q4_1_chunk_avx2(x, out, stats);
  if constexpr (std::is_same_v<Block, ggml::BlockQ5_0>) return quantize_q5_0_chunk_avx2(x, out, stats);
  if constexpr (std::is_same_v<Block, ggml::BlockQ5_1>) return quantize_q5_1_chunk_avx2(x, out, stats);
  return false;
}

template <typename Block>
void quantize_run(const float* x, std::uint64_t count, std::uint8_t* out, ThreadPool* pool) {
  const std::uint64_t blocks = count / Block::kElements;
  for_each_run(blocks, kValuesPerTask / Block::kElements, pool, [&](std::size_t, std::uint64_t first, std::uint64_t last) {
    if (quantize_blocks_at_once<Block>(x + first * Block::kElements, last - first, out + first * sizeof(Block))) return;
    for (std::uint64_t b = first; b < last; ++b) {
      Block block;  // built aligned, then copied: `out` need not be aligned for Block
      quantize_one(x + b * Block::kElements, &block);
      std::memcpy(out + b * sizeof(Block), &block, sizeof(Block));
    }
  });
}

// Blocks [0, n) at `in` (unaligned) into out: the legacy types on AVX2 with F16C
// (cpu/ggml_legacy_decode_avx2.h), the codec's decode_block() otherwise.
template <typename Block>
void decode_blocks(const std::uint8_t* in, std::uint64_t n, float* out) {
  if (use_f16c()) {
    if constexpr (std::is_same_v<Block, ggml::BlockQ8_0>) return decode_q8_0_blocks_avx2(in, n, out);
    if constexpr (std::is_same_v<Block, ggml::BlockQ4_0>) return decode_q4_0_blocks_avx2(in, n, out);
    if constexpr (std::is_same_v<Block, ggml::BlockQ4_1>) return decode_q4_1_blocks_avx2(in, n, out);
    if constexpr (std::is_same_v<Block, ggml::BlockQ5_0>) return decode_q5_0_blocks_avx2(in, n, out);
    if constexpr (std::is_same_v<Block, ggml::BlockQ5_1>) return decode_q5_1_blocks_avx2(in, n, out);
  }
  for (std::uint64_t b = 0; b < n; ++b) {
    Block block;
    std::memcpy(&block, in + b * sizeof(Block), sizeof(Block));
    ggml::decode_block(block, out + b * Block::kElements);
  }
}

template <typename Block>
void decode_run(const std::uint8_t* in, std::uint64_t count, float* out, ThreadPool* pool) {
  const std::uint64_t blocks = count / Block::kElements;
  for_each_run(blocks, kValuesPerTask / Block::kElements, pool, [&](std::size_t, std::uint64_t first, std::uint64_t last) {
    decode_blocks<Block>(in + first * sizeof(Block), last - first, out + first * Block::kElements);
  });
}

[[noreturn]] void refuse_nonfinite(std::string_view tensor, std::uint64_t index, float x) {
  throw Error(ErrorCode::kBadData, "tensor '" + std::string(tensor) + "': element " + std::to_string(index) + " is " +
                                       (std::isnan(x) ? "NaN" : x > 0 ? "+infinity" : "-infinity") +
                                       " (ggml block types hold finite values only)");
}

// The error statistics are summed in binary32 lanes over chunks of this many elements, then
// folded into binary64; a chunk whose sums are not finite (a NaN or infinity, which is then
// refused, or squares beyond binary32) is summed again in binary64.
constexpr int kStatsChunk = 256;

// The binary32 lane sums of one chunk (a multiple of 8 elements), folded: L lanes, compiled for
// AVX2 and for the baseline (the vector compares of the maximum are scalarised otherwise).
template <int L>
WQ_INLINE ErrorStats lane_stats(const float* x, const float* decoded, int count) {
  LaneStats<L> lanes;
  for (int i = 0; i < count; i += L) {
    FloatLanes<L> xv, dv;
    std::memcpy(&xv, x + i, sizeof xv);
    std::memcpy(&dv, decoded + i, sizeof dv);
    lanes.add(xv, dv);
  }
  ErrorStats s;
  lanes.fold_into(&s, static_cast<std::uint64_t>(count));
  return s;
}
__attribute__((target("avx2"))) ErrorStats lane_stats_avx2(const float* x, const float* decoded, int count) {
  return lane_stats<8>(x, decoded, count);
}
ErrorStats lane_stats_baseline(const float* x, const float* decoded, int count) {
  return lane_stats<4>(x, decoded, count);
}

template <typename Block, DType D>
ErrorStats quantize_tensor(const GgmlQuantizeJob& job, ThreadPool& pool) {
  // The statistics are summed per chunk; at least two blocks: Q4_K and Q5_K search pairs of
  // super-blocks together (cpu/ggml_kquant_lanes.h), and a chunk of one would never pair.
  constexpr int kBlocksPerChunk = kStatsChunk / Block::kElements > 1 ? kStatsChunk / Block::kElements : 2;
  constexpr int kChunk = kBlocksPerChunk * Block::kElements;
  // Blocks are quantized a batch of whole chunks at a time: the k-quants' lanes take
  // kKQuantBatchBlocks (Q3_K's refinement queue spans them), the others one chunk. The chunks,
  // and so the statistics' sums, do not depend on the batch.
  constexpr int kBatchBlocks = Block::kElements == ggml::kSuperBlock ? kKQuantBatchBlocks : kBlocksPerChunk;
  static_assert(kBatchBlocks % kBlocksPerChunk == 0);
  const std::uint64_t blocks = job.input.numel() / Block::kElements;
  const std::uint64_t per_task = kValuesPerTask / Block::kElements;
  std::vector<ErrorStats> parts((blocks + per_task - 1) / per_task);
  for_each_run(blocks, per_task, &pool, [&](std::size_t t, std::uint64_t first, std::uint64_t last) {
    ErrorStats stats;
    WideLaneStats chunk_sums;  // the legacy types' chunks summed inside their kernels
    float widened[kBatchBlocks * Block::kElements];
    float decoded[kChunk];
    // Q3_K's kernel gives the values its blocks decode to, for the statistics below (decoding
    // its blocks again was a fifth of its time through this function; Xeon).
    constexpr bool kKernelValues = std::is_same_v<Block, ggml::BlockQ3_K>;
    float kernel_values[kKernelValues ? kBatchBlocks * Block::kElements : 1];
    // Aligned float32 input is read where it lies; other input is widened (or copied) first. The
    // copy was a fifth of Q8_0's time with statistics: the first touch of data from memory, by
    // `rep movs`, without the kernels' prefetch.
    const bool in_place = D == DType::kF32 && reinterpret_cast<std::uintptr_t>(job.input.data) % alignof(float) == 0;
    for (std::uint64_t batch = first; batch < last; batch += kBatchBlocks) {
      const int batch_blocks = static_cast<int>(std::min<std::uint64_t>(kBatchBlocks, last - batch));
      const std::uint64_t batch_base = batch * Block::kElements;
      const int batch_count = batch_blocks * Block::kElements;
      const float* x = widened;
      if (in_place) {
        x = reinterpret_cast<const float*>(job.input.data) + batch_base;
      } else if constexpr (D == DType::kF32) {
        std::memcpy(widened, job.input.data + 4 * batch_base, 4 * static_cast<std::size_t>(batch_count));
      } else {
        for (int i = 0; i < batch_count; ++i) widened[i] = load_f32<D>(job.input.data, batch_base + i);
      }
      // The legacy types on AVX2 with F16C: a batch is one chunk, quantized with its statistics
      // at once (decoding the blocks again took two fifths of Q8_0's time, a third of Q4_0's).
      // The blocks are written either way; a chunk whose sums are not finite, or that the
      // function leaves, is decoded and summed below.
      bool written = false;
      if constexpr (kHasChunkWithStats<Block>) {
        static_assert(kBatchBlocks == 8 && kChunk == 256);
        if (!job.search && batch_blocks == kBatchBlocks && use_f16c()) {
          if (quantize_chunk_with_stats<Block>(x, job.blocks + batch * sizeof(Block), &chunk_sums)) continue;
          written = true;
        }
      }
      // A NaN or infinity is found through the statistics below, before anything is returned;
      // every block code tolerates one (bounded loops, clamped codes).
      // The values of the written blocks, where the kernel gives them (Q3_K always writes its
      // blocks at once, so they are there whenever it writes them).
      float* const values = kKernelValues && !written && !job.search ? kernel_values : nullptr;
      written = written || (!job.search && quantize_blocks_at_once<Block>(x, static_cast<std::uint64_t>(batch_blocks),
                                                                          job.blocks + batch * sizeof(Block), values));
      for (int c = 0; c < batch_blocks; c += kBlocksPerChunk) {
        const int n = std::min(kBlocksPerChunk, batch_blocks - c);
        const int count = n * Block::kElements;
        const std::uint64_t base = batch_base + static_cast<std::uint64_t>(c) * Block::kElements;
        const float* const xc = x + c * Block::kElements;
        std::uint8_t* const chunk_blocks = job.blocks + (batch + static_cast<std::uint64_t>(c)) * sizeof(Block);
        for (int k = 0; k < n && !written; ++k) {
          Block block;  // built aligned, then copied
          if constexpr (ggml::kHasSearch<Block>) {
            if (!job.search) {
              quantize_one(xc + k * Block::kElements, &block);
            } else if (use_avx2()) {
              ggml::search_block(xc + k * Block::kElements, &block, Avx2SearchKernels{});
            } else {
              ggml::search_block(xc + k * Block::kElements, &block);
            }
          } else {
            quantize_one(xc + k * Block::kElements, &block);  // check_ggml_quantize_job() refused a search
          }
          std::memcpy(chunk_blocks + k * sizeof(Block), &block, sizeof(Block));
        }
        // The statistics are those of the values the written blocks decode to.
        const float* chunk_values = decoded;
        if (values != nullptr) {
          chunk_values = values + c * Block::kElements;
        } else {
          decode_blocks<Block>(chunk_blocks, static_cast<std::uint64_t>(n), decoded);
        }
        ErrorStats chunk =
            use_avx2() ? lane_stats_avx2(xc, chunk_values, count) : lane_stats_baseline(xc, chunk_values, count);
        if (!std::isfinite(chunk.signal_energy) || !std::isfinite(chunk.error_energy)) {
          chunk = ErrorStats{};
          chunk.count = static_cast<std::uint64_t>(count);
          for (int i = 0; i < count; ++i) {
            if (!codec::is_finite(xc[i])) refuse_nonfinite(job.input.name, base + i, xc[i]);
            const double v = xc[i], e = v - static_cast<double>(chunk_values[i]);
            chunk.signal_energy += v * v;
            chunk.error_energy += e * e;
            chunk.max_abs_error = std::max(chunk.max_abs_error, std::fabs(e));
          }
        }
        stats.merge(chunk);
      }
    }
    stats.merge(chunk_sums.folded());
    parts[t] = stats;
  });
  ErrorStats total;
  for (const ErrorStats& s : parts) total.merge(s);  // fixed order: reproducible sums
  return total;
}

template <typename Block, DType D>
void decode_tensor(const GgmlDecodeJob& job, ThreadPool& pool) {
  const std::uint64_t blocks = job.out.numel() / Block::kElements;
  for_each_run(blocks, kValuesPerTask / Block::kElements, &pool, [&](std::size_t, std::uint64_t first, std::uint64_t last) {
    if constexpr (D == DType::kF32) {
      decode_blocks<Block>(job.blocks + first * sizeof(Block), last - first,
                           reinterpret_cast<float*>(job.out.data) + first * Block::kElements);
      return;
    }
    float decoded[Block::kElements];
    for (std::uint64_t b = first; b < last; ++b) {
      decode_blocks<Block>(job.blocks + b * sizeof(Block), 1, decoded);
      for (int i = 0; i < Block::kElements; ++i) store_f32<D>(job.out.data, b * Block::kElements + i, decoded[i]);
    }
  });
}

// Runs f(Block{}) for a block type; a plain type here is a bug of the caller, which checks.
template <typename Visitor>
void with_block_type(ggml::Type type, const Visitor& f) {
  if (!ggml::visit_block_type(type, f)) {
    throw Error(ErrorCode::kInternal, "ggml kernels called with a type that is not a block type");
  }
}

}  // namespace

void quantize_ggml_blocks(ggml::Type type, const float* x, std::uint64_t count, std::uint8_t* out, ThreadPool* pool) {
  with_block_type(type, [&](auto tag) { quantize_run<decltype(tag)>(x, count, out, pool); });
}

void decode_ggml_blocks(ggml::Type type, const std::uint8_t* blocks, std::uint64_t count, float* out,
                        ThreadPool* pool) {
  with_block_type(type, [&](auto tag) { decode_run<decltype(tag)>(blocks, count, out, pool); });
}

ErrorStats quantize_ggml_tensor(const GgmlQuantizeJob& job, ThreadPool& pool) {
  ErrorStats stats;
  with_block_type(job.type, [&](auto tag) {
    stats = dispatch_floating(job.input.dtype,
                              [&]<DType D>() { return quantize_tensor<decltype(tag), D>(job, pool); });
  });
  return stats;
}

void decode_ggml_tensor(const GgmlDecodeJob& job, ThreadPool& pool) {
  with_block_type(job.type, [&](auto tag) {
    dispatch_floating(job.out.dtype, [&]<DType D>() { decode_tensor<decltype(tag), D>(job, pool); });
  });
}

}  // namespace wq::detail
