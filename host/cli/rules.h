// Per-tensor rules of `wq-gpu quantize`: --rule 'GLOB=bits:4,group:64', --keep GLOB and
// --rules FILE (JSON, or TOML for *.toml), all turned into wq::TensorRule (first match wins).
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "wq/pipeline.h"

namespace wq::cli {

/// Parses one --rule value, "GLOB=KEY:VALUE,KEY:VALUE..." (keys: bits, group, granularity,
/// method, scale; or the single word "keep"), on top of `base`. Throws Error(kUsage) naming
/// the rule and what is wrong.
TensorRule parse_rule(const std::string& text, const QuantSpec& base);

/// A --keep GLOB rule.
TensorRule keep_rule(const std::string& pattern);

/// Reads a rules file: {"rules": [{"match": GLOB, "bits": 4, "group": 64, ...}, {"match": GLOB,
/// "keep": true}]} as JSON, or the same as TOML ([[rules]] tables) when the name ends in
/// .toml. Throws Error(kInputMissing) when it cannot be read, Error(kUsage) naming the file
/// and the rule's position when it is malformed.
std::vector<TensorRule> read_rules_file(const std::string& path, const QuantSpec& base);

/// "minmax 4 bits, per-group 64, f32 scales" / "fp16 cast": how a spec is described to users.
std::string spec_summary(const QuantSpec& spec);
/// The same for compressed-tensors output: "compressed-tensors W4A16, per-group 128, ...".
std::string pack_quantized_summary(const QuantizeOptions& options);

}  // namespace wq::cli
