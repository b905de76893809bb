// Tree mode, scale-out: N processes (a Slurm array, a Kubernetes Indexed Job, or plain
// --shard I/N) split the tree's work units so that together they do each exactly once.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "cli/tree_walk.h"

namespace wq::cli {

struct WorkShard {
  std::size_t index = 0;
  std::size_t count = 1;
  std::string source;  ///< "--shard", "SLURM_ARRAY_TASK_ID", ... (for messages)
};

/// The shard this process does: `--shard I/N` when given, else the environment
/// (SLURM_ARRAY_TASK_ID minus SLURM_ARRAY_TASK_MIN, of SLURM_ARRAY_TASK_COUNT; or
/// JOB_COMPLETION_INDEX of WQ_SHARD_COUNT), else nullopt (everything). Throws Error(kUsage)
/// naming the flag or variable when it is malformed or out of range.
std::optional<WorkShard> select_work_shard(const std::string& flag);

/// Which shard each unit belongs to: units sorted by input bytes, largest first (ties: by
/// path, the order of `units`), each given to the shard with the fewest bytes so far (ties:
/// the lowest index). Deterministic: every process computes the same assignment.
std::vector<std::size_t> assign_shards(const std::vector<WorkUnit>& units, std::size_t count);

}  // namespace wq::cli
