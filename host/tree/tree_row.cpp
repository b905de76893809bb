#include "tree/tree_row.h"

#include <cmath>
#include <cstdint>
#include <limits>

namespace wq::detail {
namespace {

using ojson = nlohmann::ordered_json;

ojson finite_or_null(double v) { return std::isfinite(v) ? ojson(v) : ojson(nullptr); }

// JSON has no infinity: an exact tensor's SQNR (+inf) is stored as null and read back as inf.
double number_or_inf(const ojson& v) {
  return v.is_number() ? v.get<double>() : std::numeric_limits<double>::infinity();
}

}  // namespace

TreeFileReport row_of(const QuantizeReport& report, const std::string& input, const std::string& output) {
  const ErrorSummary s = summarise_errors(report);
  TreeFileReport row;
  row.input = input;
  row.output = output;
  row.action = "quantized";
  row.kind = "container";
  row.original_bytes = report.input_bytes;
  row.output_bytes = report.output_bytes;
  row.encoded = s.encoded;
  row.sqnr_min_db = s.sqnr_min_db;
  row.sqnr_median_db = s.sqnr_median_db;
  row.seconds = report.seconds;
  return row;
}

ojson row_summary(const TreeFileReport& row) {
  ojson j;
  j["original_bytes"] = row.original_bytes;
  j["output_bytes"] = row.output_bytes;
  j["encoded_tensors"] = row.encoded;
  j["sqnr_min_db"] = finite_or_null(row.sqnr_min_db);
  j["sqnr_median_db"] = finite_or_null(row.sqnr_median_db);
  j["seconds"] = row.seconds;
  return j;
}

TreeFileReport row_from_summary(const ojson& s, const std::string& input, const std::string& output,
                                const std::string& kind) {
  TreeFileReport row;
  row.input = input;
  row.output = output;
  row.action = "up to date";
  row.kind = kind;
  row.original_bytes = s.value("original_bytes", std::uint64_t{0});
  row.output_bytes = s.value("output_bytes", std::uint64_t{0});
  row.encoded = s.value("encoded_tensors", std::size_t{0});
  if (row.encoded != 0) {
    row.sqnr_min_db = number_or_inf(s.value("sqnr_min_db", ojson()));
    row.sqnr_median_db = number_or_inf(s.value("sqnr_median_db", ojson()));
  }
  row.seconds = s.value("seconds", 0.0);
  return row;
}

}  // namespace wq::detail
