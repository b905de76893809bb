#include "cli/quantize_flags.h"

#include <cctype>

#include "cli/rules.h"
#include "wq/error.h"
#include "wq/version.h"

namespace wq::cli {

CLI::Validator group_size_check() {
  return CLI::Validator(
      [](std::string& value) {
        const bool digits = !value.empty() && value.find_first_not_of("0123456789") == std::string::npos;
        return digits && value.find_first_not_of('0') != std::string::npos
                   ? std::string()
                   : "must be a whole number of at least 1, got '" + value + "'";
      },
      "N>=1");
}

void add_tensor_policy_flags(CLI::App& cmd, QuantizeFlags& flags, std::vector<std::string>& rules,
                             std::vector<std::string>& keeps) {
  cmd.add_flag("--all", flags.all, "Also quantize 0-d/1-d floating tensors with >= 2 elements");
  cmd.add_flag("--keep-nonfinite", flags.keep_nonfinite, "Store tensors containing NaN/Inf unchanged instead of failing");
  cmd.add_option("--rule", rules, "GLOB=KEY:VALUE,... per-tensor override, e.g. '*.mlp.*=bits:4,group:64' (repeatable)")
      ->allow_extra_args(false);
  cmd.add_option("--keep", keeps, "GLOB: leave matching tensors raw (repeatable)")->allow_extra_args(false);
  cmd.add_option("--rules", flags.rule_files,
                 "FILE of rules: JSON {\"rules\": [{\"match\": GLOB, \"bits\": 4, ...}, {\"match\": GLOB, "
                 "\"keep\": true}]}, or the same as TOML [[rules]] tables in *.toml")
      ->allow_extra_args(false);
}

void collect_rule_args(CLI::App& cmd, QuantizeFlags& flags, const std::vector<std::string>& rules,
                       const std::vector<std::string>& keeps) {
  std::size_t next_rule = 0, next_keep = 0;
  flags.rule_args.clear();
  for (const CLI::Option* option : cmd.parse_order()) {
    if (option->get_name() == "--rule" && next_rule < rules.size()) flags.rule_args.emplace_back("rule", rules[next_rule++]);
    if (option->get_name() == "--keep" && next_keep < keeps.size()) flags.rule_args.emplace_back("keep", keeps[next_keep++]);
  }
}

OutputFormat output_format_of(const QuantizeFlags& f) {
  if (f.to == "gguf") return OutputFormat::kGguf;
  if (f.to == "compressed-tensors") return OutputFormat::kCompressedTensors;
  if (f.to == "wq") return OutputFormat::kContainer;
  std::string lower = f.output;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return lower.ends_with(".gguf") ? OutputFormat::kGguf : OutputFormat::kContainer;
}

namespace {

// --scheme and the flags beside it: the scheme fixes the bits, the method and the scale dtype;
// --granularity channel or --group-size choose the strategy.
PackQuantizedScheme scheme_from_flags(const QuantizeFlags& f) {
  const auto refuse = [](const std::string& flag, const std::string& why) {
    throw Error(ErrorCode::kUsage, flag + " does not apply to --to compressed-tensors: " + why);
  };
  if (f.bits_given) refuse("--bits", "--scheme chooses the bits (W4A16: 4, W8A16: 8)");
  if (f.method_given && f.method != "minmax" && f.method != "mse") {
    refuse("--method " + f.method, "it takes minmax (compressed-tensors' own round-to-nearest, the default) or mse");
  }
  if (f.scale_dtype_given) refuse("--scale-dtype", "scales are stored in the model's dtype, as vLLM expects");
  if (!f.type.empty() || !f.preset.empty()) refuse("--type/--preset", "ggml types are for GGUF output");
  if (!f.rule_args.empty() || !f.rule_files.empty()) refuse("--rule/--keep/--rules", "leave modules out with --ignore");
  if (f.all) refuse("--all", "only Linear weights are quantized");
  PackQuantizedScheme scheme;
  try {
    scheme = PackQuantizedScheme::named(f.scheme.empty() ? "W4A16" : f.scheme);
  } catch (const Error& e) {
    throw Error(e.code(), std::string("--scheme: ") + e.what(), e.hints());
  }
  if (f.granularity_given && f.granularity == "tensor") {
    refuse("--granularity tensor", "vLLM takes group or channel strategies only");
  }
  const bool channel = f.granularity_given && f.granularity == "channel";
  if (channel && f.group_size_given) throw Error(ErrorCode::kUsage, "--group-size and --granularity channel: give one");
  scheme.group_size = channel ? 0 : f.group_size;
  for (const std::string& glob : f.ignore) scheme.ignore.push_back(glob);
  scheme.mse = f.method_given && f.method == "mse";
  return scheme;
}

}  // namespace

QuantizeOptions options_from_flags(const QuantizeFlags& f) {
  QuantizeOptions options;
  if (output_format_of(f) == OutputFormat::kCompressedTensors) {
    options.output_format = OutputFormat::kCompressedTensors;
    options.pack_quantized = scheme_from_flags(f);
    options.keep_nonfinite = f.keep_nonfinite;
    options.read.max_expanded_view_bytes = f.max_view_expansion;
    return options;
  }
  if (!f.scheme.empty() || !f.ignore.empty()) {
    throw Error(ErrorCode::kUsage, std::string(!f.scheme.empty() ? "--scheme" : "--ignore") +
                                       " is for compressed-tensors output: add --to compressed-tensors");
  }
  options.spec.method = *parse_method(f.method);
  options.spec.bits = f.bits;
  options.spec.granularity = *parse_granularity(f.granularity);
  options.spec.group_size = f.group_size;
  options.spec.scale_dtype = *parse_scale_dtype(f.scale_dtype);
  options.output_format = output_format_of(f);
  options.allow_requantize = f.allow_requantize;
  options.gguf_long_names = f.gguf_long_names;
  if (!f.type.empty() && !f.preset.empty()) {
    throw Error(ErrorCode::kUsage, "--type and --preset both choose the types: give one");
  }
  // A name with a size suffix (Q4_K_M) is a llama-quantize mix, also as --type; a plain type
  // name is that type for every weight there, and llama-quantize's file type with --preset.
  if (!f.type.empty() || !f.preset.empty()) {
    // --method mse with a type that has a searched form; the checks are choose_ggml_types()'s.
    const std::string flag = !f.preset.empty() ? "--preset " + f.preset : "--type " + f.type;
    try {
      if (!f.preset.empty()) {
        choose_llama_preset(f.preset, &options);  // never a plain type: --preset Q8_0 is a mix
      } else {
        choose_ggml_types(f.type, &options);
      }
    } catch (const Error& e) {
      throw Error(e.code(), flag + (f.method_given ? " with --method " + f.method : "") + ": " + e.what(), e.hints());
    }
  } else if (options.output_format == OutputFormat::kGguf && options.spec.is_affine()) {
    throw Error(ErrorCode::kUsage, f.output + ": a GGUF file holds ggml types: choose one with --type (" +
                                       ggml_type_names() + "), e.g. --type Q8_0");
  }
  if (options.output_format == OutputFormat::kContainer && options.spec.method == Method::kGgml &&
      options.spec.ggml_type == codec::ggml::Type::kF32) {
    throw Error(ErrorCode::kUsage, "--type F32 is for GGUF output (a WQ container keeps float32 tensors with --keep '*')");
  }
  options.spec.validate();  // before any file is touched
  options.all = f.all;
  options.keep_nonfinite = f.keep_nonfinite;
  options.read.max_expanded_view_bytes = f.max_view_expansion;
  // Command-line rules first (in the order given), then the files': first match wins, so the
  // command line can override a shared rules file.
  for (const auto& [kind, text] : f.rule_args) {
    options.rules.push_back(kind == "keep" ? keep_rule(text) : parse_rule(text, options.spec));
  }
  for (const std::string& file : f.rule_files) {
    for (TensorRule& rule : read_rules_file(file, options.spec)) options.rules.push_back(std::move(rule));
  }
  return options;
}

}  // namespace wq::cli
