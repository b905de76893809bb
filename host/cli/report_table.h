// The end-of-run report of `wq-gpu quantize`: the assignment's size table plus error summary,
// as text or JSON.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "wq/pipeline.h"

namespace wq::cli {

/// The table for humans; per-tensor lines too when `per_tensor`.
std::string report_text(const QuantizeReport& report, const QuantSpec& spec, bool per_tensor);

/// Machine-readable form of the same report.
nlohmann::ordered_json report_json(const QuantizeReport& report, const QuantSpec& spec);

/// "per-channel", "per-group 128", "per-tensor"
std::string granularity_text(std::uint64_t stored_group_size, const Shape& shape);

}  // namespace wq::cli
