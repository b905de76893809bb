// wq-gpu: quantize, decode, inspect and verify neural-network checkpoints; sweep settings.
//
// Exit status: 0 success; 1 internal error; 2 usage (bad flags or values); 3 input missing or
// unreadable; 4 input not a valid checkpoint/container; 5 tensor values cannot be encoded
// (NaN/Inf, overflow); 6 output cannot be written; 7 checksum/integrity failure;
// 8 unsupported (e.g. --backend cuda without a device); 130 interrupted.
#include <csignal>
#include <cstdio>
#include <exception>
#include <string>
#include <map>

#include <fmt/core.h>

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "cli/error_text.h"
#include "wq/error.h"
#include "wq/version.h"

int main(int argc, char** argv) {
  CLI::App app{"wq-gpu: shrink neural-network checkpoints by weight quantization", "wq-gpu"};
  app.set_version_flag("--version", std::string("wq-gpu ") + wq::kVersion);
  app.require_subcommand(1);
  app.footer(
      "\nExit status: 0 ok, 2 usage, 3 input missing, 4 invalid input, 5 tensor cannot be\n"
      "encoded (NaN/Inf/overflow), 6 output not writable, 7 checksum mismatch, 8 unsupported,\n"
      "130 interrupted, 1 internal error. Run 'wq-gpu COMMAND --help' for each command.");
  const wq::cli::CommandRunner quantize = wq::cli::add_quantize_command(app);
  const wq::cli::CommandRunner decode = wq::cli::add_decode_command(app);
  const wq::cli::CommandRunner inspect = wq::cli::add_inspect_command(app);
  const wq::cli::CommandRunner verify = wq::cli::add_verify_command(app);
  const wq::cli::CommandRunner sweep = wq::cli::add_sweep_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    if (argc > 1 && argv[1][0] != '-' && app.get_subcommands({}).empty() &&
        std::string(argv[1]) != "quantize" && std::string(argv[1]) != "decode" &&
        std::string(argv[1]) != "inspect" && std::string(argv[1]) != "verify" && std::string(argv[1]) != "sweep") {
      fmt::print(stderr, "wq-gpu: error: unknown command '{}' (commands: quantize, decode, inspect, verify, sweep)\n",
                 argv[1]);
      return static_cast<int>(wq::ErrorCode::kUsage);
    }
    fmt::print(stderr, "wq-gpu: error: {}\nRun 'wq-gpu --help' or 'wq-gpu COMMAND --help' for usage.\n", e.what());
    return static_cast<int>(wq::ErrorCode::kUsage);
  }
  wq::cli::install_signal_handlers();
  // A file-size limit (ulimit -f) must surface as a write error (EFBIG) that removes the
  // temporary output, not as a signal that kills the process mid-write.
  std::signal(SIGXFSZ, SIG_IGN);
  try {
    if (app.got_subcommand("quantize")) return quantize();
    if (app.got_subcommand("decode")) return decode();
    if (app.got_subcommand("inspect")) return inspect();
    if (app.got_subcommand("verify")) return verify();
    if (app.got_subcommand("sweep")) return sweep();
  } catch (const wq::Error& e) {
    fmt::print(stderr, "wq-gpu: error: {}\n", wq::cli::error_text(e));
    return static_cast<int>(e.code());
  } catch (const std::bad_alloc&) {
    fmt::print(stderr, "wq-gpu: error: out of memory\n");
    return static_cast<int>(wq::ErrorCode::kInternal);
  } catch (const std::exception& e) {
    fmt::print(stderr, "wq-gpu: internal error: {}\n", e.what());
    return static_cast<int>(wq::ErrorCode::kInternal);
  }
  return static_cast<int>(wq::ErrorCode::kUsage);
}
