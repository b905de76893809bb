#include "cli/report_table.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <vector>

#include <fmt/core.h>

#include "cli/cli_common.h"
#include "cli/rules.h"

namespace wq::cli {
namespace {

nlohmann::ordered_json finite_or_null(double v) {
  return std::isfinite(v) ? nlohmann::ordered_json(v) : nlohmann::ordered_json(nullptr);
}

std::string sqnr_text(double db) { return std::isfinite(db) ? fmt::format("{:.1f}", db) : "inf"; }

std::string shape_text(const Shape& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace

std::string granularity_text(std::uint64_t stored_group_size, const Shape& shape) {
  if (stored_group_size == 0) return "per-tensor";
  const std::uint64_t n = element_count(shape);
  const std::uint64_t rows = shape.size() >= 2 ? shape[0] : 1;
  if (rows != 0 && stored_group_size == n / rows) return "per-channel";
  return "per-group " + std::to_string(stored_group_size);
}

std::string report_text(const QuantizeReport& r, const QuantSpec& spec, bool per_tensor) {
  const ErrorSummary s = summarise_errors(r);
  std::size_t affine = 0, cast = 0, raw = 0;
  for (const TensorReport& t : r.tensors) {
    (has_codes(t.encoding) || t.encoding == Encoding::kGgml || t.encoding == Encoding::kPackQuantized ? affine
     : t.encoding == Encoding::kCast                                                                  ? cast
                                                                                                      : raw)++;
  }
  // compressed-tensors output: the scheme replaces the spec (every quantized tensor has it).
  std::string header = spec_summary(spec);
  for (const TensorReport& t : r.tensors) {
    if (t.encoding == Encoding::kPackQuantized) {
      header = "compressed-tensors " + t.range + ", " +
               (t.group_size == 0 ? std::string("per-channel") : "per-group " + std::to_string(t.group_size));
      break;
    }
  }
  std::string out;
  out += fmt::format("{} -> {}\n", r.input, r.output);
  out += fmt::format("{}; backend {}\n\n", header, r.backend);
  if (per_tensor) {
    out += fmt::format("  {:<40} {:>5} {:>16} {:>8} {:>12} {:>10} {:>8} {:>10}\n", "tensor", "dtype",
                       "shape", "encoding", "bytes in", "bytes out", "SQNR dB", "max|err|");
    for (const TensorReport& t : r.tensors) {
      // The method shows where it is not the default: "4b mse", "4b sym".
      const std::string enc = t.encoding == Encoding::kGgml || t.encoding == Encoding::kPackQuantized ? t.range
                              : !has_codes(t.encoding) ? std::string(encoding_name(t.encoding))
                              : t.range == "minmax"  ? fmt::format("{}b", t.bits)
                              : t.range == "symmetric" ? fmt::format("{}b sym", t.bits)
                                                       : fmt::format("{}b {}", t.bits, t.range);
      out += fmt::format("  {:<40} {:>5} {:>16} {:>8} {:>12} {:>10} {:>8} {:>10}{}\n", t.name,
                         dtype_name(t.dtype), shape_text(t.shape), enc, with_commas(t.input_bytes),
                         with_commas(t.output_bytes), t.error.count ? sqnr_text(t.error.sqnr_db()) : "-",
                         t.error.count ? fmt::format("{:.3g}", t.error.max_abs_error) : "-",
                         t.note.empty() ? "" : "  (" + t.note + ")");
    }
    out += "\n";
  }
  const double ratio = r.output_bytes ? static_cast<double>(r.input_bytes) / static_cast<double>(r.output_bytes) : 0.0;
  out += fmt::format("  {:<32} {:>14} {:>14} {:>7} {:>18} {:>10} {:>8}\n", "file", "original bytes",
                     "output bytes", "ratio", "SQNR min/median", "max|err|", "time");
  out += fmt::format("  {:<32} {:>14} {:>14} {:>6.2f}x {:>18} {:>10} {:>7.2f}s\n",
                     std::filesystem::path(r.input).filename().string(), with_commas(r.input_bytes),
                     with_commas(r.output_bytes), ratio,
                     s.encoded ? sqnr_text(s.sqnr_min_db) + " / " + sqnr_text(s.sqnr_median_db) + " dB" : "-",
                     s.encoded ? fmt::format("{:.3g}", s.max_abs_error) : "-", r.seconds);
  out += fmt::format("\n  tensors: {} quantized, {} cast, {} kept raw\n", affine, cast, raw);
  for (const TensorReport& t : r.tensors) {
    if (!t.note.empty()) out += fmt::format("  note: {}: {}\n", t.name, t.note);
  }
  return out;
}

nlohmann::ordered_json report_json(const QuantizeReport& r, const QuantSpec& spec) {
  const ErrorSummary s = summarise_errors(r);
  nlohmann::ordered_json j;
  j["input"] = r.input;
  j["output"] = r.output;
  j["format"] = r.format;
  j["backend"] = r.backend;
  j["spec"] = {{"method", std::string(method_name(spec.method))}, {"bits", spec.bits},
               {"granularity", std::string(granularity_name(spec.granularity))},
               {"group_size", spec.group_size}, {"scale_dtype", std::string(scale_dtype_name(spec.scale_dtype))}};
  if (spec.method == Method::kGgml) {
    j["spec"]["type"] = codec::ggml::type_name(spec.ggml_type);
    if (spec.ggml_mse) j["spec"]["search"] = "mse";
  }
  j["input_bytes"] = r.input_bytes;
  j["output_bytes"] = r.output_bytes;
  j["ratio"] = r.output_bytes ? static_cast<double>(r.input_bytes) / static_cast<double>(r.output_bytes) : 0.0;
  j["seconds"] = r.seconds;
  j["summary"] = {{"encoded_tensors", s.encoded}, {"sqnr_db_min", finite_or_null(s.sqnr_min_db)},
                  {"sqnr_db_median", finite_or_null(s.sqnr_median_db)}, {"max_abs_error", s.max_abs_error}};
  nlohmann::ordered_json tensors = nlohmann::ordered_json::array();
  for (const TensorReport& t : r.tensors) {
    nlohmann::ordered_json e;
    e["name"] = t.name;
    e["dtype"] = std::string(dtype_name(t.dtype));
    e["shape"] = t.shape;
    e["encoding"] = std::string(encoding_name(t.encoding));
    if (has_codes(t.encoding)) {
      e["method"] = t.range;
      e["bits"] = t.bits;
      e["group_size"] = t.group_size;
      e["groups"] = t.groups;
    } else if (t.encoding == Encoding::kGgml) {
      // The report's range reads "Q4_0" or "Q4_0 mse": the type, then how its blocks were chosen.
      const std::size_t space = t.range.find(' ');
      e["type"] = t.range.substr(0, space);
      if (space != std::string::npos) e["search"] = t.range.substr(space + 1);
      e["blocks"] = t.groups;
    } else if (t.encoding == Encoding::kPackQuantized) {
      e["scheme"] = t.range;
      e["bits"] = t.bits;
      e["group_size"] = t.group_size;  // 0: one group per output row
      e["groups"] = t.groups;
    }
    e["input_bytes"] = t.input_bytes;
    e["output_bytes"] = t.output_bytes;
    if (t.error.count) {
      e["sqnr_db"] = finite_or_null(t.error.sqnr_db());
      e["max_abs_error"] = t.error.max_abs_error;
    }
    if (!t.note.empty()) e["note"] = t.note;
    tensors.push_back(std::move(e));
  }
  j["tensors"] = std::move(tensors);
  return j;
}

}  // namespace wq::cli
