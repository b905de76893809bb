// Values of the restricted unpickler: plain data, and symbols for the few known callables.
//
// A pickle can describe any Python object graph, including cycles; here every value lives in
// an Arena owned by the caller and refers to others by plain pointers, so hostile graphs
// (self-referencing lists, huge fan-out) cost bounded memory and never leak.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace wq::detail::pickle {

enum class Kind {
  kNone, kBool, kInt, kFloat, kStr, kBytes, kTuple, kList, kDict,
  kGlobal,  ///< a module.name symbol from GLOBAL/STACK_GLOBAL; never called
  kObject,  ///< the result of a known (callable, arguments) pattern; see `tag`
};

// Kept small: its size is most of what a pickle costs in memory (host/formats/pickle/unpickler.h).
struct Value {
  Kind kind = Kind::kNone;
  bool boolean = false;
  std::int64_t integer = 0;
  double real = 0.0;
  /// kStr: UTF-8 text; kGlobal: "module.name"; kObject: the pattern's tag ("numpy.ndarray",
  /// "torch.tensor", ...); kBytes: the bytes when they had to be decoded.
  std::string text;
  /// kBytes: a view of the input buffer, or of `text` when the bytes had to be decoded.
  std::string_view bytes;
  /// kTuple/kList items; kObject: the call's arguments.
  std::vector<Value*> items;
  /// kDict entries in insertion order.
  std::vector<std::pair<Value*, Value*>> entries;
  /// kObject: the state given by BUILD (nullptr when none).
  Value* state = nullptr;

  bool is(Kind k) const { return kind == k; }
  bool is_object(std::string_view tag) const { return kind == Kind::kObject && text == tag; }
};

/// Owns every Value of one load; values stay valid while the arena lives.
///
/// It also keeps the memory budget of what it owns: the values themselves (sizeof(Value)
/// each) and what the unpickler adds to them (strings, item and entry lists). Each Unpickler
/// grants the budget in proportion to the bytes it reads (see Unpickler), so that memory
/// grows linearly with the input whatever the pickle does: a memo entry referenced a million
/// times costs a pointer per reference, and once the budget is spent loading stops with an
/// error instead of exhausting the machine.
class Arena {
 public:
  explicit Arena(std::size_t max_values = 4'000'000) : max_values_(max_values) {}
  /// nullptr once the value limit or the budget is reached (the unpickler turns that into an
  /// error).
  Value* make(Kind kind) {
    if (values_.size() >= max_values_ || !charge(sizeof(Value))) return nullptr;
    values_.emplace_back();
    values_.back().kind = kind;
    return &values_.back();
  }
  /// Counts `bytes` more against the budget; false (and nothing counted) when they do not fit.
  bool charge(std::uint64_t bytes) {
    if (bytes > budget_ - used_) return false;
    used_ += bytes;
    return true;
  }
  /// Raises the budget by `bytes`.
  void grant(std::uint64_t bytes) { budget_ = bytes > UINT64_MAX - budget_ ? UINT64_MAX : budget_ + bytes; }
  std::uint64_t used() const noexcept { return used_; }
  std::uint64_t budget() const noexcept { return budget_; }

 private:
  std::deque<Value> values_;  // a deque never moves its elements
  std::size_t max_values_;
  std::uint64_t budget_ = 0;
  std::uint64_t used_ = 0;
};

}  // namespace wq::detail::pickle
