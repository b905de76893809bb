// wq-gpu sweep MODEL: the assignment's table (bytes, ratio, SQNR) for a list of settings, by
// quantizing MODEL once per setting into a private temporary folder that is removed again.
#include <memory>

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "cli/quantize_flags.h"
#include "cli/sweep_run.h"
#include "cli/sweep_settings.h"

namespace wq::cli {

CommandRunner add_sweep_command(CLI::App& app) {
  auto flags = std::make_shared<SweepFlags>();
  auto rules = std::make_shared<std::vector<std::string>>();
  auto keeps = std::make_shared<std::vector<std::string>>();
  CLI::App* cmd = app.add_subcommand("sweep", "Print bytes, ratio and SQNR of a checkpoint for a list of settings");
  cmd->footer(
      "\nEach setting is quantized as 'wq-gpu quantize' would (same policy, rules, bytes) into a\n"
      "private temporary folder (wq-sweep-XXXXXX in TMPDIR or --work-dir) and gives one row: the\n"
      "container's bytes, the ratio MODEL bytes / bytes, and the SQNR in dB of the quantized\n"
      "tensors: the minimum and median over tensors, and pooled (10 log10 of all signal energy\n"
      "over all error energy). Each container is removed after its row, the folder at the end,\n"
      "also after an error or Ctrl-C: sweep writes nothing but --json=FILE.\n\n"
      "Rows, in the order of the lists: for each --bits, each --method, each --granularity (for\n"
      "group, each --group-size). fp16 and bf16 give one row each (bits and granularity do not\n"
      "apply to a cast).\n\n"
      "--eval 'CMD {}': each container is also decoded to a checkpoint in MODEL's format (as\n"
      "'wq-gpu decode' does by default, with MODEL's file name), {} in CMD is replaced by its\n"
      "path (shell-quoted), CMD runs with /bin/sh -c, and the last number it prints on stdout\n"
      "fills a column named by --eval-name. Its stderr passes through; stdin is /dev/null. CMD\n"
      "first runs on MODEL itself: the baseline row. A CMD that exits non-zero or prints no\n"
      "number stops the sweep with status 2.\n\n"
      "Which method wins where: minmax clips nothing, but its step is (max - min) / (2^bits - 1)\n"
      "of the whole group, so one outlier coarsens every other value of its group, more so at\n"
      "low bits and large groups (finer --granularity helps). mse searches each group for the\n"
      "least-error range and keeps min-max unless something is strictly better: never worse,\n"
      "+0.9 dB at 4 bits and +2.5 dB at 2 bits (groups of 64, real weights), ~15x the work.\n"
      "symmetric stores no min (fewer bytes, zero exact) and so wins at 2 bits; from 3 bits on it\n"
      "loses to minmax at equal bytes (docs/range-study.md).\n\n"
      "Examples:\n"
      "  wq-gpu sweep model.safetensors                                    # 8..2 bits x 3 methods\n"
      "  wq-gpu sweep model.safetensors --method minmax --bits 8,4 --granularity channel,group --group-size 64,128\n"
      "  wq-gpu sweep model.pt --method minmax,fp16 --eval 'python3 eval.py --weights {}' --eval-name accuracy\n"
      "  wq-gpu sweep model.safetensors.index.json --bits 4 --json=sweep.json\n\n"
      "Exit status as for quantize; also 2 when the --eval command fails or prints no number,\n"
      "and 130 after Ctrl-C (the temporary folder is removed).\n");
  cmd->add_option("MODEL", flags->model, "Checkpoint file in any format quantize reads, or a sharded checkpoint's "
                                         "*.index.json")
      ->required()
      ->type_name("FILE");
  cmd->add_option("--bits", flags->lists.bits, "Comma list of bits per code, each 1..8")
      ->check(comma_list_of(CLI::Range(1, 8)))
      ->type_name("N,...")
      ->capture_default_str();
  cmd->add_option("--method", flags->lists.methods,
                  "Comma list of methods: minmax, symmetric, mse (affine), fp16, bf16 (casts)")
      ->check(comma_list_of(CLI::IsMember(kMethodNames)))
      ->type_name("M,...")
      ->capture_default_str();
  cmd->add_option("--granularity", flags->lists.granularities, "Comma list of tensor, channel, group")
      ->check(comma_list_of(CLI::IsMember(kGranularityNames)))
      ->type_name("G,...")
      ->capture_default_str();
  cmd->add_option("--group-size", flags->lists.group_sizes,
                  "Comma list of elements per group (>= 1), used with --granularity group")
      ->check(comma_list_of(group_size_check()))
      ->type_name("N,...")
      ->capture_default_str();
  cmd->add_option("--scale-dtype", flags->base.scale_dtype, "Stored type of scales and mins (one value)")
      ->check(CLI::IsMember(kScaleDTypeNames))
      ->capture_default_str();
  add_tensor_policy_flags(*cmd, flags->base, *rules, *keeps);
  CLI::Option* eval = cmd->add_option("--eval", flags->eval,
                                      "A shell command run on each decoded checkpoint (and first on MODEL); {} is "
                                      "its path; the last number it prints on stdout is shown");
  eval->check(CLI::Validator(
                  [](std::string& value) {
                    return value.find("{}") == std::string::npos
                               ? std::string("the command must contain {} where the checkpoint's path goes")
                               : std::string();
                  },
                  ""))
      ->type_name("CMD");
  cmd->add_option("--eval-name", flags->eval_name, "Title of the --eval column")
      ->needs(eval)
      ->type_name("NAME")
      ->capture_default_str();
  cmd->add_option("--work-dir", flags->work_dir,
                  "Where to make the temporary folder (default: TMPDIR, else /tmp); it needs room for one "
                  "container and, with --eval, one decoded checkpoint")
      ->type_name("DIR");
  // As for quantize: a flag that takes a value only with '='.
  cmd->add_flag("--json", flags->json,
                "Print the table as JSON on stdout instead; --json=FILE writes it to FILE (the table is "
                "still printed)");
  cmd->add_flag("-q,--quiet", flags->quiet, "No progress or notices on stderr, only errors (the table is still printed)");
  add_read_flags(*cmd, flags->base.max_view_expansion);
  add_backend_flags(*cmd, flags->base.backend);
  return [flags, rules, keeps, cmd] {
    flags->base.inputs = {flags->model};
    collect_rule_args(*cmd, flags->base, *rules, *keeps);
    if (flags->json == "true") flags->json = "-";  // CLI11's value for a bare --json
    return run_sweep(*flags);
  };
}

}  // namespace wq::cli
