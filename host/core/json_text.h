// The JSON text wq writes: container headers, the CLI's reports and `--json`, the tree journal.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace wq::detail {

/// `j` as JSON text (`indent` as nlohmann's dump: -1 for one line). File names are any bytes
/// POSIX allows, JSON only UTF-8, and dump() throws on a byte that is not: such bytes are
/// written as U+FFFD instead (nlohmann's error_handler_t::replace), where a name is only shown
/// (a container's `source.file`, a report). Tensor names and rule patterns never get here
/// invalid (the readers and the rule parser refuse them), and what must be matched again (the
/// journal's paths) is encoded losslessly before.
inline std::string json_text(const nlohmann::ordered_json& j, int indent = -1) {
  return j.dump(indent, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace wq::detail
