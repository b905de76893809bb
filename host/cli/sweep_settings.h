// The rows of `wq-gpu sweep`: its comma lists (--bits 8,4 --method minmax,mse ...) and the
// quantize settings they expand to, one per row.
#pragma once

#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli/quantize_flags.h"
#include "wq/pipeline.h"

namespace wq::cli {

/// The list flags as given (checked by comma_list_of() when parsed).
struct SweepLists {
  std::string bits = "8,7,6,5,4,3,2";
  std::string methods = "minmax,symmetric,mse";
  std::string granularities = "channel";
  std::string group_sizes = "128";
};

/// One row: the flags `wq-gpu quantize` would be given for it and the options they make.
struct SweepSetting {
  QuantizeFlags flags;
  QuantizeOptions options;
};

/// A CLI11 check of a comma list: not empty, no empty item, every item passing `item` (the
/// check quantize gives the one-value flag, so that both accept the same values).
CLI::Validator comma_list_of(const CLI::Validator& item);

std::vector<std::string> split_commas(const std::string& list);

/// Every row, in the order of the lists: for each bits, each method, each granularity (for
/// group, each group size). A cast (fp16, bf16) has no bits or granularity: it gives one row,
/// in the place of its first bits. Each row's options come from options_from_flags() with
/// `base` (policy, rules, read limits) and that row's values, so rules parse against them as
/// quantize would parse them; all are made, and so validated, before any file is touched.
/// Throws what options_from_flags() throws: Error(kUsage) for a bad rule, Error(kUnsupported)
/// for a method this build does not have.
std::vector<SweepSetting> expand_settings(const QuantizeFlags& base, const SweepLists& lists);

/// True for fp16 and bf16: one row, no bits or granularity.
bool is_cast_method(const std::string& method);

/// The row as quantize flags, to name it in progress and errors and to repeat it with
/// `wq-gpu quantize`: "--method minmax --bits 4 --granularity group --group-size 64".
std::string setting_flags_text(const QuantizeFlags& flags);

/// The row in few characters, for the progress line: "minmax 4b group 64", "fp16".
std::string setting_short_text(const QuantizeFlags& flags);

}  // namespace wq::cli
