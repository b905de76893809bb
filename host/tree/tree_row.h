// A tree run's report rows (wq::TreeFileReport): of a freshly written output, and as the
// journal keeps them so that a resumed run still reports every file.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "wq/pipeline.h"
#include "wq/tree.h"

namespace wq::detail {

/// The row of a freshly quantized file.
TreeFileReport row_of(const QuantizeReport& report, const std::string& input, const std::string& output);

/// A row as the journal keeps it (JournalEntry::summary), and back (action "up to date").
nlohmann::ordered_json row_summary(const TreeFileReport& row);
TreeFileReport row_from_summary(const nlohmann::ordered_json& summary, const std::string& input,
                                const std::string& output, const std::string& kind);

}  // namespace wq::detail
