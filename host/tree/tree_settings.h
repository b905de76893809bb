// The settings of a tree run as canonical JSON: the journal keys every output by their hash,
// so that a file made with other settings is redone, and the report shows them.
#pragma once

#include <nlohmann/json.hpp>

#include "wq/pipeline.h"

namespace wq::detail {

/// Everything that decides an output's bytes (producer, spec, output format, policy, rules).
nlohmann::ordered_json settings_json(const QuantizeOptions& options);

}  // namespace wq::detail
