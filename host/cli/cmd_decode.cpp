// wq-gpu decode FILE -o OUT
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

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

namespace fs = std::filesystem;

// A model folder (a compressed-tensors export) stands for its checkpoint: its one shard index,
// or its one safetensors file.
std::string checkpoint_in_folder(const std::string& folder) {
  std::vector<std::string> indexes, files;
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(folder, ec)) {
    const std::string name = e.path().filename().string();
    if (name.ends_with(".safetensors.index.json")) indexes.push_back(e.path().string());
    if (name.ends_with(".safetensors")) files.push_back(e.path().string());
  }
  if (ec) throw Error(ErrorCode::kInputMissing, folder + ": cannot read: " + ec.message());
  if (indexes.size() == 1) return indexes[0];
  if (indexes.empty() && files.size() == 1) return files[0];
  throw Error(ErrorCode::kUsage, folder + ": a folder decodes when it holds one checkpoint (one *.safetensors.index.json, "
                                          "or one *.safetensors file); name the file instead");
}

int run_decode(const DecodeFlags& given) {
  DecodeFlags f = given;
  std::error_code ec;
  if (fs::is_directory(f.input, ec)) f.input = checkpoint_in_folder(f.input);
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
  CLI::App* cmd = app.add_subcommand("decode", "Decode a WQ container (or a GGUF, or a compressed-tensors checkpoint) "
                                               "back to a full-precision checkpoint");
  cmd->footer(
      "\nEvery tensor comes back with its original name, dtype and shape; checksums are verified\n"
      "first. Quantized tensors decode to scale * code + min (one rounding), cast ones widen.\n"
      "A GGUF file decodes its ggml block types as ggml does. A compressed-tensors pack-quantized\n"
      "checkpoint (vLLM's W4A16/W8A16 format, as wq or llm-compressor writes it; a safetensors file,\n"
      "its shard index or the model folder) gives each Linear weight back as MODULE.weight in its\n"
      "scale's dtype, (code - zero point) * scale as compressed-tensors computes it; the bits come\n"
      "from the folder's config.json.\n\n"
      "Examples:\n  wq-gpu decode model.wq.safetensors -o model.decoded.safetensors\n"
      "  wq-gpu decode Llama-3.1-8B-W4A16/ -o llama-w4a16-decoded.safetensors\n");
  cmd->add_option("input", flags->input,
                  "WQ container (*.wq.safetensors), GGUF file, or compressed-tensors checkpoint (file, index or "
                  "model folder)")
      ->required();
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
