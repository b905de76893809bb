// The JSON text of what the CLI prints and writes (reports, `--json`, the journal).
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace wq::cli {

/// `j` as JSON text (`indent` as nlohmann's dump: -1 for one line). File names are any bytes
/// but JSON is UTF-8, and dump() throws on a byte that is not: each such byte is written as
/// U+FFFD instead, as detail::valid_utf8() does for a container's `source.file`. What must be
/// matched again (the journal's keys) is encoded losslessly before it gets here.
inline std::string json_text(const nlohmann::ordered_json& j, int indent = -1) {
  return j.dump(indent, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace wq::cli
