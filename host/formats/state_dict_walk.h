// Flattening the object a checkpoint pickle holds into named tensors.
#pragma once

#include <functional>
#include <string>

#include "formats/pickle/pickle_value.h"

namespace wq::detail {

/// Calls `on_leaf(name, value)` for every non-container value reachable from `root` through
/// dicts (keys str or int, joined with '.'), in insertion order; `is_leaf(value)` says which
/// values end the walk (tensors). Nested state dicts ({"model": {...}}) thus give dotted names.
/// Containers nested deeper than 64 levels (or cyclic) are an Error naming `label`.
///
/// A pickle may refer to one dict from many places (its memo), so a small file can describe
/// a graph whose walk is exponential: every step is charged to `arena`'s budget (the name it
/// builds and a fixed cost), and a walk that exhausts it is an Error too.
void walk_state_dict(const pickle::Value* root, const std::string& label, pickle::Arena& arena,
                     const std::function<bool(const pickle::Value*)>& is_leaf,
                     const std::function<void(const std::string&, const pickle::Value*)>& on_leaf);

}  // namespace wq::detail
