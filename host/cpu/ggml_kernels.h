// The CPU backend's ggml block types: tensors quantized into and decoded from ggml blocks with
// the shared per-block arithmetic (include/wq/codec/ggml_legacy.h, ggml_kquants.h), spread
// over the thread pool. Nothing here re-spells that arithmetic; it only schedules it.
#pragma once

#include <cstdint>

#include "cpu/thread_pool.h"
#include "wq/backend.h"
#include "wq/codec/ggml_blocks.h"

namespace wq::detail {

/// Quantizes `count` float32 values into consecutive blocks of `type` at `out`
/// (count / block_elements * block_bytes bytes). `count` must be a multiple of the type's
/// block and `type` a quantized type; the caller checks both. `pool` may be null (one thread).
/// No statistics, no checks: the kernel alone (benchmarks, tests).
void quantize_ggml_blocks(codec::ggml::Type type, const float* x, std::uint64_t count, std::uint8_t* out,
                          ThreadPool* pool);

/// Decodes `count` values from consecutive blocks of `type`, exactly as ggml's
/// dequantize_row_* does.
void decode_ggml_blocks(codec::ggml::Type type, const std::uint8_t* blocks, std::uint64_t count, float* out,
                        ThreadPool* pool);

/// Backend::quantize_ggml for one checked job (check_ggml_quantize_job): any floating input
/// dtype, NaN/Inf refused naming the element, the error of the decoded values measured.
ErrorStats quantize_ggml_tensor(const GgmlQuantizeJob& job, ThreadPool& pool);

/// Backend::decode_ggml for one checked job, into any floating dtype.
void decode_ggml_tensor(const GgmlDecodeJob& job, ThreadPool& pool);

}  // namespace wq::detail
