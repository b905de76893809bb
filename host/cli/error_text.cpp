#include "cli/error_text.h"

namespace wq::cli {
namespace {

std::string flag_text(const ErrorHint& h) {
  const std::string& o = h.option;
  if (o == "keep_nonfinite") return "use --keep-nonfinite to store such tensors raw";
  if (o == "allow_requantize") return "allow it with --allow-requantize";
  if (o == "keep") return "keep it with --keep" + (h.value.empty() ? std::string() : " '" + h.value + "'");
  if (o == "scale_dtype_f32") return "use --scale-dtype f32";
  if (o == "method_bf16") return "use --method bf16 for wide ranges";
  if (o == "ggml_type") return "choose a type with --type, or type: in a rule";
  if (o == "ignore") return "leave the module out with --ignore" + (h.value.empty() ? std::string() : " '" + h.value + "'");
  if (o == "group_size") return "choose a --group-size that divides it";
  if (o == "channel") return "use --granularity channel";
  if (o == "max_expanded_view_bytes") return "raise the limit with --max-view-expansion SIZE";
  if (o == "gguf_long_names") return "--gguf-long-names writes them anyway";
  if (o == "gpu_memory") return "set --gpu-memory lower";
  if (o == "backend_cpu") return "use --backend cpu or auto";
  if (o == "copy_unreadable") return "to copy such files unchanged instead, add --copy-unreadable";
  return "";
}

}  // namespace

std::string error_text(const Error& e) {
  std::string hints;
  for (const ErrorHint& h : e.hints()) {
    const std::string text = flag_text(h);
    if (text.empty()) continue;
    hints += (hints.empty() ? "" : ", or ") + text;
  }
  return hints.empty() ? std::string(e.what()) : std::string(e.what()) + " (" + hints + ")";
}

}  // namespace wq::cli
