// config.json for compressed-tensors output (docs/compressed-tensors.md §4): the model's own
// config with a "quantization_config" that vLLM and transformers read.
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/json_text.h"
#include "io/atomic_file.h"
#include "wq/error.h"
#include "wq/pipeline.h"

namespace wq {
namespace {

using ojson = nlohmann::ordered_json;

// The compressed-tensors release whose layout and fields the output follows. For 4 and 8 bits
// the packing is the same in every release, so older readers load it too.
constexpr const char* kCompressedTensorsVersion = "0.18.0";

// vLLM and llm-compressor match `ignore` entries exactly, or as Python regular expressions
// (re.match, anchored at the start only) when they start with "re:". A glob without wildcards
// stays a plain name ("lm_head"); others become "re:" expressions anchored at both ends.
std::string ignore_entry(const std::string& glob) {
  if (glob.find_first_of("*?[") == std::string::npos) return glob;
  std::string re = "re:";
  for (std::size_t i = 0; i < glob.size(); ++i) {
    const char c = glob[i];
    if (c == '*') {
      re += ".*";
    } else if (c == '?') {
      re += '.';
    } else if (c == '[') {
      const std::size_t close = glob.find(']', i + 2);
      if (close == std::string::npos) {
        re += "\\[";
        continue;
      }
      std::string set = glob.substr(i + 1, close - i - 1);
      if (!set.empty() && set[0] == '!') set[0] = '^';
      re += "[" + set + "]";
      i = close;
    } else {
      if (std::string(".^$+(){}|\\").find(c) != std::string::npos) re += '\\';
      re += c;
    }
  }
  return re + "$";
}

ojson scheme_json(const PackQuantizedScheme& scheme) {
  ojson weights;
  weights["num_bits"] = scheme.bits;
  weights["type"] = "int";
  weights["symmetric"] = scheme.symmetric;
  weights["strategy"] = scheme.group_size == 0 ? "channel" : "group";
  weights["group_size"] = scheme.group_size == 0 ? ojson(nullptr) : ojson(scheme.group_size);
  weights["dynamic"] = false;
  weights["actorder"] = nullptr;
  weights["block_structure"] = nullptr;
  // The observer names how the ranges were chosen (informational to vLLM): llm-compressor's
  // "mse" observer is also a least-error search, though not wq's grid.
  weights["observer"] = scheme.mse ? "mse" : "memoryless_minmax";
  weights["observer_kwargs"] = ojson::object();
  ojson group;
  group["targets"] = ojson::array({"Linear"});
  group["format"] = "pack-quantized";
  group["weights"] = std::move(weights);
  group["input_activations"] = nullptr;
  group["output_activations"] = nullptr;
  ojson config;
  config["quant_method"] = "compressed-tensors";
  config["format"] = "pack-quantized";
  config["quantization_status"] = "compressed";
  config["version"] = kCompressedTensorsVersion;
  config["config_groups"] = ojson::object();
  config["config_groups"]["group_0"] = std::move(group);
  ojson ignore = ojson::array();
  for (const std::string& glob : scheme.ignore) ignore.push_back(ignore_entry(glob));
  config["ignore"] = std::move(ignore);
  config["kv_cache_scheme"] = nullptr;
  config["global_compression_ratio"] = nullptr;
  config["sparsity_config"] = ojson::object();
  config["transform_config"] = ojson::object();
  return config;
}

ojson read_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorCode::kInputMissing, path + ": cannot read the model config");
  std::stringstream text;
  text << in.rdbuf();
  ojson config;
  try {
    config = ojson::parse(text.str());
  } catch (const nlohmann::json::exception& e) {
    throw Error(ErrorCode::kBadFormat, path + ": not valid JSON: " + e.what());
  }
  if (!config.is_object()) throw Error(ErrorCode::kBadFormat, path + ": a model config is a JSON object");
  if (config.contains("quantization_config")) {
    throw Error(ErrorCode::kUsage, path + ": the model is quantized already (its config has a quantization_config); "
                                          "quantize the original floating-point model");
  }
  return config;
}

}  // namespace

std::string pack_quantized_config_json(const PackQuantizedScheme& scheme) {
  scheme.validate();
  return detail::json_text(scheme_json(scheme), 2);
}

void check_model_config(const std::string& config) { read_config(config); }

void write_quantized_model_config(const std::string& input, const std::string& output,
                                  const PackQuantizedScheme& scheme) {
  scheme.validate();
  ojson config = read_config(input);
  config["quantization_config"] = scheme_json(scheme);
  const std::string text = detail::json_text(config, 2) + "\n";
  detail::AtomicFile file(output);
  file.write(text.data(), text.size());
  file.commit();
}

}  // namespace wq
