// Building pickle opcode streams for the .pt and .pdparams writers.
//
// Emits only the opcodes the writers need, in the spelling Python's own pickler uses for the
// chosen protocol, so the output reads back through CPython's pickle, torch's weights_only
// unpickler (protocol 2) and wq's restricted unpickler. It is a plain byte builder: large
// payloads (array bytes) are not copied in; the writers take the opcodes so far with take(),
// write the payload themselves, then go on.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace wq::detail {

class PickleEmitter {
 public:
  /// Emits PROTO `protocol` (2 or 4).
  explicit PickleEmitter(int protocol);

  /// The bytes emitted since the last take(), which are then dropped from the builder.
  std::string take();

  /// A module attribute: GLOBAL at protocol 2, STACK_GLOBAL at 4.
  PickleEmitter& global(const std::string& module, const std::string& name);
  PickleEmitter& str(const std::string& utf8);
  /// An int: BININT1 / BININT2 / BININT, or LONG1 beyond 32 bits.
  PickleEmitter& integer(std::int64_t value);
  PickleEmitter& uinteger(std::uint64_t value);
  PickleEmitter& boolean(bool value);
  PickleEmitter& none();
  /// The opcode and length of a bytes object of `size` bytes (protocol >= 3); the caller
  /// writes the bytes themselves right after.
  PickleEmitter& bytes_header(std::uint64_t size);
  /// A whole (small) bytes object.
  PickleEmitter& bytes(const std::string& data);

  PickleEmitter& mark();
  PickleEmitter& empty_tuple();
  /// Builds a tuple of the last `n` items: TUPLE1..3 for 1 to 3, else the caller must have
  /// called mark() first and TUPLE is emitted.
  PickleEmitter& tuple(std::size_t n);
  /// A whole tuple of unsigned ints (shapes, strides), spelled as Python spells it.
  PickleEmitter& uint_tuple(const std::vector<std::uint64_t>& values);
  PickleEmitter& empty_dict();
  PickleEmitter& setitems();  ///< pairs since the last mark()
  PickleEmitter& reduce();
  PickleEmitter& build();
  PickleEmitter& binpersid();
  PickleEmitter& stop();

  /// Stores the top of the stack in the memo (BINPUT / LONG_BINPUT at protocol 2, MEMOIZE at
  /// 4) and returns its index for get().
  std::uint32_t memoize();
  PickleEmitter& get(std::uint32_t index);

 private:
  PickleEmitter& op(char code);
  PickleEmitter& le(std::uint64_t value, int bytes);

  int protocol_;
  std::uint32_t memo_size_ = 0;
  std::string out_;
};

}  // namespace wq::detail
