#include "formats/pickle_emitter.h"

#include "wq/error.h"

namespace wq::detail {
namespace {

// Opcodes (CPython Lib/pickle.py).
constexpr char kProto = '\x80';
constexpr char kGlobal = 'c';
constexpr char kStackGlobal = '\x93';
constexpr char kBinUnicode = 'X';
constexpr char kShortBinUnicode = '\x8c';
constexpr char kBinUnicode8 = '\x8d';
constexpr char kBinInt1 = 'K';
constexpr char kBinInt2 = 'M';
constexpr char kBinInt = 'J';
constexpr char kLong1 = '\x8a';
constexpr char kNewTrue = '\x88';
constexpr char kNewFalse = '\x89';
constexpr char kNone = 'N';
constexpr char kShortBinBytes = 'C';
constexpr char kBinBytes = 'B';
constexpr char kBinBytes8 = '\x8e';
constexpr char kMark = '(';
constexpr char kEmptyTuple = ')';
constexpr char kTuple = 't';
constexpr char kTuple1 = '\x85';
constexpr char kTuple2 = '\x86';
constexpr char kTuple3 = '\x87';
constexpr char kEmptyDict = '}';
constexpr char kSetItems = 'u';
constexpr char kReduce = 'R';
constexpr char kBuild = 'b';
constexpr char kBinPersId = 'Q';
constexpr char kStop = '.';
constexpr char kBinPut = 'q';
constexpr char kLongBinPut = 'r';
constexpr char kMemoize = '\x94';
constexpr char kBinGet = 'h';
constexpr char kLongBinGet = 'j';

}  // namespace

PickleEmitter::PickleEmitter(int protocol) : protocol_(protocol) {
  if (protocol != 2 && protocol != 4) throw Error(ErrorCode::kInternal, "PickleEmitter: protocol 2 or 4 only");
  op(kProto).le(static_cast<std::uint64_t>(protocol), 1);
}

std::string PickleEmitter::take() {
  std::string out;
  out.swap(out_);
  return out;
}

PickleEmitter& PickleEmitter::op(char code) {
  out_ += code;
  return *this;
}

PickleEmitter& PickleEmitter::le(std::uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out_ += static_cast<char>((value >> (8 * i)) & 0xFF);
  return *this;
}

PickleEmitter& PickleEmitter::global(const std::string& module, const std::string& name) {
  if (protocol_ >= 4) return str(module).str(name).op(kStackGlobal);
  out_ += kGlobal;
  out_ += module + "\n" + name + "\n";
  return *this;
}

PickleEmitter& PickleEmitter::str(const std::string& utf8) {
  const std::uint64_t n = utf8.size();
  if (protocol_ >= 4 && n < 256) {
    op(kShortBinUnicode).le(n, 1);
  } else if (n <= 0xFFFFFFFFu) {
    op(kBinUnicode).le(n, 4);
  } else {
    if (protocol_ < 4) throw Error(ErrorCode::kUnsupported, "a string of 4 GiB or more needs pickle protocol 4");
    op(kBinUnicode8).le(n, 8);
  }
  out_ += utf8;
  return *this;
}

PickleEmitter& PickleEmitter::integer(std::int64_t value) {
  if (value >= 0 && value < 256) return op(kBinInt1).le(static_cast<std::uint64_t>(value), 1);
  if (value >= 0 && value < 65536) return op(kBinInt2).le(static_cast<std::uint64_t>(value), 2);
  if (value >= INT32_MIN && value <= INT32_MAX) return op(kBinInt).le(static_cast<std::uint64_t>(value), 4);
  // LONG1: the shortest two's-complement little-endian encoding.
  std::string digits;
  std::int64_t v = value;
  for (;;) {
    digits += static_cast<char>(v & 0xFF);
    const bool sign = (static_cast<std::uint8_t>(digits.back()) & 0x80) != 0;
    v >>= 8;
    if ((v == 0 && !sign) || (v == -1 && sign)) break;
  }
  op(kLong1).le(digits.size(), 1);
  out_ += digits;
  return *this;
}

PickleEmitter& PickleEmitter::uinteger(std::uint64_t value) {
  if (value <= static_cast<std::uint64_t>(INT64_MAX)) return integer(static_cast<std::int64_t>(value));
  op(kLong1).le(9, 1).le(value, 8);  // a ninth byte keeps the sign bit clear
  out_ += '\0';
  return *this;
}

PickleEmitter& PickleEmitter::boolean(bool value) { return op(value ? kNewTrue : kNewFalse); }

PickleEmitter& PickleEmitter::none() { return op(kNone); }

PickleEmitter& PickleEmitter::bytes_header(std::uint64_t size) {
  if (protocol_ < 3) throw Error(ErrorCode::kInternal, "PickleEmitter: bytes need protocol 3 or more");
  if (size < 256) return op(kShortBinBytes).le(size, 1);
  if (size <= 0xFFFFFFFFu) return op(kBinBytes).le(size, 4);
  return op(kBinBytes8).le(size, 8);
}

PickleEmitter& PickleEmitter::bytes(const std::string& data) {
  bytes_header(data.size());
  out_ += data;
  return *this;
}

PickleEmitter& PickleEmitter::mark() { return op(kMark); }
PickleEmitter& PickleEmitter::empty_tuple() { return op(kEmptyTuple); }

PickleEmitter& PickleEmitter::tuple(std::size_t n) {
  switch (n) {
    case 0: return op(kTuple);  // after a mark(): MARK TUPLE, an empty tuple
    case 1: return op(kTuple1);
    case 2: return op(kTuple2);
    case 3: return op(kTuple3);
    default: return op(kTuple);
  }
}

PickleEmitter& PickleEmitter::uint_tuple(const std::vector<std::uint64_t>& values) {
  if (values.empty()) return empty_tuple();
  if (values.size() > 3) mark();
  for (std::uint64_t v : values) uinteger(v);
  return tuple(values.size());
}

PickleEmitter& PickleEmitter::empty_dict() { return op(kEmptyDict); }
PickleEmitter& PickleEmitter::setitems() { return op(kSetItems); }
PickleEmitter& PickleEmitter::reduce() { return op(kReduce); }
PickleEmitter& PickleEmitter::build() { return op(kBuild); }
PickleEmitter& PickleEmitter::binpersid() { return op(kBinPersId); }
PickleEmitter& PickleEmitter::stop() { return op(kStop); }

std::uint32_t PickleEmitter::memoize() {
  const std::uint32_t index = memo_size_++;
  if (protocol_ >= 4) {
    op(kMemoize);
  } else if (index < 256) {
    op(kBinPut).le(index, 1);
  } else {
    op(kLongBinPut).le(index, 4);
  }
  return index;
}

PickleEmitter& PickleEmitter::get(std::uint32_t index) {
  if (index < 256) return op(kBinGet).le(index, 1);
  return op(kLongBinGet).le(index, 4);
}

}  // namespace wq::detail
