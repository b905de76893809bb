// Running `wq-gpu sweep`: every setting quantized (and, with --eval, decoded and measured) in
// a private temporary folder, the table printed as the rows come.
#pragma once

#include <string>

#include "cli/quantize_flags.h"
#include "cli/sweep_settings.h"

namespace wq::cli {

struct SweepFlags {
  std::string model;
  QuantizeFlags base;  ///< MODEL as inputs[0]; policy, rules, read limits and backend as quantize's
  SweepLists lists;
  std::string eval;    ///< --eval CMD; empty: no --eval column and no baseline row
  std::string eval_name = "eval";
  std::string work_dir;
  std::string json;    ///< as QuantizeFlags::json: empty, "-" (stdout) or a file
  bool quiet = false;
};

/// Runs the sweep; returns the exit status (130 after Ctrl-C, once the temporary folder is
/// removed). Throws wq::Error for every other failure, after the same clean-up.
int run_sweep(const SweepFlags& flags);

}  // namespace wq::cli
