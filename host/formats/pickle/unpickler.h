// A restricted unpickler: reads the pickles that checkpoints are made of and nothing else.
//
// It implements the opcode subset of formats.md §6 (protocols 2 to 5, no text protocol).
// GLOBAL and STACK_GLOBAL produce symbols, never callables; only the symbols on an allow-list
// are accepted at all, and REDUCE, NEWOBJ and BUILD are carried out only for the known
// (symbol, argument shape) patterns of torch, numpy and Paddle checkpoints. Anything else
// (os.system, builtins.eval, subprocess, getattr, an unknown module) is an Error naming the
// file and the symbol, and nothing is ever executed. Stack depth, memo size, value count and
// every length are bounded.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

#include "formats/pickle/pickle_value.h"

namespace wq::detail::pickle {

/// Called for BINPERSID with the persistent id; returns the value it stands for.
using PersistentLoad = std::function<Value*(Value* pid)>;

class Unpickler {
 public:
  /// Memory budget a pickle grants its arena: kFixedBudgetBytes plus kBudgetPerInputByte for
  /// each of its bytes. The densest real pickles measured need 32 bytes per byte (2000 tiny
  /// arrays pickled at protocol 4, or a torch data.pkl of 2000 tensors with short names;
  /// docs/input-limits.md), a third of the budget; a pickle that needs more than the budget
  /// (one that refers to its own parts over and over) is refused as malformed.
  static constexpr std::uint64_t kFixedBudgetBytes = 32ull << 20;
  static constexpr std::uint64_t kBudgetPerInputByte = 96;

  /// `label` names the input in errors ("model.pt:archive/data.pkl"). Grants `arena` the
  /// budget for `size` bytes of pickle.
  Unpickler(const std::byte* data, std::size_t size, std::string label, Arena& arena,
            PersistentLoad persistent_load = {});

  /// Runs until STOP and returns the result. Throws Error(kBadFormat) on a malformed or
  /// refused pickle.
  Value* load();

  /// Bytes consumed by the last load() (pickles can follow each other in one file).
  std::size_t consumed() const noexcept { return pos_; }

 private:
  [[noreturn]] void fail(const std::string& what) const;
  Value* make(Kind kind);
  /// Counts `bytes` (a string, `count` list slots) against the arena's budget or fails.
  void charge(std::uint64_t bytes);
  void charge_slots(std::uint64_t count, std::uint64_t slot_bytes = sizeof(Value*));
  const std::byte* take(std::size_t n);
  std::uint64_t read_le(std::size_t n);
  Value* pop();
  Value* top();
  std::vector<Value*> pop_mark();
  void push(Value* v);
  Value* global(const std::string& module, const std::string& name);
  Value* reduce(Value* callable, Value* args);
  void build(Value* target, Value* state);
  Value* text_value(std::size_t n);
  Value* bytes_value(std::size_t n);

  const std::byte* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
  std::string label_;
  Arena& arena_;
  PersistentLoad persistent_load_;
  std::vector<Value*> stack_;
  std::vector<std::size_t> marks_;
  std::vector<Value*> memo_;
};

/// Helpers for the readers walking a loaded value.
std::string describe(const Value* v);
/// The integer elements of a tuple of ints (shape, stride); throws via `fail` when not.
bool int_tuple(const Value* v, std::vector<std::int64_t>* out);

}  // namespace wq::detail::pickle
