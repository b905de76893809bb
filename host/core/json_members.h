// Building large JSON objects in linear time.
#pragma once

#include <string>
#include <utility>

#include <nlohmann/json.hpp>

namespace wq::detail {

/// Appends a member to the JSON object `object` without looking for `key` first: ordered_json
/// finds a key by a linear search, so adding n members with operator[] takes O(n^2) (a
/// container of 50,000 tensors took 50 s to write its header). The dump is the same bytes.
/// The caller guarantees that `key` is not in `object` yet.
inline void append_member(nlohmann::ordered_json& object, std::string key, nlohmann::ordered_json value) {
  object.get_ref<nlohmann::ordered_json::object_t&>().emplace_back(std::move(key), std::move(value));
}

}  // namespace wq::detail
