// Tree mode's --dry-run: the plan of every file (and of every tensor of the checkpoints), what
// is up to date, estimated sizes; nothing is written.
#pragma once

#include <optional>
#include <vector>

#include "wq/tree.h"

namespace wq::cli {

/// Prints wq::plan_tree()'s `entries` on stdout.
void print_tree_plan(const std::vector<TreePlanEntry>& entries, const QuantizeOptions& options,
                     const std::optional<TreeShard>& shard);

}  // namespace wq::cli
