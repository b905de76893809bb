// Checks made before an output is created, so a bad path fails before any work is done.
#pragma once

#include <atomic>
#include <string>

namespace wq::detail {

/// Throws Error(kOutput) when `output` names the same file as `input`, is an existing folder,
/// or lies in a folder that does not exist.
void check_output_path(const std::string& input, const std::string& output);

/// Throws Error(kInterrupted) when `cancel` is set.
void check_cancel(const std::atomic<bool>* cancel);

}  // namespace wq::detail
