#include "cli/sweep_table.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include <fmt/core.h>

#include "cli/cli_common.h"
#include "cli/sweep_settings.h"

namespace wq::cli {
namespace {

using ojson = nlohmann::ordered_json;

// One format for the column titles, the baseline and the rows, so that they line up.
constexpr const char* kColumns = "  {:<10} {:>4}  {:<14} {:>12} {:>8} {:>9} {:>8} {:>8}";

bool is_cast(const QuantizeFlags& f) { return is_cast_method(f.method); }

std::string granularity_column(const QuantizeFlags& f) {
  if (is_cast(f)) return "-";
  if (f.granularity == "group") return "per-group " + std::to_string(f.group_size);
  return "per-" + f.granularity;
}

std::string db_text(double db) { return std::isfinite(db) ? fmt::format("{:.1f}", db) : db > 0 ? "inf" : "-inf"; }

ojson finite_or_null(double v) { return std::isfinite(v) ? ojson(v) : ojson(nullptr); }

double ratio_of(std::uint64_t input, std::uint64_t output) {
  return output ? static_cast<double>(input) / static_cast<double>(output) : 0.0;
}

}  // namespace

void add_report(SweepRow& row, const QuantizeReport& report) {
  row.errors = summarise_errors(report);
  row.pooled = ErrorStats{};
  for (const TensorReport& t : report.tensors) {
    if (t.error.count != 0) row.pooled.merge(t.error);
  }
}

std::string model_line(const SweepModel& m) {
  return fmt::format("{}: {} bytes ({}), {} of {} tensors quantized; {} scales, backend {}\n", m.path,
                     with_commas(m.bytes), m.format, m.quantized, m.tensors, m.scale_dtype, m.backend);
}

SweepTableText::SweepTableText(SweepModel model, std::string eval_name)
    : model_(std::move(model)), eval_name_(std::move(eval_name)), eval_width_(std::max<std::size_t>(eval_name_.size(), 8)) {}

std::string SweepTableText::eval_column(const std::optional<EvalNumber>& eval) const {
  if (eval_name_.empty()) return "";
  return fmt::format("  {:>{}}", eval ? eval->text : "-", eval_width_);
}

std::string SweepTableText::header() const {
  std::string line = fmt::format(fmt::runtime(kColumns), "method", "bits", "granularity", "bytes", "ratio", "SQNR min",
                                 "median", "pooled");
  if (!eval_name_.empty()) line += fmt::format("  {:>{}}", eval_name_, eval_width_);
  return line + "\n";
}

std::string SweepTableText::baseline(const EvalNumber& eval) const {
  return fmt::format(fmt::runtime(kColumns), "baseline", "-", "-", with_commas(model_.bytes), "1.00x", "-", "-", "-") +
         eval_column(eval) + "\n";
}

std::string SweepTableText::row(const SweepRow& r) const {
  const bool measured = r.errors.encoded != 0;
  return fmt::format(fmt::runtime(kColumns), r.flags.method, is_cast(r.flags) ? 16 : r.flags.bits,
                     granularity_column(r.flags), with_commas(r.bytes),
                     fmt::format("{:.2f}x", ratio_of(model_.bytes, r.bytes)),
                     measured ? db_text(r.errors.sqnr_min_db) : "-", measured ? db_text(r.errors.sqnr_median_db) : "-",
                     measured ? db_text(r.pooled.sqnr_db()) : "-") +
         eval_column(r.eval) + "\n";
}

std::string SweepTableText::legend() const {
  return fmt::format("\n  SQNR in dB over the {} quantized tensors: the minimum and median of each tensor's, and pooled\n"
                     "  (10 log10 of all their signal energy over all their error energy). bytes: the container\n"
                     "  'wq-gpu quantize' writes; ratio: {} / bytes.\n",
                     model_.quantized, with_commas(model_.bytes));
}

ojson sweep_json(const SweepModel& m, const std::optional<EvalNumber>& baseline, const std::vector<SweepRow>& rows,
                 const std::string& eval_name, const std::string& eval_command) {
  ojson j;
  j["model"] = m.path;
  j["format"] = m.format;
  j["input_bytes"] = m.bytes;
  j["tensors"] = m.tensors;
  j["quantized_tensors"] = m.quantized;
  j["backend"] = m.backend;
  if (baseline) {
    j["eval_name"] = eval_name;
    j["eval_command"] = eval_command;
    j["baseline"] = {{"bytes", m.bytes}, {"ratio", 1.0}, {"eval", finite_or_null(baseline->value)}};
  }
  ojson list = ojson::array();
  for (const SweepRow& r : rows) {
    ojson e;
    const bool cast = is_cast(r.flags);
    e["method"] = r.flags.method;
    e["bits"] = cast ? 16 : r.flags.bits;
    e["granularity"] = cast ? ojson(nullptr) : ojson(r.flags.granularity);
    e["group_size"] = !cast && r.flags.granularity == "group" ? ojson(r.flags.group_size) : ojson(nullptr);
    e["scale_dtype"] = cast ? ojson(nullptr) : ojson(r.flags.scale_dtype);
    e["bytes"] = r.bytes;
    e["ratio"] = ratio_of(m.bytes, r.bytes);
    e["encoded_tensors"] = r.errors.encoded;
    const bool measured = r.errors.encoded != 0;
    e["sqnr_db_min"] = measured ? finite_or_null(r.errors.sqnr_min_db) : ojson(nullptr);
    e["sqnr_db_median"] = measured ? finite_or_null(r.errors.sqnr_median_db) : ojson(nullptr);
    e["sqnr_db_pooled"] = measured ? finite_or_null(r.pooled.sqnr_db()) : ojson(nullptr);
    if (r.eval) e["eval"] = finite_or_null(r.eval->value);
    list.push_back(std::move(e));
  }
  j["rows"] = std::move(list);
  return j;
}

}  // namespace wq::cli
