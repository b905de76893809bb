#include "cli/tree_report.h"

#include <cmath>

#include <fmt/core.h>

#include "cli/cli_common.h"

namespace wq::cli {
namespace {

using ojson = nlohmann::ordered_json;

ojson finite_or_null(double v) { return std::isfinite(v) ? ojson(v) : ojson(nullptr); }

std::string sqnr_cell(const TreeFileReport& r) {
  if (r.encoded == 0) return "-";
  const auto one = [](double db) { return std::isfinite(db) ? fmt::format("{:.1f}", db) : std::string("inf"); };
  return one(r.sqnr_min_db) + " / " + one(r.sqnr_median_db) + " dB";
}

double ratio(std::uint64_t in, std::uint64_t out) {
  return out == 0 ? 0.0 : static_cast<double>(in) / static_cast<double>(out);
}

}  // namespace

std::string tree_table_text(const std::vector<TreeFileReport>& rows) {
  std::size_t width = 4;
  for (const TreeFileReport& r : rows) width = std::max(width, r.output.size());
  width = std::min<std::size_t>(width, 60);
  std::string out = fmt::format("  {:<{}} {:<10} {:>15} {:>14} {:>8} {:>18} {:>8}\n", "file", width, "action",
                                "original bytes", "output bytes", "ratio", "SQNR min/median", "time");
  std::uint64_t in_total = 0, out_total = 0;
  double seconds = 0;
  std::size_t done = 0, current = 0;
  for (const TreeFileReport& r : rows) {
    out += fmt::format("  {:<{}} {:<10} {:>15} {:>14} {:>7.2f}x {:>18} {:>7.2f}s\n", r.output, width, r.action,
                       with_commas(r.original_bytes), with_commas(r.output_bytes), ratio(r.original_bytes, r.output_bytes),
                       sqnr_cell(r), r.seconds);
    in_total += r.original_bytes;
    out_total += r.output_bytes;
    seconds += r.seconds;
    (r.action == "up to date" ? current : done)++;
  }
  out += fmt::format("  {:<{}} {:<10} {:>15} {:>14} {:>7.2f}x {:>18} {:>7.2f}s\n",
                     fmt::format("total: {} files", rows.size()), width, "", with_commas(in_total),
                     with_commas(out_total), ratio(in_total, out_total), "", seconds);
  out += fmt::format("{} written, {} up to date\n", done, current);
  return out;
}

ojson tree_report_json(const std::vector<TreeFileReport>& rows, const ojson& settings) {
  ojson j;
  j["settings"] = settings;
  ojson files = ojson::array();
  std::uint64_t in_total = 0, out_total = 0;
  double seconds = 0;
  std::size_t up_to_date = 0;
  for (const TreeFileReport& r : rows) {
    ojson f;
    f["input"] = r.input;
    f["output"] = r.output;
    f["kind"] = r.kind;
    f["action"] = r.action;
    f["original_bytes"] = r.original_bytes;
    f["output_bytes"] = r.output_bytes;
    f["ratio"] = ratio(r.original_bytes, r.output_bytes);
    f["encoded_tensors"] = r.encoded;
    f["sqnr_min_db"] = r.encoded ? finite_or_null(r.sqnr_min_db) : ojson(nullptr);
    f["sqnr_median_db"] = r.encoded ? finite_or_null(r.sqnr_median_db) : ojson(nullptr);
    f["seconds"] = r.seconds;
    files.push_back(std::move(f));
    in_total += r.original_bytes;
    out_total += r.output_bytes;
    seconds += r.seconds;
    up_to_date += r.action == "up to date";
  }
  j["files"] = std::move(files);
  j["totals"] = {{"files", rows.size()},          {"written", rows.size() - up_to_date},
                 {"up_to_date", up_to_date},      {"original_bytes", in_total},
                 {"output_bytes", out_total},     {"ratio", ratio(in_total, out_total)},
                 {"seconds", seconds}};
  return j;
}

}  // namespace wq::cli
