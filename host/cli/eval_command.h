// `wq-gpu sweep --eval 'CMD {}'`: the user's own measure of a checkpoint (accuracy,
// perplexity, ...), run as a shell command, and the number it prints.
#pragma once

#include <atomic>
#include <optional>
#include <string>
#include <string_view>

namespace wq::cli {

/// What the command printed last that is a number: its value and its text as printed (the
/// table shows the text, so that the command's own rounding is kept).
struct EvalNumber {
  double value = 0.0;
  std::string text;
};

/// `command_template` with every "{}" replaced by `path`, quoted for /bin/sh.
std::string command_for(const std::string& command_template, const std::string& path);

/// The last token of `output` that is a floating-point number as a whole ("0.93", "-1e-3",
/// "+2", "inf"). Tokens are separated by white space and by , ; : = ( ) [ ] { } " ' % so
/// that "accuracy: 93.1%," and "loss=0.25" give their numbers. nullopt when there is none.
std::optional<EvalNumber> last_number(std::string_view output);

/// Runs `command_template` on `checkpoint` with /bin/sh -c and returns the last number it
/// printed on stdout. The command's stderr passes through; its stdin is /dev/null; it runs in
/// a process group of its own, which is terminated when *cancel becomes true (SIGINT/SIGTERM
/// to wq-gpu), and Error(kInterrupted) is thrown once it is gone. A command that exits with a
/// status other than 0, is killed by a signal or prints no number is Error(kUsage) naming
/// `setting` (the row it was run for), the command and what happened.
EvalNumber evaluate(const std::string& command_template, const std::string& checkpoint,
                    const std::string& setting, const std::atomic<bool>* cancel);

}  // namespace wq::cli
