// Tree mode of `wq-gpu quantize`: folders in, a mirrored folder out (see tree_walk.h), with a
// journal for resuming (journal.h), --shard for scale-out (work_shard.h) and a report for the
// whole tree (tree_report.h).
#pragma once

#include "cli/quantize_flags.h"

namespace wq::cli {

/// Runs tree mode for `flags` (inputs: folders and/or files, output: a folder). Returns the
/// exit status; throws wq::Error for failures (the message names the file).
int run_quantize_tree(const QuantizeFlags& flags, const QuantizeOptions& options);

}  // namespace wq::cli
