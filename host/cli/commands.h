// The wq-gpu subcommands: each adds itself to the app and returns the function that runs it.
#pragma once

#include <functional>

#include <CLI/CLI.hpp>

namespace wq::cli {

using CommandRunner = std::function<int()>;

CommandRunner add_quantize_command(CLI::App& app);
CommandRunner add_decode_command(CLI::App& app);
CommandRunner add_inspect_command(CLI::App& app);
CommandRunner add_verify_command(CLI::App& app);
CommandRunner add_sweep_command(CLI::App& app);

}  // namespace wq::cli
