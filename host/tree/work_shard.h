// Tree mode, scale-out: N processes (a Slurm array, a Kubernetes Indexed Job, or a plain
// TreeShard I/N) split the tree's work units so that together they do each exactly once.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "tree/tree_walk.h"
#include "wq/tree.h"

namespace wq::detail {

/// Throws Error(kUsage) naming shard.source unless 0 <= index < count.
void check_shard(const TreeShard& shard);

/// wq::select_tree_shard() (see wq/tree.h).
std::optional<TreeShard> select_work_shard(const std::string& spec, const std::string& source);

/// Which shard each unit belongs to: units sorted by input bytes, largest first (ties: by
/// path, the order of `units`), each given to the shard with the fewest bytes so far (ties:
/// the lowest index). Deterministic: every process computes the same assignment.
std::vector<std::size_t> assign_shards(const std::vector<WorkUnit>& units, std::size_t count);

}  // namespace wq::detail
