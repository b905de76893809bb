// --dry-run: what quantize would do with each tensor of a checkpoint, and which rule decided.
#pragma once

#include <string>

#include "wq/pipeline.h"

namespace wq::cli {

/// One line per tensor of `plan` (from wq::plan_quantize): name, dtype, shape, the encoding
/// with its spec, bytes in and (estimated) out, and the rule that chose it ("default" when
/// none matched).
std::string plan_tensor_lines(const QuantizeReport& plan, const QuantizeOptions& options);

}  // namespace wq::cli
