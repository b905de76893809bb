// Tree mode copies the files that are not checkpoints (config.json, tokenizer files, READMEs)
// so that the output is a complete model folder, with the same all-or-nothing guarantee as
// the containers.
#pragma once

#include <atomic>
#include <string>

namespace wq::detail {

/// Copies `input` to `output` through a temporary file + fsync + rename (detail::AtomicFile);
/// returns the input's XXH3-64 (16 hex digits), computed from the bytes copied. Polls
/// `cancel` between 1 MiB blocks. Throws Error(kInputMissing), Error(kOutput) or
/// Error(kInterrupted); on error no output appears.
std::string copy_file_atomically(const std::string& input, const std::string& output, const std::atomic<bool>* cancel);

}  // namespace wq::detail
