#include "cli/quantize_flags.h"

#include "cli/rules.h"
#include "wq/error.h"
#include "wq/version.h"

namespace wq::cli {

QuantizeOptions options_from_flags(const QuantizeFlags& f) {
  QuantizeOptions options;
  options.spec.method = *parse_method(f.method);
  options.spec.bits = f.bits;
  options.spec.granularity = *parse_granularity(f.granularity);
  options.spec.group_size = f.group_size;
  options.spec.scale_dtype = *parse_scale_dtype(f.scale_dtype);
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

nlohmann::ordered_json settings_json(const QuantizeOptions& options) {
  nlohmann::ordered_json j;
  j["producer"] = std::string("wq-gpu ") + kVersion;
  j["method"] = std::string(method_name(options.spec.method));
  j["bits"] = options.spec.bits;
  j["granularity"] = std::string(granularity_name(options.spec.granularity));
  j["group_size"] = options.spec.group_size;
  j["scale"] = std::string(scale_dtype_name(options.spec.scale_dtype));
  j["all"] = options.all;
  j["keep_nonfinite"] = options.keep_nonfinite;
  nlohmann::ordered_json rules = nlohmann::ordered_json::array();
  for (const TensorRule& rule : options.rules) rules.push_back(rule_json(rule));
  j["rules"] = std::move(rules);
  return j;
}

}  // namespace wq::cli
