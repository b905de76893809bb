#include "cli/rules.h"

#include <charconv>
#include <fstream>
#include <sstream>
#include <utility>

#include <fmt/core.h>
#include <toml++/toml.h>

#include "core/utf8.h"
#include "wq/error.h"

namespace wq::cli {
namespace {

using Setting = std::pair<std::string, std::string>;  // key, value as text

constexpr const char* kKeys = "bits, group, granularity, method, scale, type (or keep)";

[[noreturn]] void bad_rule(const std::string& where, const std::string& what) {
  throw Error(ErrorCode::kUsage, where + ": " + what);
}

// Tensor names are UTF-8, and rules are recorded as JSON (the journal's settings, reports):
// a pattern that is not UTF-8 can match nothing and cannot be written.
void check_pattern_text(const std::string& where, const std::string& pattern) {
  if (!detail::is_valid_utf8(pattern)) {
    bad_rule(detail::printable_utf8(where), "the pattern '" + detail::printable_utf8(pattern) + "' is not valid UTF-8");
  }
}

std::uint64_t parse_count(const std::string& where, const std::string& key, const std::string& value) {
  std::uint64_t n = 0;
  const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
  if (ec != std::errc() || end != value.data() + value.size() || value.empty()) {
    bad_rule(where, key + " must be a whole number, got '" + value + "'");
  }
  return n;
}

// Applies the settings in order on top of `base`; "group" implies per-group granularity
// (an explicit granularity given after it still wins: settings apply in order).
TensorRule make_rule(const std::string& where, const std::string& pattern, const std::vector<Setting>& settings,
                     const QuantSpec& base, const std::string& text) {
  if (pattern.empty()) bad_rule(where, "the pattern is empty");
  check_pattern_text(where, pattern);
  TensorRule rule;
  rule.pattern = pattern;
  rule.spec = base;
  rule.text = text;
  if (settings.empty()) bad_rule(where, std::string("no settings; give some of ") + kKeys);
  bool typed_here = false;  // a `type` of this rule came before: `method` then qualifies it
  for (const auto& [key, value] : settings) {
    if (key == "keep") {
      if (value != "true") bad_rule(where, "keep takes no value other than true");
      rule.keep = true;
    } else if (key == "bits") {
      const std::uint64_t bits = parse_count(where, key, value);
      if (bits < 1 || bits > 8) bad_rule(where, "bits must be 1..8, got " + value);
      rule.spec.bits = static_cast<int>(bits);
    } else if (key == "group") {
      rule.spec.group_size = parse_count(where, key, value);
      if (rule.spec.group_size == 0) bad_rule(where, "group must be at least 1");
      rule.spec.granularity = Granularity::kGroup;
    } else if (key == "granularity") {
      const auto g = parse_granularity(value);
      if (!g) bad_rule(where, "granularity must be tensor, channel or group, got '" + value + "'");
      rule.spec.granularity = *g;
    } else if (key == "method") {
      const auto m = parse_method(value);
      if (!m) bad_rule(where, "method must be minmax, symmetric, mse, fp16 or bf16, got '" + value + "'");
      if (typed_here) {
        // After this rule's type: how its blocks are chosen (ggml's reference, or wq's search).
        // Without a type in the rule, a method replaces the type (wq's own encodings).
        if (*m != Method::kMinMax && *m != Method::kMse) {
          bad_rule(where, "method " + value + " does not apply to a ggml type: give minmax (the reference) or mse");
        }
        rule.spec.ggml_mse = *m == Method::kMse;
      } else {
        rule.spec.method = *m;
      }
    } else if (key == "type") {
      const std::optional<QuantSpec> typed = ggml_type_spec(value, rule.spec);
      if (!typed) bad_rule(where, "type must be a ggml type (" + ggml_type_names() + "), got '" + value + "'");
      rule.spec = *typed;
      typed_here = rule.spec.method == Method::kGgml;
    } else if (key == "scale") {
      const auto s = parse_scale_dtype(value);
      if (!s) bad_rule(where, "scale must be f32 or f16, got '" + value + "'");
      rule.spec.scale_dtype = *s;
    } else {
      bad_rule(where, "unknown key '" + key + "' (keys: " + kKeys + ")");
    }
  }
  if (rule.keep && settings.size() > 1) bad_rule(where, "keep cannot be combined with other settings");
  if (!rule.keep) {
    try {
      rule.spec.validate();
    } catch (const Error& e) {
      throw Error(e.code(), where + ": " + e.what(), e.hints());
    }
  }
  return rule;
}

std::string trim(std::string s) {
  const auto first = s.find_first_not_of(" \t");
  const auto last = s.find_last_not_of(" \t");
  return first == std::string::npos ? std::string() : s.substr(first, last - first + 1);
}

// A JSON or TOML rule, flattened to settings in the order written. `keys` come as text.
std::string rule_text_of(const std::string& pattern, const std::vector<Setting>& settings) {
  std::string text = pattern + "=";
  for (std::size_t i = 0; i < settings.size(); ++i) {
    if (i != 0) text += ',';
    text += settings[i].first == "keep" ? std::string("keep") : settings[i].first + ":" + settings[i].second;
  }
  return text;
}

std::vector<TensorRule> rules_from_json(const std::string& path, const nlohmann::ordered_json& root,
                                        const QuantSpec& base) {
  if (!root.is_object() || !root.contains("rules") || !root.at("rules").is_array()) {
    bad_rule(path, "expected an object with a \"rules\" array");
  }
  std::vector<TensorRule> rules;
  std::size_t position = 0;
  for (const auto& entry : root.at("rules")) {
    const std::string where = path + ": rule " + std::to_string(++position);
    if (!entry.is_object()) bad_rule(where, "is not an object");
    std::string pattern;
    std::vector<Setting> settings;
    for (auto it = entry.begin(); it != entry.end(); ++it) {
      const auto& v = it.value();
      if (it.key() == "match") {
        if (!v.is_string()) bad_rule(where, "\"match\" must be a string (a glob over tensor names)");
        pattern = v.get<std::string>();
        continue;
      }
      if (it.key() == "keep" && v.is_boolean() && !v.get<bool>()) continue;  // keep: false = no-op
      settings.emplace_back(it.key(), v.is_string() ? v.get<std::string>() : v.dump());
    }
    if (pattern.empty()) bad_rule(where, "has no \"match\"");
    rules.push_back(make_rule(where, pattern, settings, base, rule_text_of(pattern, settings)));
  }
  return rules;
}

std::vector<TensorRule> rules_from_toml(const std::string& path, const std::string& text, const QuantSpec& base) {
  toml::table root;
  try {
    root = toml::parse(text, path);
  } catch (const toml::parse_error& e) {
    std::ostringstream where;
    where << e.source().begin;
    bad_rule(path, "not valid TOML (" + where.str() + "): " + std::string(e.description()));
  }
  // The same content as the JSON form: convert and share the checks.
  nlohmann::ordered_json json = nlohmann::ordered_json::object();
  const toml::array* list = root["rules"].as_array();
  if (list == nullptr) bad_rule(path, "expected [[rules]] tables");
  nlohmann::ordered_json rules = nlohmann::ordered_json::array();
  std::size_t position = 0;
  for (const toml::node& node : *list) {
    ++position;
    const toml::table* table = node.as_table();
    if (table == nullptr) bad_rule(path + ": rule " + std::to_string(position), "is not a table");
    nlohmann::ordered_json entry = nlohmann::ordered_json::object();
    for (const auto& [key, value] : *table) {
      const std::string k(key.str());
      if (const auto s = value.value<std::string>(); s && value.is_string()) entry[k] = *s;
      else if (value.is_boolean()) entry[k] = *value.value<bool>();
      else if (value.is_integer()) entry[k] = *value.value<std::int64_t>();
      else bad_rule(path + ": rule " + std::to_string(position), "value of '" + k + "' is not a string, integer or boolean");
    }
    rules.push_back(std::move(entry));
  }
  json["rules"] = std::move(rules);
  return rules_from_json(path, json, base);
}

}  // namespace

TensorRule parse_rule(const std::string& text, const QuantSpec& base) {
  const std::string where = "--rule '" + text + "'";
  const auto eq = text.rfind('=');
  if (eq == std::string::npos) bad_rule(where, "expected GLOB=KEY:VALUE,... (e.g. '*.mlp.*=bits:4,group:64')");
  const std::string pattern = trim(text.substr(0, eq));
  std::vector<Setting> settings;
  std::stringstream list(text.substr(eq + 1));
  for (std::string item; std::getline(list, item, ',');) {
    item = trim(item);
    if (item.empty()) continue;
    if (item == "keep") {
      settings.emplace_back("keep", "true");
      continue;
    }
    const auto colon = item.find(':');
    if (colon == std::string::npos) bad_rule(where, "'" + item + "' is not KEY:VALUE (keys: " + kKeys + ")");
    settings.emplace_back(trim(item.substr(0, colon)), trim(item.substr(colon + 1)));
  }
  return make_rule(where, pattern, settings, base, text);
}

TensorRule keep_rule(const std::string& pattern) {
  if (pattern.empty()) bad_rule("--keep", "the pattern is empty");
  check_pattern_text("--keep", pattern);
  TensorRule rule;
  rule.pattern = pattern;
  rule.keep = true;
  rule.text = pattern + "=keep";
  return rule;
}

std::vector<TensorRule> read_rules_file(const std::string& path, const QuantSpec& base) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorCode::kInputMissing, path + ": cannot read the rules file");
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string text = buffer.str();
  if (path.size() >= 5 && path.compare(path.size() - 5, 5, ".toml") == 0) return rules_from_toml(path, text, base);
  nlohmann::ordered_json root;
  try {
    root = nlohmann::ordered_json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    bad_rule(path, std::string("not valid JSON (TOML files must end in .toml): ") + e.what());
  }
  return rules_from_json(path, root, base);
}

std::string spec_summary(const QuantSpec& spec) {
  if (spec.method == Method::kGgml) {
    return std::string("ggml ") + codec::ggml::type_name(spec.ggml_type) + (spec.ggml_mse ? ", mse search" : "");
  }
  if (!spec.is_affine()) return std::string(method_name(spec.method)) + " cast";
  const std::string g = spec.granularity == Granularity::kTensor ? "per-tensor"
                      : spec.granularity == Granularity::kChannel ? "per-channel"
                      : "per-group " + std::to_string(spec.group_size);
  return fmt::format("{} {} bits, {}, {} scales", method_name(spec.method), spec.bits, g,
                     scale_dtype_name(spec.scale_dtype));
}

std::string pack_quantized_summary(const QuantizeOptions& options) {
  const PackQuantizedScheme& s = options.pack_quantized;
  return "compressed-tensors " + s.name() + ", " +
         (s.group_size == 0 ? std::string("per-channel") : "per-group " + std::to_string(s.group_size)) +
         (s.mse ? ", mse search" : "") + ", scales in the model's dtype";
}

}  // namespace wq::cli
