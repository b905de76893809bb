#include <fnmatch.h>

#include <cctype>
#include <filesystem>
#include <string>
#include <system_error>

#include "core/packed_jobs.h"
#include "pipeline/output_path.h"
#include "wq/error.h"
#include "wq/pipeline.h"

namespace wq {

namespace {

bool matches(const std::string& pattern, const std::string& name) {
  return ::fnmatch(pattern.c_str(), name.c_str(), 0) == 0;
}

}  // namespace

std::string PackQuantizedScheme::name() const {
  // Only 4 and 8 are valid (validate()); the digit is the width either way.
  std::string name = "W0A16";
  name[1] = static_cast<char>('0' + bits % 10);
  if (!symmetric) name += "_ASYM";
  return name;
}

void PackQuantizedScheme::validate() const {
  if (bits != 4 && bits != 8) {
    throw Error(ErrorCode::kUsage, "compressed-tensors output takes 4 or 8 bits (W4A16, W8A16), not " +
                                       std::to_string(bits) +
                                       ": other widths are packed differently by different compressed-tensors "
                                       "versions, and vLLM's kernels take 4 and 8");
  }
}

PackQuantizedScheme PackQuantizedScheme::named(std::string_view name) {
  std::string upper(name);
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (upper != "W4A16" && upper != "W4A16_ASYM" && upper != "W8A16" && upper != "W8A16_ASYM") {
    throw Error(ErrorCode::kUsage, "scheme '" + std::string(name) +
                                       "': compressed-tensors output takes W4A16, W4A16_ASYM, W8A16 or W8A16_ASYM");
  }
  PackQuantizedScheme scheme;
  scheme.bits = upper[1] - '0';
  scheme.symmetric = !upper.ends_with("_ASYM");
  return scheme;
}

bool is_linear_weight(const TensorInfo& tensor, const PackQuantizedScheme& scheme) {
  if (!is_floating(tensor.dtype) || tensor.shape.size() != 2 || element_count(tensor.shape) == 0) return false;
  const std::string module = detail::weight_module(tensor.name);
  if (module.empty() || module == tensor.name) return false;  // not MODULE.weight
  const auto dot = module.rfind('.');
  const std::string last = dot == std::string::npos ? module : module.substr(dot + 1);
  if (last.find("embed") != std::string::npos || last == "wte" || last == "wpe") return false;
  for (const std::string& glob : scheme.ignore) {
    if (matches(glob, module)) return false;
  }
  return true;
}

TensorChoice choose_encoding(const TensorInfo& tensor, const QuantizeOptions& options) {
  TensorChoice choice;
  choice.spec = options.spec;
  if (options.output_format == OutputFormat::kCompressedTensors) {
    // The scheme decides alone: rules and --all do not apply to this format.
    const PackQuantizedScheme& scheme = options.pack_quantized;
    if (!is_linear_weight(tensor, scheme)) return choice;
    choice.spec.method = scheme.mse ? Method::kMse : scheme.symmetric ? Method::kSymmetric : Method::kMinMax;
    choice.spec.bits = scheme.bits;
    choice.spec.granularity = scheme.group_size == 0 ? Granularity::kChannel : Granularity::kGroup;
    if (scheme.group_size != 0) choice.spec.group_size = scheme.group_size;
    choice.encoding = Encoding::kPackQuantized;
    return choice;
  }
  if (!is_floating(tensor.dtype)) return choice;
  const std::uint64_t n = element_count(tensor.shape);
  // Default: weights (>= 2 dimensions). --all: every floating tensor with >= 2 elements, as
  // the assignment did. Tensors with no elements have nothing to encode.
  const bool weight = tensor.shape.size() >= 2 && n > 0;
  const bool wanted = weight || (options.all && n >= 2);
  if (!wanted) return choice;
  for (const TensorRule& rule : options.rules) {
    if (::fnmatch(rule.pattern.c_str(), tensor.name.c_str(), 0) != 0) continue;
    choice.rule = &rule;
    if (rule.keep) return choice;
    choice.spec = rule.spec;
    break;
  }
  const bool blocks = choice.spec.method == Method::kGgml && choice.spec.ggml_type != codec::ggml::Type::kF32;
  choice.encoding = blocks                                     ? Encoding::kGgml
                    : !choice.spec.is_affine()                 ? Encoding::kCast
                    : choice.spec.method == Method::kSymmetric ? Encoding::kSymmetric
                                                               : Encoding::kAffine;
  return choice;
}

Encoding planned_encoding(const TensorInfo& tensor, const QuantizeOptions& options) {
  return choose_encoding(tensor, options).encoding;
}

namespace detail {

void check_output_path(const std::string& input, const std::string& output) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path out(output);
  if (output.empty()) throw Error(ErrorCode::kUsage, "no output path given (-o is empty)");
  if (fs::is_directory(out, ec)) {
    throw Error(ErrorCode::kOutput, output + ": is a folder; give the output file's path");
  }
  // An existing output is the input when both name one file. A missing one can only be the
  // input when the input is missing too (then the paths decide); weakly_canonical costs a
  // readlink per path component, which tree mode would pay for every file.
  const bool same = fs::exists(out, ec) ? fs::equivalent(fs::path(input), out, ec)
                    : !fs::exists(fs::path(input), ec) &&
                          fs::weakly_canonical(fs::path(input), ec) == fs::weakly_canonical(out, ec);
  if (same) throw Error(ErrorCode::kOutput, output + ": is the input file; refusing to overwrite it");
  const fs::path parent = out.parent_path().empty() ? fs::path(".") : out.parent_path();
  if (!fs::is_directory(parent, ec)) {
    throw Error(ErrorCode::kOutput, output + ": folder '" + parent.string() + "' does not exist");
  }
}

void check_cancel(const std::atomic<bool>* cancel) {
  if (cancel != nullptr && cancel->load(std::memory_order_relaxed)) {
    throw Error(ErrorCode::kInterrupted, "interrupted; no output was written");
  }
}

}  // namespace detail
}  // namespace wq
