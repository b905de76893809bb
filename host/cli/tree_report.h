// Tree mode's end-of-run report: one row per output file and totals, as a table or JSON.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "wq/pipeline.h"

namespace wq::cli {

struct FileRow {
  std::string input;   ///< relative path in the mirrored tree
  std::string output;  ///< relative to the output root
  std::string action;  ///< "quantized", "copied", "index", "up to date"
  std::string kind;    ///< "container", "index" or "copy"
  std::uint64_t original_bytes = 0;
  std::uint64_t output_bytes = 0;
  std::size_t encoded = 0;  ///< tensors with an error measurement
  double sqnr_min_db = 0, sqnr_median_db = 0;
  double seconds = 0;
};

/// The row of a freshly quantized file.
FileRow row_of(const QuantizeReport& report, const std::string& input, const std::string& output);

/// A row as the journal keeps it (JournalEntry::summary), and back.
nlohmann::ordered_json row_summary(const FileRow& row);
FileRow row_from_summary(const nlohmann::ordered_json& summary, const std::string& input, const std::string& output,
                         const std::string& kind);

/// The table: per file original bytes, output bytes, ratio, min/median SQNR, time; then totals.
std::string tree_table_text(const std::vector<FileRow>& rows);

/// {"settings": ..., "files": [...], "totals": {...}}
nlohmann::ordered_json tree_report_json(const std::vector<FileRow>& rows, const nlohmann::ordered_json& settings);

}  // namespace wq::cli
