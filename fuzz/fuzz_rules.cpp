// The rule parsers of wq-gpu quantize (host/cli/rules.cpp): the input as a --rule value and as
// a --keep pattern, then written as rules.json and as rules.toml and read with
// read_rules_file(). Every rule that parses is described and serialised as the CLI does
// (spec_summary() for --dry-run; within settings_json(), tree mode's settings fingerprint).
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "cli/rules.h"
#include "core/json_text.h"
#include "fuzz_support.h"
#include "tree/tree_settings.h"

namespace {

wq::QuantSpec cli_defaults() {  // quantize's defaults: 8 bits per channel, f32 scales
  wq::QuantSpec spec;
  spec.bits = 8;
  spec.granularity = wq::Granularity::kChannel;
  spec.group_size = 128;
  return spec;
}

void use(const wq::TensorRule& rule) {
  wq::fuzz::touch(rule.pattern);
  wq::fuzz::touch(rule.text);
  if (!rule.keep) wq::fuzz::touch(wq::cli::spec_summary(rule.spec));
  wq::QuantizeOptions options;
  options.rules.push_back(rule);
  wq::fuzz::touch(wq::detail::json_text(wq::detail::settings_json(options)));
}

void read_file(const std::string& path, const std::uint8_t* data, std::size_t size, const wq::QuantSpec& base) {
  wq::fuzz::write_file(path, data, size);
  try {
    for (const wq::TensorRule& rule : wq::cli::read_rules_file(path, base)) use(rule);
  } catch (const wq::Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const wq::QuantSpec base = cli_defaults();
  static const std::string json_path = wq::fuzz::Scratch::get().path("rules.json");
  static const std::string toml_path = wq::fuzz::Scratch::get().path("rules.toml");
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    use(wq::cli::parse_rule(text, base));
  } catch (const wq::Error&) {
  }
  try {
    use(wq::cli::keep_rule(text));
  } catch (const wq::Error&) {
  }
  read_file(json_path, data, size, base);
  read_file(toml_path, data, size, base);
  return 0;
}
