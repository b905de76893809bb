// wq-gpu decode FILE -o OUT
#include <memory>

#include <fmt/core.h>

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "wq/error.h"
#include "wq/pipeline.h"

namespace wq::cli {
namespace {

struct DecodeFlags {
  std::string input;
  std::string output;
  std::string to;
  bool quiet = false;
  BackendFlags backend;
};

int run_decode(const DecodeFlags& f) {
  BackendSelection selection = select_backend(f.backend, f.quiet);
  DecodeOptions options;
  options.cancel = cancel_flag();
  options.format = f.to;
  options.on_progress = progress_printer("decoding", f.quiet);
  try {
    decode_file(f.input, f.output, *selection.backend, options);
  } catch (...) {
    finish_progress();
    throw;
  }
  finish_progress();
  if (!f.quiet) fmt::print("{} -> {}\n", f.input, f.output);
  return 0;
}

}  // namespace

CommandRunner add_decode_command(CLI::App& app) {
  auto flags = std::make_shared<DecodeFlags>();
  CLI::App* cmd = app.add_subcommand("decode", "Decode a WQ container back to a full-precision checkpoint");
  cmd->footer(
      "\nEvery tensor comes back with its original name, dtype and shape; checksums are verified\n"
      "first. Quantized tensors decode to scale * code + min (one rounding), cast ones widen.\n\n"
      "Example:\n  wq-gpu decode model.wq.safetensors -o model.decoded.safetensors\n");
  cmd->add_option("input", flags->input, "WQ container (*.wq.safetensors)")->required();
  cmd->add_option("-o,--output", flags->output, "Output file; replaced atomically if it exists")->required();
  cmd->add_option("--to", flags->to,
                  "Output format: safetensors, pt (torch.load, weights_only=True), pdparams (paddle.load / "
                  "pickle.load), npz (numpy.load). Default: the format the container was made from")
      ->check(CLI::IsMember({"safetensors", "pt", "pdparams", "npz"}));
  cmd->add_flag("-q,--quiet", flags->quiet, "Print nothing but errors");
  add_backend_flags(*cmd, flags->backend);
  return [flags] { return run_decode(*flags); };
}

}  // namespace wq::cli
