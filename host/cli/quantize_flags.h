// The flags of `wq-gpu quantize`, shared by the one-file path (cmd_quantize.cpp) and tree mode
// (quantize_tree.cpp), and how they become QuantizeOptions.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/cli_common.h"
#include "wq/pipeline.h"

namespace wq::cli {

struct QuantizeFlags {
  std::vector<std::string> inputs;
  std::string output;
  int bits = 8;
  std::string method = "minmax";
  std::string granularity = "channel";
  std::uint64_t group_size = 128;
  std::string scale_dtype = "f32";
  std::string type;  ///< --type: a ggml type (or a llama-quantize mix such as Q4_K_M); empty: --method decides
  std::string preset;  ///< --preset: a llama-quantize file type, mixes and plain names alike
  std::string to;    ///< --to: "wq", "gguf" or "compressed-tensors"; empty: from the output's name (*.gguf)
  std::string scheme;  ///< --scheme (compressed-tensors): W4A16, W4A16_ASYM, W8A16, W8A16_ASYM; empty: W4A16
  std::vector<std::string> ignore;  ///< --ignore (compressed-tensors): module globs added to the defaults
  /// Which of the flags that compressed-tensors output decides otherwise were given.
  bool bits_given = false, method_given = false, granularity_given = false, group_size_given = false,
       scale_dtype_given = false;
  bool allow_requantize = false;
  bool gguf_long_names = false;
  bool all = false;
  bool keep_nonfinite = false;
  /// Empty: no JSON; "-": the report as JSON on stdout (--json); else a file (--json=FILE).
  std::string json;
  bool per_tensor = false;
  bool quiet = false;
  bool dry_run = false;
  bool force = false;
  bool copy_unreadable = false;  ///< tree mode: copy checkpoint-like files that cannot be read
  std::string shard;  ///< "I/N" or empty
  unsigned jobs = 0;  ///< tree mode: files worked on at once; 0 = decided by the run (tree_jobs)
  std::vector<int> devices;  ///< tree mode: CUDA devices the jobs are spread over (--devices)
  /// --rule and --keep in command-line order, each as ("rule"|"keep", text).
  std::vector<std::pair<std::string, std::string>> rule_args;
  std::vector<std::string> rule_files;
  std::uint64_t max_view_expansion = ReadOptions::kDefaultMaxExpandedViewBytes;
  BackendFlags backend;
};

/// The values --method, --granularity and --scale-dtype accept.
inline const std::vector<std::string> kMethodNames = {"minmax", "symmetric", "mse", "fp16", "bf16"};
inline const std::vector<std::string> kGranularityNames = {"tensor", "channel", "group"};
inline const std::vector<std::string> kScaleDTypeNames = {"f32", "f16"};

/// The check of --group-size: a whole number of at least 1.
CLI::Validator group_size_check();

/// Adds the flags that decide which tensors are encoded and which rules change how (--all,
/// --keep-nonfinite, --rule, --keep, --rules): quantize and sweep take the same. --rule and
/// --keep land in `rules` and `keeps`; collect_rule_args() then puts them in `flags` in
/// command-line order.
void add_tensor_policy_flags(CLI::App& cmd, QuantizeFlags& flags, std::vector<std::string>& rules,
                             std::vector<std::string>& keeps);

/// --rule and --keep keep their command-line order (first match wins), which CLI11 only
/// records in parse_order(): fills flags.rule_args from it.
void collect_rule_args(CLI::App& cmd, QuantizeFlags& flags, const std::vector<std::string>& rules,
                       const std::vector<std::string>& keeps);

/// The options the flags ask for, rules included, validated (throws Error(kUsage) naming the
/// bad flag, rule or rule file) before any file is touched. cancel/on_progress are left empty.
QuantizeOptions options_from_flags(const QuantizeFlags& flags);

}  // namespace wq::cli
