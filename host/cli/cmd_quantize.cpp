// wq-gpu quantize FILE -o OUT, and tree mode: wq-gpu quantize DIR... -o OUTDIR
#include <algorithm>
#include <filesystem>
#include <memory>

#include <fmt/core.h>

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "cli/plan_text.h"
#include "cli/quantize_flags.h"
#include "cli/quantize_tree.h"
#include "cli/report_table.h"
#include "core/json_text.h"
#include "wq/atomic_write.h"
#include "wq/error.h"
#include "wq/pipeline.h"

namespace wq::cli {
namespace {

namespace fs = std::filesystem;

// One checkpoint file in, one container out: the original mode, unchanged.
int run_quantize_file(const QuantizeFlags& f, const QuantizeOptions& options) {
  const std::string& input = f.inputs[0];
  if (!f.shard.empty()) throw Error(ErrorCode::kUsage, "--shard splits the files of folders; " + input + " is one file");
  if (f.dry_run) {
    const QuantizeReport plan = plan_quantize(input, options);
    fmt::print("Plan: {} -> {}  ({} -> ~{} bytes, file header not counted)\n{}Dry run: nothing was written.\n",
               input, f.output, with_commas(plan.input_bytes), with_commas(plan.output_bytes),
               plan_tensor_lines(plan, options));
    return 0;
  }
  QuantizeOptions with_progress = options;
  with_progress.on_progress = progress_printer("quantizing", f.quiet || f.json == "-");
  BackendSelection selection = select_backend(f.backend, f.quiet || f.json == "-");
  QuantizeReport report;
  try {
    report = quantize_file(input, f.output, *selection.backend, with_progress);
  } catch (...) {
    finish_progress();
    throw;
  }
  finish_progress();
  if (f.json == "-") {
    fmt::print("{}\n", detail::json_text(report_json(report, options.spec), 2));
  } else if (!f.quiet) {
    fmt::print("{}", report_text(report, options.spec, f.per_tensor));
  }
  if (options.output_format == OutputFormat::kCompressedTensors && !f.quiet && f.json != "-") {
    // One file has no config.json beside it to rewrite; vLLM reads the scheme there.
    fmt::print(stderr,
               "wq-gpu: note: vLLM and transformers read the scheme from the model's config.json; quantize the "
               "model folder to have it written, or add this to it:\n\"quantization_config\": {}\n",
               pack_quantized_config_json(options.pack_quantized));
  }
  if (!f.json.empty() && f.json != "-") {
    write_file_atomically(f.json, detail::json_text(report_json(report, options.spec), 2) + "\n");
  }
  return 0;
}

int run_quantize(const QuantizeFlags& f) {
  for (const std::string& input : f.inputs) {
    std::error_code ec;
    if (!fs::exists(input, ec) && input.ends_with(".json") && f.json == "-") {
      throw Error(ErrorCode::kInputMissing, input + ": no such file or folder (to write the report to a file, "
                                                    "attach it: --json=" + input + ")");
    }
  }
  QuantizeOptions options = options_from_flags(f);
  options.cancel = cancel_flag();
  std::error_code ec;
  // Tree mode: any folder, or several inputs. One file keeps the one-file behaviour (-o is
  // the output file).
  const bool tree = f.inputs.size() > 1 || fs::is_directory(f.inputs[0], ec);
  if (tree && options.output_format == OutputFormat::kGguf && f.to != "gguf") {
    // -o names a folder in tree mode: only --to says the files are to be GGUF.
    options.output_format = OutputFormat::kContainer;
  }
  return tree ? run_quantize_tree(f, options) : run_quantize_file(f, options);
}

}  // namespace

CommandRunner add_quantize_command(CLI::App& app) {
  auto flags = std::make_shared<QuantizeFlags>();
  auto rules = std::make_shared<std::vector<std::string>>();
  auto keeps = std::make_shared<std::vector<std::string>>();
  CLI::App* cmd = app.add_subcommand("quantize",
                                     "Quantize a checkpoint, or whole folders of them, into WQ containers (or a GGUF file)");
  cmd->footer(
      "\nDefault policy: floating tensors with >= 2 dimensions (weights) are quantized; 0-d and\n"
      "1-d tensors (biases, norms, scalars) and integer/bool tensors are kept unchanged.\n"
      "--all quantizes every floating tensor with >= 2 elements, as the original assignment did.\n"
      "Groups never cross rows: a tensor is viewed as shape[0] rows of n/shape[0] columns.\n\n"
      "Tree mode (an input folder, or several inputs; -o is then a folder): every checkpoint\n"
      "(recognised by content) becomes NAME.wq.safetensors (NAME.gguf with --to gguf) in the\n"
      "mirrored folder, a sharded one (*.index.json) a container per shard and a new index (with\n"
      "--to gguf one NAME.gguf); other files are copied, so the output is a complete model folder.\n"
      "Finished files are recorded in OUT/.wq-journal.jsonl: run the\n"
      "same command again after Ctrl-C or a crash and only what is missing is done (--force redoes\n"
      "all). --shard I/N (or a Slurm array / Kubernetes Indexed Job, see README) splits the files\n"
      "among N processes.\n\n"
      "Rules (first match wins; command line before --rules files): --rule 'GLOB=KEY:VALUE,...'\n"
      "with keys bits, group (implies per-group), granularity, method, scale (f32|f16), type (a ggml type);\n"
      "--keep GLOB leaves matching tensors raw. GLOB matches tensor names (fnmatch; * crosses dots).\n"
      "Rules change how eligible tensors are encoded, not which are eligible.\n\n"
      "GGUF (llama.cpp, stable-diffusion.cpp, ComfyUI-GGUF): -o OUT.gguf (or --to gguf) with --type T\n"
      "writes ggml's block types with the bytes of llama.cpp's own reference quantizers (no\n"
      "importance matrix): Q8_0 (8.5 bits/weight), Q6_K (6.56), Q5_K (5.5), Q5_1/Q5_0, Q4_K (4.5),\n"
      "Q4_1/Q4_0, Q3_K (3.44), Q2_K (2.63); F16/BF16/F32 store floats. 1-d tensors stay as they are,\n"
      "as llama-quantize keeps them. A tensor whose rows are not whole blocks (256 for the K types,\n"
      "32 for the others) falls back as llama-quantize does (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0,\n"
      "Q2_K/Q3_K -> Q4_0; then F16), with a note. From a GGUF input every metadata pair and the tensor\n"
      "order are kept; from safetensors/.pt/.npz the GGUF holds the tensors under their own names, in\n"
      "ggml's dimension order, with no architecture metadata (what stable-diffusion.cpp and\n"
      "ComfyUI-GGUF read). Per-tensor types: --rule '*attn_v*=type:Q6_K'. --method mse with Q4_0, Q4_1,\n"
      "Q5_0, Q5_1 or Q8_0 searches each block's step (and min) for the least error instead: the same\n"
      "layout, which llama.cpp loads like any other, never further from the weights than the reference\n"
      "on any block (+0.2 to +0.9 dB SQNR on real weights), at 0.13-0.2 GB/s per CPU thread (rule:\n"
      "'*attn_v*=type:Q4_1,method:mse'). --type into a WQ container\n"
      "stores the same blocks there (encoding 'ggml'; 'wq-gpu decode' reads them), and such a container\n"
      "converts to GGUF without loss: wq-gpu quantize M.wq.safetensors -o M.gguf --type Q4_K copies the\n"
      "blocks, and a container made from a GGUF file gives back its every metadata pair. A sharded\n"
      "checkpoint's *.index.json with -o OUT.gguf gives one GGUF of all its shards (in tree mode too:\n"
      "model.safetensors.index.json -> model.gguf).\n\n"
      "compressed-tensors (vLLM, transformers): wq-gpu quantize MODEL_DIR -o OUT_DIR --to compressed-tensors\n"
      "[--scheme W4A16|W4A16_ASYM|W8A16|W8A16_ASYM] turns a Hugging Face model folder (safetensors, one file\n"
      "or sharded, bf16/fp16/fp32) into the pack-quantized checkpoint that llm-compressor writes for a\n"
      "round-to-nearest scheme, with the same bytes (its arithmetic emulated in the model's dtype): each\n"
      "Linear weight becomes weight_packed/weight_scale/[weight_zero_point]/weight_shape, every other tensor\n"
      "and file is kept, config.json gains the quantization_config. --method mse searches each group's\n"
      "range within the same format (never a larger error; wq's bytes then, not compressed-tensors').\n"
      "Then: vllm serve OUT_DIR.\n\n"
      "Examples:\n"
      "  wq-gpu quantize model.safetensors -o model.wq.safetensors            # 8 bits, per channel\n"
      "  wq-gpu quantize model.safetensors -o m4.wq.safetensors --bits 4 --granularity group --group-size 64\n"
      "  wq-gpu quantize model.safetensors -o m16.wq.safetensors --method fp16\n"
      "  wq-gpu quantize models/ -o models-wq/ --bits 4 --group-size 64 --granularity group\n"
      "  wq-gpu quantize llama/ -o llama-wq/ --rule '*.mlp.*=bits:4,group:64' --keep '*embed*' --dry-run\n"
      "  wq-gpu quantize models/ -o models-wq/ --shard 0/4 --json=report-0.json\n"
      "  wq-gpu quantize model-f16.gguf -o model-q4_k.gguf --type Q4_K --rule '*ffn_down*=type:Q6_K'\n"
      "  wq-gpu quantize unet.safetensors -o unet-q8_0.gguf --type Q8_0\n"
      "  wq-gpu quantize unet.safetensors -o unet-q4_1.gguf --type Q4_1 --method mse\n"
      "  wq-gpu quantize Llama-3.1-8B/ -o Llama-3.1-8B-W4A16/ --to compressed-tensors --scheme W4A16\n");
  cmd->add_option("input", flags->inputs,
                  "Checkpoint files or folders (walked recursively); one file gives one output (a WQ "
                  "container is read as the tensors it encodes)")
      ->required();
  cmd->add_option("-o,--output", flags->output,
                  "One file in: the output container (conventionally NAME.wq.safetensors), replaced "
                  "atomically. Folders in: the output folder (created; must not be inside an input)")
      ->required();
  cmd->add_option("--bits", flags->bits, "Bits per code, 1..8 (affine methods)")
      ->check(CLI::Range(1, 8))->capture_default_str();
  cmd->add_option("--method", flags->method,
                  "minmax: affine over each group's [min, max] (the fastest); "
                  "mse: a least-squared-error search per group, never worse than minmax on any group "
                  "(+0.9 dB SQNR at 4 bits, +2.5 dB at 2 bits on real weights, groups of 64; ~12-15x the work); "
                  "symmetric: scale only, zero exact (ggml Q4_0 style), one parameter per group instead of two, "
                  "which pays off at 2 bits with small groups and loses 0.7-1 dB at 4 bits (docs/range-study.md); "
                  "fp16/bf16: cast to 16 bits. With --type Q4_0, Q4_1, Q5_0, Q5_1 or Q8_0, mse searches within that "
                  "ggml layout (see GGUF above); the k-quants already search and refuse it")
      ->check(CLI::IsMember(kMethodNames))->capture_default_str();
  cmd->add_option("--granularity", flags->granularity,
                  "tensor: one (scale, min) per tensor; channel: one per row; group: one per "
                  "--group-size elements of a row")
      ->check(CLI::IsMember(kGranularityNames))->capture_default_str();
  cmd->add_option("--group-size", flags->group_size, "Elements per group with --granularity group (>= 1)")
      ->check(group_size_check())
      ->capture_default_str();
  cmd->add_option("--scale-dtype", flags->scale_dtype, "Stored type of scales and mins")
      ->check(CLI::IsMember(kScaleDTypeNames))->capture_default_str();
  cmd->add_option("--type", flags->type,
                  "A ggml type instead of --method (or with --method mse for the legacy types): Q8_0, Q6_K, Q5_K, "
                  "Q5_1, Q5_0, Q4_K, Q4_1, Q4_0, Q3_K, Q2_K "
                  "(llama.cpp's reference quantizers, byte for byte), F16, BF16, F32 (GGUF only), or a "
                  "llama-quantize mix (Q4_K_M, Q5_K_M, ...: see --preset); required for GGUF output");
  cmd->add_option("--preset", flags->preset,
                  "llama-quantize's file type: Q4_K_M, Q5_K_M, Q3_K_M, ... (mixes: attn_v, ffn_down and the output "
                  "matrix get more bits in the layers llama-quantize chooses, from the GGUF's names and metadata) "
                  "or a plain name (Q4_0: the output matrix Q6_K, as llama-quantize does); a mix name works as "
                  "--type too");
  cmd->add_option("--to", flags->to,
                  "Output format: wq (a WQ container), gguf, or compressed-tensors (vLLM's pack-quantized "
                  "weights: see --scheme); default: gguf when -o ends in .gguf, else wq")
      ->check(CLI::IsMember({"wq", "gguf", "compressed-tensors"}));
  cmd->add_option("--scheme", flags->scheme,
                  "With --to compressed-tensors: W4A16 (int4, symmetric; the default), W4A16_ASYM (int4 with a "
                  "zero point per group), W8A16, W8A16_ASYM. Groups of --group-size (128 by default) along the "
                  "input dimension, or --granularity channel for one group per output row");
  cmd->add_option("--ignore", flags->ignore,
                  "With --to compressed-tensors: MODULE glob left unquantized (repeatable; matched against the "
                  "weight's name without .weight), added to the defaults lm_head, *.mlp.gate and "
                  "*.shared_expert_gate (MoE routers, which vLLM builds unquantized)")
      ->allow_extra_args(false);
  cmd->add_flag("--allow-requantize", flags->allow_requantize,
                "Quantize tensors the input already stores quantized (a GGUF's Q4_K, ...) from their decoded "
                "values, adding a second rounding; without it they are an error");
  cmd->add_flag("--gguf-long-names", flags->gguf_long_names,
                "GGUF output: write tensor names of 64 bytes or more (stable-diffusion.cpp reads them; ggml and "
                "llama.cpp refuse them, so without this flag such a name is an error)");
  add_tensor_policy_flags(*cmd, *flags, *rules, *keeps);
  cmd->add_flag("--dry-run", flags->dry_run,
                "Print the plan (files, each tensor's encoding and the rule that chose it, estimated "
                "sizes) and write nothing");
  cmd->add_flag("--force", flags->force, "Tree mode: redo every file, even those the journal says are up to date");
  cmd->add_flag("--copy-unreadable", flags->copy_unreadable,
                "Tree mode: copy files that look like checkpoints but cannot be read as one (e.g. a "
                "pickled training_args.bin or optimizer state) unchanged, with a note, instead of "
                "failing the run");
  cmd->add_option("--shard", flags->shard,
                  "I/N: do only this process's share of a tree (0 <= I < N), balanced by bytes; default "
                  "from SLURM_ARRAY_TASK_ID/COUNT or JOB_COMPLETION_INDEX + WQ_SHARD_COUNT");
  cmd->add_option("--jobs", flags->jobs,
                  "Tree mode: N files at once, each with its own backend (the CPU threads are shared "
                  "out among them); 0 = up to 4, at most one per core and per file (several small files at "
                  "once keep the cores busy: each file's opening, planning and writing are serial)")
      ->check(CLI::Range(0u, 256u))->capture_default_str();
  cmd->add_option("--devices", flags->devices,
                  "Tree mode: CUDA devices to use, e.g. 0,1,2,3: one backend per device (at least "
                  "--jobs backends, spread over the devices in turn)")
      ->delimiter(',')
      ->check(CLI::Range(0, 1023));
  // A flag that takes a value only with '=': `--json FILE` would swallow an input path.
  cmd->add_flag("--json", flags->json,
                "Print the report as JSON on stdout instead of the table; --json=FILE writes it to FILE");
  cmd->add_flag("--tensors", flags->per_tensor, "Add one line per tensor to the report (one file)");
  cmd->add_flag("-q,--quiet", flags->quiet, "Print nothing but errors");
  add_read_flags(*cmd, flags->max_view_expansion);
  add_backend_flags(*cmd, flags->backend);
  return [flags, rules, keeps, cmd] {
    collect_rule_args(*cmd, *flags, *rules, *keeps);
    if (flags->json == "true") flags->json = "-";  // CLI11's value for a bare --json
    flags->bits_given = cmd->count("--bits") > 0;
    flags->method_given = cmd->count("--method") > 0;
    flags->granularity_given = cmd->count("--granularity") > 0;
    flags->group_size_given = cmd->count("--group-size") > 0;
    flags->scale_dtype_given = cmd->count("--scale-dtype") > 0;
    return run_quantize(*flags);
  };
}

}  // namespace wq::cli
