#include "tree/work_shard.h"

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <numeric>

#include "wq/error.h"

namespace wq::detail {
namespace {

std::optional<std::size_t> parse_index(const std::string& text) {
  std::size_t n = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return n;
}

[[noreturn]] void bad_shard(const std::string& source, const std::string& index_text, const std::string& count_text) {
  throw Error(ErrorCode::kUsage, source + ": shard '" + index_text + "' of '" + count_text +
                                     "' is not a valid I/N with 0 <= I < N");
}

TreeShard checked(const std::string& source, const std::string& index_text, const std::string& count_text) {
  const auto index = parse_index(index_text);
  const auto count = parse_index(count_text);
  if (!index || !count) bad_shard(source, index_text, count_text);
  const TreeShard shard{*index, *count, source};
  check_shard(shard);
  return shard;
}

const char* env(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : nullptr;
}

}  // namespace

void check_shard(const TreeShard& shard) {
  if (shard.count == 0 || shard.index >= shard.count) {
    bad_shard(shard.source, std::to_string(shard.index), std::to_string(shard.count));
  }
}

std::optional<TreeShard> select_work_shard(const std::string& spec, const std::string& source) {
  if (!spec.empty()) {
    const auto slash = spec.find('/');
    if (slash == std::string::npos) throw Error(ErrorCode::kUsage, source + " '" + spec + "': expected I/N, e.g. 0/4");
    return checked(source, spec.substr(0, slash), spec.substr(slash + 1));
  }
  if (const char* id = env("SLURM_ARRAY_TASK_ID")) {
    const char* count = env("SLURM_ARRAY_TASK_COUNT");
    if (count == nullptr) {
      throw Error(ErrorCode::kUsage, "SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not");
    }
    // Arrays may start anywhere (--array=1-8): shard = task id - first task id.
    const auto task = parse_index(id);
    const auto first = parse_index(env("SLURM_ARRAY_TASK_MIN") ? env("SLURM_ARRAY_TASK_MIN") : "0");
    if (!task || !first || *task < *first) {
      throw Error(ErrorCode::kUsage, std::string("SLURM_ARRAY_TASK_ID '") + id + "' is not a task number of this array");
    }
    return checked("SLURM_ARRAY_TASK_ID", std::to_string(*task - *first), count);
  }
  if (const char* index = env("JOB_COMPLETION_INDEX")) {
    const char* count = env("WQ_SHARD_COUNT");
    if (count == nullptr) {
      throw Error(ErrorCode::kUsage, "JOB_COMPLETION_INDEX is set but WQ_SHARD_COUNT is not (set it to the "
                                     "Job's completions)");
    }
    return checked("JOB_COMPLETION_INDEX", index, count);
  }
  return std::nullopt;
}

std::vector<std::size_t> assign_shards(const std::vector<WorkUnit>& units, std::size_t count) {
  std::vector<std::size_t> order(units.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return units[a].bytes > units[b].bytes; });
  std::vector<std::uint64_t> load(count, 0);
  std::vector<std::size_t> shard_of(units.size(), 0);
  for (const std::size_t u : order) {
    const std::size_t lightest = static_cast<std::size_t>(std::min_element(load.begin(), load.end()) - load.begin());
    shard_of[u] = lightest;
    load[lightest] += units[u].bytes;
  }
  return shard_of;
}

}  // namespace wq::detail

namespace wq {

std::optional<TreeShard> select_tree_shard(const std::string& spec, const std::string& source) {
  return detail::select_work_shard(spec, source);
}

}  // namespace wq
