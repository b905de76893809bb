// The CPU backend's compressed-tensors (pack-quantized) quantizer: the shared arithmetic of
// include/wq/codec/pack_quantized.h, scheduled over the thread pool in runs of 32 rows (the
// zero points are packed down the rows, 32 to `bits` words, so a run owns whole words).
#pragma once

#include "cpu/thread_pool.h"
#include "wq/backend.h"

namespace wq::detail {

/// Backend::quantize_packed for one job (checked here): NaN/Inf and F16 range overflow
/// refused naming the element or group, the error of the decoded values measured.
ErrorStats quantize_packed_tensor(const PackQuantizeJob& job, ThreadPool& pool);

}  // namespace wq::detail
