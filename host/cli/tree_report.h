// Tree mode's end-of-run report (wq::TreeReport): one row per output file and totals, as a
// table or JSON.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "wq/tree.h"

namespace wq::cli {

/// The table: per file original bytes, output bytes, ratio, min/median SQNR, time; then totals.
std::string tree_table_text(const std::vector<TreeFileReport>& rows);

/// {"settings": ..., "files": [...], "totals": {...}}
nlohmann::ordered_json tree_report_json(const std::vector<TreeFileReport>& rows, const nlohmann::ordered_json& settings);

}  // namespace wq::cli
