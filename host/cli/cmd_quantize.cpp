// wq-gpu quantize FILE -o OUT
#include <filesystem>
#include <memory>

#include <fmt/core.h>

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "cli/report_table.h"
#include "wq/error.h"
#include "wq/pipeline.h"

namespace wq::cli {
namespace {

struct QuantizeFlags {
  std::vector<std::string> inputs;
  std::string output;
  int bits = 8;
  std::string method = "minmax";
  std::string granularity = "channel";
  std::uint64_t group_size = 128;
  std::string scale_dtype = "f32";
  bool all = false;
  bool keep_nonfinite = false;
  bool json = false;
  bool per_tensor = false;
  bool quiet = false;
  BackendFlags backend;
};

int run_quantize(const QuantizeFlags& f) {
  if (f.inputs.size() != 1) {
    throw Error(ErrorCode::kUsage, "quantize takes exactly one input file in this version");
  }
  const std::string& input = f.inputs[0];
  if (std::filesystem::is_directory(input)) {
    throw Error(ErrorCode::kUsage, input + ": is a folder; this version quantizes one file at a time");
  }
  QuantizeOptions options;
  options.spec.method = *parse_method(f.method);
  options.spec.bits = f.bits;
  options.spec.granularity = *parse_granularity(f.granularity);
  options.spec.group_size = f.group_size;
  options.spec.scale_dtype = *parse_scale_dtype(f.scale_dtype);
  options.spec.validate();  // before any file is touched
  options.all = f.all;
  options.keep_nonfinite = f.keep_nonfinite;
  options.cancel = cancel_flag();
  options.on_progress = progress_printer("quantizing", f.quiet || f.json);

  BackendSelection selection = select_backend(f.backend, f.quiet || f.json);
  QuantizeReport report;
  try {
    report = quantize_file(input, f.output, *selection.backend, options);
  } catch (...) {
    finish_progress();
    throw;
  }
  finish_progress();
  if (f.json) {
    fmt::print("{}\n", report_json(report, options.spec).dump(2));
  } else if (!f.quiet) {
    fmt::print("{}", report_text(report, options.spec, f.per_tensor));
  }
  return 0;
}

}  // namespace

CommandRunner add_quantize_command(CLI::App& app) {
  auto flags = std::make_shared<QuantizeFlags>();
  CLI::App* cmd = app.add_subcommand("quantize", "Quantize a checkpoint into a WQ container");
  cmd->footer(
      "\nDefault policy: floating tensors with >= 2 dimensions (weights) are quantized; 0-d and\n"
      "1-d tensors (biases, norms, scalars) and integer/bool tensors are kept unchanged.\n"
      "--all quantizes every floating tensor with >= 2 elements, as the original assignment did.\n"
      "Groups never cross rows: a tensor is viewed as shape[0] rows of n/shape[0] columns.\n\n"
      "Examples:\n"
      "  wq-gpu quantize model.safetensors -o model.wq.safetensors            # 8 bits, per channel\n"
      "  wq-gpu quantize model.safetensors -o m4.wq.safetensors --bits 4 --granularity group --group-size 64\n"
      "  wq-gpu quantize model.safetensors -o m16.wq.safetensors --method fp16\n");
  cmd->add_option("input", flags->inputs, "Checkpoint file (safetensors)")->required();
  cmd->add_option("-o,--output", flags->output, "Output container (conventionally NAME.wq.safetensors); "
                  "replaced atomically if it exists")->required();
  cmd->add_option("--bits", flags->bits, "Bits per code, 1..8 (affine methods)")
      ->check(CLI::Range(1, 8))->capture_default_str();
  cmd->add_option("--method", flags->method,
                  "minmax: affine over each group's [min, max]; fp16/bf16: cast to 16 bits; "
                  "symmetric, mse: reserved (not implemented yet)")
      ->check(CLI::IsMember({"minmax", "symmetric", "mse", "fp16", "bf16"}))->capture_default_str();
  cmd->add_option("--granularity", flags->granularity,
                  "tensor: one (scale, min) per tensor; channel: one per row; group: one per "
                  "--group-size elements of a row")
      ->check(CLI::IsMember({"tensor", "channel", "group"}))->capture_default_str();
  cmd->add_option("--group-size", flags->group_size, "Elements per group with --granularity group (>= 1)")
      ->check(CLI::Validator(
          [](std::string& value) {
            const bool digits = !value.empty() && value.find_first_not_of("0123456789") == std::string::npos;
            return digits && value.find_first_not_of('0') != std::string::npos
                       ? std::string()
                       : "must be a whole number of at least 1, got '" + value + "'";
          },
          "N>=1"))
      ->capture_default_str();
  cmd->add_option("--scale-dtype", flags->scale_dtype, "Stored type of scales and mins")
      ->check(CLI::IsMember({"f32", "f16"}))->capture_default_str();
  cmd->add_flag("--all", flags->all, "Also quantize 0-d/1-d floating tensors with >= 2 elements");
  cmd->add_flag("--keep-nonfinite", flags->keep_nonfinite,
                "Store tensors containing NaN/Inf unchanged instead of failing");
  cmd->add_flag("--json", flags->json, "Print the report as JSON on stdout instead of the table");
  cmd->add_flag("--tensors", flags->per_tensor, "Add one line per tensor to the report");
  cmd->add_flag("-q,--quiet", flags->quiet, "Print nothing but errors");
  add_backend_flags(*cmd, flags->backend);
  return [flags] { return run_quantize(*flags); };
}

}  // namespace wq::cli
