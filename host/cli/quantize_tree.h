// Tree mode of `wq-gpu quantize`: folders in, a mirrored folder out, resumable and shardable
// (wq::quantize_tree(), see wq/tree.h). This shows its progress and its report.
#pragma once

#include "cli/quantize_flags.h"

namespace wq::cli {

/// Runs tree mode for `flags` (inputs: folders and/or files, output: a folder). Returns the
/// exit status; throws wq::Error for failures (the message names the file).
int run_quantize_tree(const QuantizeFlags& flags, const QuantizeOptions& options);

}  // namespace wq::cli
