#include "formats/state_dict_walk.h"

#include "wq/error.h"

namespace wq::detail {
namespace {

using pickle::Kind;
using pickle::Value;

// What one step of the walk is charged besides its name: about what the reader keeps for a
// tensor it finds.
constexpr std::uint64_t kStepBytes = 64;

void walk(const Value* v, const std::string& prefix, int depth, const std::string& label, pickle::Arena& arena,
          const std::function<bool(const Value*)>& is_leaf,
          const std::function<void(const std::string&, const Value*)>& on_leaf) {
  if (depth > 64) throw Error(ErrorCode::kBadFormat, label + ": state dict nested too deeply (or cyclic)");
  if (!arena.charge(kStepBytes + prefix.size())) {
    throw Error(ErrorCode::kBadFormat, label + ": state dict refers to its parts too many times for a pickle of its size");
  }
  if (is_leaf(v)) {
    on_leaf(prefix.empty() ? "tensor" : prefix, v);
    return;
  }
  if (!v->is(Kind::kDict)) return;  // numbers, strings, lists: not tensors, not kept
  for (const auto& [key, value] : v->entries) {
    std::string name;
    if (key->is(Kind::kStr)) {
      name = key->text;
    } else if (key->is(Kind::kInt)) {
      name = std::to_string(key->integer);
    } else {
      continue;
    }
    walk(value, prefix.empty() ? name : prefix + "." + name, depth + 1, label, arena, is_leaf, on_leaf);
  }
}

}  // namespace

void walk_state_dict(const Value* root, const std::string& label, pickle::Arena& arena,
                     const std::function<bool(const Value*)>& is_leaf,
                     const std::function<void(const std::string&, const Value*)>& on_leaf) {
  walk(root, "", 0, label, arena, is_leaf, on_leaf);
}

}  // namespace wq::detail
