#include "tree/tree_settings.h"

#include <string>

#include "wq/codec/ggml_blocks.h"
#include "wq/version.h"

namespace wq::detail {
namespace {

using ojson = nlohmann::ordered_json;

ojson rule_json(const TensorRule& rule) {
  ojson j;
  j["match"] = rule.pattern;
  if (rule.keep) {
    j["keep"] = true;
    return j;
  }
  j["method"] = std::string(method_name(rule.spec.method));
  if (rule.spec.method == Method::kGgml) j["type"] = codec::ggml::type_name(rule.spec.ggml_type);
  if (rule.spec.method == Method::kGgml && rule.spec.ggml_mse) j["search"] = "mse";
  j["bits"] = rule.spec.bits;
  j["granularity"] = std::string(granularity_name(rule.spec.granularity));
  j["group_size"] = rule.spec.group_size;
  j["scale"] = std::string(scale_dtype_name(rule.spec.scale_dtype));
  return j;
}

}  // namespace

ojson settings_json(const QuantizeOptions& options) {
  ojson j;
  j["producer"] = std::string("wq-gpu ") + kVersion;
  j["method"] = std::string(method_name(options.spec.method));
  j["bits"] = options.spec.bits;
  j["granularity"] = std::string(granularity_name(options.spec.granularity));
  j["group_size"] = options.spec.group_size;
  j["scale"] = std::string(scale_dtype_name(options.spec.scale_dtype));
  if (options.spec.method == Method::kGgml) j["type"] = codec::ggml::type_name(options.spec.ggml_type);
  if (options.spec.method == Method::kGgml && options.spec.ggml_mse) j["search"] = "mse";
  if (options.output_format == OutputFormat::kGguf) j["to"] = "gguf";
  if (options.output_format == OutputFormat::kCompressedTensors) {
    // The scheme replaces the spec: these are all that decide the bytes.
    ojson ct;
    ct["producer"] = j["producer"];
    ct["to"] = "compressed-tensors";
    ct["scheme"] = options.pack_quantized.name();
    ct["group_size"] = options.pack_quantized.group_size;
    ct["ignore"] = options.pack_quantized.ignore;
    ct["method"] = options.pack_quantized.mse ? "mse" : "minmax";
    ct["keep_nonfinite"] = options.keep_nonfinite;
    return ct;
  }
  if (options.allow_requantize) j["allow_requantize"] = true;
  if (!options.llama_preset.empty()) j["preset"] = options.llama_preset;
  j["all"] = options.all;
  j["keep_nonfinite"] = options.keep_nonfinite;
  ojson rules = ojson::array();
  for (const TensorRule& rule : options.rules) rules.push_back(rule_json(rule));
  j["rules"] = std::move(rules);
  return j;
}

}  // namespace wq::detail
