#include "cli/plan_text.h"

#include <fmt/core.h>

#include "cli/cli_common.h"
#include "cli/rules.h"

namespace wq::cli {
namespace {

std::string shape_text(const Shape& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i != 0) s += ',';
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

}  // namespace

std::string plan_tensor_lines(const QuantizeReport& plan, const QuantizeOptions& options) {
  std::string out;
  for (const TensorReport& t : plan.tensors) {
    // The report does not carry the spec; choose_encoding() gives the same answer again.
    const TensorChoice choice = choose_encoding(TensorInfo{t.name, t.dtype, t.shape}, options);
    // The report knows what planning settled on (a ggml type after a row fallback, a preset's
    // type); the spec alone does not.
    const std::string encoding = t.encoding == Encoding::kRaw    ? std::string("raw")
                                 : t.encoding == Encoding::kGgml ? "ggml " + t.range
                                 : t.encoding == Encoding::kPackQuantized
                                     ? t.range + (t.group_size == 0 ? std::string(", per-channel")
                                                                    : ", per-group " + std::to_string(t.group_size))
                                 : t.encoding == Encoding::kCast && choice.spec.method == Method::kGgml
                                     ? std::string("fp16 cast (rows not whole blocks)")
                                     : spec_summary(choice.spec);
    const std::string why = t.rule.empty() ? (t.encoding == Encoding::kRaw ? "policy" : "default") : "rule " + t.rule;
    out += fmt::format("    {:<40} {:>5} {:>14}  {:<40} {:>12} -> {:>12}  {}\n", t.name, dtype_name(t.dtype),
                       shape_text(t.shape), encoding, with_commas(t.input_bytes), with_commas(t.output_bytes), why);
  }
  return out;
}

}  // namespace wq::cli
