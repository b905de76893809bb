// Tree mode's --dry-run: the plan of every file (and of every tensor of the checkpoints), what
// is up to date, estimated sizes; nothing is written.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "cli/journal.h"
#include "cli/tree_walk.h"
#include "cli/work_shard.h"
#include "wq/pipeline.h"

namespace wq::cli {

/// Prints the plan of `units` on stdout and returns 0. `settings` is the fingerprint the
/// journal is checked against. Throws wq::Error for checkpoints that cannot be read.
int print_tree_plan(const std::vector<WorkUnit>& units, const QuantizeOptions& options, const std::string& settings,
                    const Journal& journal, const std::optional<WorkShard>& shard);

}  // namespace wq::cli
