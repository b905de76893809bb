#include "formats/pickle/unpickler.h"

#include <array>
#include <cstring>
#include <set>

#include "wq/error.h"

namespace wq::detail::pickle {
namespace {

constexpr std::size_t kMaxStack = 1'000'000;
constexpr std::size_t kMaxMarks = 100'000;
constexpr std::size_t kMaxMemo = 10'000'000;

// The only symbols a checkpoint pickle may name (formats.md §6). Numpy's 1.x and 2.x module
// paths and Python 2's __builtin__ spellings are both accepted.
const std::set<std::string>& allowed_globals() {
  static const std::set<std::string> names = [] {
    std::set<std::string> s = {
        "collections.OrderedDict",
        "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor_v3",
        "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state",
        "numpy.ndarray", "numpy.dtype",
        "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
        "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar",
        "numpy.core.numeric._frombuffer", "numpy._core.numeric._frombuffer",
        "_codecs.encode",
        "builtins.bytes", "__builtin__.bytes", "builtins.bytearray", "__builtin__.bytearray",
        "builtins.tuple", "__builtin__.tuple",
    };
    for (const char* storage : {"Double", "Float", "Half", "BFloat16", "Long", "Int", "Short", "Char",
                                "Byte", "Bool", "ComplexFloat", "ComplexDouble", "QInt8", "QUInt8",
                                "QInt32", "QUInt4x2", "QUInt2x4", "Untyped"}) {
      s.insert(std::string("torch.") + storage + "Storage");
    }
    for (const char* dtype : {"float64", "float32", "float16", "bfloat16", "int64", "int32", "int16",
                              "int8", "uint8", "bool", "uint16", "uint32", "uint64", "complex32",
                              "complex64", "complex128", "float8_e5m2", "float8_e4m3fn",
                              "float8_e5m2fnuz", "float8_e4m3fnuz", "float8_e8m0fnu",
                              "float4_e2m1fn_x2"}) {
      s.insert(std::string("torch.") + dtype);
    }
    return s;
  }();
  return names;
}

bool is_one_of(const Value* v, std::initializer_list<const char*> names) {
  if (v == nullptr || v->kind != Kind::kGlobal) return false;
  for (const char* n : names) {
    if (v->text == n) return true;
  }
  return false;
}

bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    const std::size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (std::size_t k = 1; k < n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) >> 6) != 2) return false;
    }
    i += n;
  }
  return true;
}

}  // namespace

Unpickler::Unpickler(const std::byte* data, std::size_t size, std::string label, Arena& arena,
                     PersistentLoad persistent_load)
    : data_(data), size_(size), label_(std::move(label)), arena_(arena),
      persistent_load_(std::move(persistent_load)) {
  arena_.grant(kFixedBudgetBytes + kBudgetPerInputByte * static_cast<std::uint64_t>(size));
}

void Unpickler::fail(const std::string& what) const {
  throw Error(ErrorCode::kBadFormat, label_ + ": " + what + " (at byte " + std::to_string(pos_) + ")");
}

Value* Unpickler::make(Kind kind) {
  Value* v = arena_.make(kind);
  if (v == nullptr) fail("pickle has too many values or needs more memory than a pickle of its size may");
  return v;
}

void Unpickler::charge(std::uint64_t bytes) {
  if (!arena_.charge(bytes)) fail("pickle needs more memory than a pickle of its size may (it repeats its parts too often)");
}

void Unpickler::charge_slots(std::uint64_t count, std::uint64_t slot_bytes) {
  if (count > UINT64_MAX / slot_bytes) fail("pickle needs more memory than a pickle of its size may");
  charge(count * slot_bytes);
}

const std::byte* Unpickler::take(std::size_t n) {
  if (n > size_ - pos_) fail("pickle is truncated");
  const std::byte* p = data_ + pos_;
  pos_ += n;
  return p;
}

std::uint64_t Unpickler::read_le(std::size_t n) {
  const std::byte* p = take(n);
  std::uint64_t v = 0;
  for (std::size_t i = n; i-- > 0;) v = (v << 8) | static_cast<std::uint8_t>(p[i]);
  return v;
}

void Unpickler::push(Value* v) {
  if (stack_.size() >= kMaxStack) fail("pickle stack too deep");
  stack_.push_back(v);
}

Value* Unpickler::pop() {
  if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) fail("pickle stack underflow");
  Value* v = stack_.back();
  stack_.pop_back();
  return v;
}

Value* Unpickler::top() {
  if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) fail("pickle stack underflow");
  return stack_.back();
}

std::vector<Value*> Unpickler::pop_mark() {
  if (marks_.empty()) fail("pickle has no MARK to pop to");
  const std::size_t mark = marks_.back();
  marks_.pop_back();
  charge_slots(stack_.size() - mark);  // they land in a list, a tuple or a dict
  std::vector<Value*> items(stack_.begin() + static_cast<std::ptrdiff_t>(mark), stack_.end());
  stack_.resize(mark);
  return items;
}

Value* Unpickler::text_value(std::size_t n) {
  const std::byte* p = take(n);
  charge(n);
  Value* v = make(Kind::kStr);
  v->text.assign(reinterpret_cast<const char*>(p), n);
  if (!valid_utf8(v->text)) fail("pickle string is not valid UTF-8");
  return v;
}

Value* Unpickler::bytes_value(std::size_t n) {
  const std::byte* p = take(n);
  Value* v = make(Kind::kBytes);
  v->bytes = std::string_view(reinterpret_cast<const char*>(p), n);
  return v;
}

Value* Unpickler::global(const std::string& module, const std::string& name) {
  const std::string full = module + "." + name;
  if (allowed_globals().count(full) == 0) {
    fail("refusing to load: the pickle asks for '" + full +
         "', which is not part of any checkpoint format wq reads; nothing was executed");
  }
  Value* v = make(Kind::kGlobal);
  v->text = full;
  return v;
}

Value* Unpickler::reduce(Value* callable, Value* args) {
  if (!callable->is(Kind::kGlobal) || !args->is(Kind::kTuple)) fail("REDUCE on something that is not a known symbol");
  const std::vector<Value*>& a = args->items;
  const auto object = [&](const char* tag) {
    charge_slots(a.size());  // a copy of the arguments: the same tuple may be passed many times
    Value* v = make(Kind::kObject);
    v->text = tag;
    v->items = a;
    return v;
  };
  const std::string& f = callable->text;
  if (f == "collections.OrderedDict") {
    Value* d = make(Kind::kDict);
    if (a.empty()) return d;
    if (a.size() == 1 && a[0]->is(Kind::kList)) {
      charge_slots(a[0]->items.size(), sizeof(d->entries[0]));
      for (Value* pair : a[0]->items) {
        if (!pair->is(Kind::kTuple) || pair->items.size() != 2) fail("OrderedDict of something other than pairs");
        d->entries.emplace_back(pair->items[0], pair->items[1]);
      }
      return d;
    }
    fail("OrderedDict called with unexpected arguments");
  }
  if (f == "torch._utils._rebuild_tensor_v2" && (a.size() == 6 || a.size() == 7)) return object("torch.tensor");
  if (f == "torch._utils._rebuild_tensor_v3" && (a.size() == 7 || a.size() == 8)) return object("torch.tensor_v3");
  if ((f == "torch._utils._rebuild_parameter" && a.size() == 3) ||
      (f == "torch._utils._rebuild_parameter_with_state" && a.size() == 4)) {
    if (!a[0]->is_object("torch.tensor") && !a[0]->is_object("torch.tensor_v3")) fail("parameter of something other than a tensor");
    return a[0];
  }
  if ((f == "numpy.core.multiarray._reconstruct" || f == "numpy._core.multiarray._reconstruct") && a.size() == 3 &&
      is_one_of(a[0], {"numpy.ndarray"})) {
    return object("numpy.ndarray");
  }
  if (f == "numpy.dtype" && a.size() == 3 && a[0]->is(Kind::kStr)) return object("numpy.dtype");
  if ((f == "numpy.core.multiarray.scalar" || f == "numpy._core.multiarray.scalar") && a.size() == 2) {
    return object("numpy.scalar");
  }
  if ((f == "numpy.core.numeric._frombuffer" || f == "numpy._core.numeric._frombuffer") &&
      (a.size() == 4 || a.size() == 5)) {
    return object("numpy.frombuffer");
  }
  if (f == "_codecs.encode" && a.size() == 2 && a[0]->is(Kind::kStr) && a[1]->is(Kind::kStr) &&
      (a[1]->text == "latin1" || a[1]->text == "latin-1")) {
    // Protocol 2 stores bytes as a str of code points 0..255, UTF-8 encoded: narrow it back.
    const std::string& s = a[0]->text;
    charge(s.size());
    Value* v = make(Kind::kBytes);
    v->text.reserve(s.size());
    for (std::size_t i = 0; i < s.size();) {
      const auto c = static_cast<unsigned char>(s[i]);
      if (c < 0x80) {
        v->text.push_back(static_cast<char>(c));
        i += 1;
      } else if ((c >> 5) == 6 && i + 1 < s.size()) {
        const unsigned code = ((c & 0x1fu) << 6) | (static_cast<unsigned char>(s[i + 1]) & 0x3fu);
        if (code > 0xff) fail("latin1 text holds a code point above 255");
        v->text.push_back(static_cast<char>(code));
        i += 2;
      } else {
        fail("latin1 text holds a code point above 255");
      }
    }
    v->bytes = v->text;
    return v;
  }
  if ((f == "builtins.bytes" || f == "__builtin__.bytes" || f == "builtins.bytearray" ||
       f == "__builtin__.bytearray") && a.empty()) {
    return make(Kind::kBytes);
  }
  if ((f == "builtins.bytearray" || f == "__builtin__.bytearray") && a.size() == 1 && a[0]->is(Kind::kBytes)) {
    return a[0];
  }
  if ((f == "builtins.tuple" || f == "__builtin__.tuple") && a.size() == 1 && a[0]->is(Kind::kTuple)) {
    return a[0];  // Paddle's (name, ndarray) pairs
  }
  fail("refusing to call '" + f + "' with " + std::to_string(a.size()) +
       " arguments: not a pattern of any checkpoint format wq reads; nothing was executed");
}

void Unpickler::build(Value* target, Value* state) {
  if (target->is(Kind::kDict)) return;  // torch's OrderedDict _metadata: not needed
  if ((target->is_object("numpy.ndarray") || target->is_object("numpy.dtype")) && target->state == nullptr) {
    target->state = state;
    return;
  }
  if (target->is_object("torch.tensor") || target->is_object("torch.tensor_v3")) return;  // attributes only
  fail("BUILD on " + describe(target) + " is not part of any checkpoint format wq reads");
}

Value* Unpickler::load() {
  stack_.clear();
  marks_.clear();
  memo_.clear();
  for (;;) {
    const auto op = static_cast<std::uint8_t>(*take(1));
    switch (op) {
      case 0x80: {  // PROTO
        if (read_le(1) > 5) fail("unsupported pickle protocol");
        break;
      }
      case 0x95: {  // FRAME: only a length prefix; frames are read in place
        if (read_le(8) > size_ - pos_) fail("pickle frame runs past the end");
        break;
      }
      case '.':  // STOP
        if (stack_.size() != 1 || !marks_.empty()) fail("pickle ends with an unbalanced stack");
        return stack_.back();
      case '(':  // MARK
        if (marks_.size() >= kMaxMarks) fail("pickle nests too deeply");
        marks_.push_back(stack_.size());
        break;
      case '0': pop(); break;          // POP
      case '1': pop_mark(); break;     // POP_MARK
      case '2': push(top()); break;    // DUP
      case 'N': push(make(Kind::kNone)); break;
      case 0x88: case 0x89: {  // NEWTRUE, NEWFALSE
        Value* v = make(Kind::kBool);
        v->boolean = op == 0x88;
        push(v);
        break;
      }
      case 'J': case 'K': case 'M': {  // BININT, BININT1, BININT2
        Value* v = make(Kind::kInt);
        v->integer = op == 'J' ? static_cast<std::int32_t>(read_le(4)) : static_cast<std::int64_t>(read_le(op == 'K' ? 1 : 2));
        push(v);
        break;
      }
      case 0x8a: case 0x8b: {  // LONG1, LONG4
        const std::uint64_t n = read_le(op == 0x8a ? 1 : 4);
        if (n > 8) fail("integer wider than 64 bits");
        Value* v = make(Kind::kInt);
        std::uint64_t raw = n ? read_le(static_cast<std::size_t>(n)) : 0;
        if (n > 0 && n < 8 && (raw >> (8 * n - 1)) & 1) raw |= ~std::uint64_t{0} << (8 * n);  // sign-extend
        v->integer = static_cast<std::int64_t>(raw);
        push(v);
        break;
      }
      case 'G': {  // BINFLOAT: big-endian binary64
        const std::byte* p = take(8);
        std::uint64_t bits = 0;
        for (int i = 0; i < 8; ++i) bits = (bits << 8) | static_cast<std::uint8_t>(p[i]);
        Value* v = make(Kind::kFloat);
        std::memcpy(&v->real, &bits, 8);
        push(v);
        break;
      }
      case 'X': push(text_value(static_cast<std::size_t>(read_le(4)))); break;     // BINUNICODE
      case 0x8c: push(text_value(static_cast<std::size_t>(read_le(1)))); break;    // SHORT_BINUNICODE
      case 0x8d: push(text_value(static_cast<std::size_t>(read_le(8)))); break;    // BINUNICODE8
      case 'T': case 'U': {  // BINSTRING, SHORT_BINSTRING (Python 2 str): kept as text
        const std::size_t n = static_cast<std::size_t>(read_le(op == 'T' ? 4 : 1));
        const std::byte* p = take(n);
        charge_slots(n, 2);  // latin1 -> UTF-8 takes up to two bytes per byte
        Value* v = make(Kind::kStr);
        for (std::size_t i = 0; i < n; ++i) {  // latin1 -> UTF-8
          const auto c = static_cast<unsigned char>(p[i]);
          if (c < 0x80) {
            v->text.push_back(static_cast<char>(c));
          } else {
            v->text.push_back(static_cast<char>(0xc0 | (c >> 6)));
            v->text.push_back(static_cast<char>(0x80 | (c & 0x3f)));
          }
        }
        push(v);
        break;
      }
      case 'B': push(bytes_value(static_cast<std::size_t>(read_le(4)))); break;     // BINBYTES
      case 'C': push(bytes_value(static_cast<std::size_t>(read_le(1)))); break;     // SHORT_BINBYTES
      case 0x8e: case 0x96: push(bytes_value(static_cast<std::size_t>(read_le(8)))); break;  // BINBYTES8, BYTEARRAY8
      case ')': push(make(Kind::kTuple)); break;  // EMPTY_TUPLE
      case 't': {  // TUPLE
        Value* v = make(Kind::kTuple);
        v->items = pop_mark();
        push(v);
        break;
      }
      case 0x85: case 0x86: case 0x87: {  // TUPLE1..3
        charge_slots(op - 0x84u);
        Value* v = make(Kind::kTuple);
        v->items.resize(op - 0x84u);
        for (std::size_t i = v->items.size(); i-- > 0;) v->items[i] = pop();
        push(v);
        break;
      }
      case ']': push(make(Kind::kList)); break;  // EMPTY_LIST
      case 'l': {  // LIST
        Value* v = make(Kind::kList);
        v->items = pop_mark();
        push(v);
        break;
      }
      case 'a': {  // APPEND
        Value* item = pop();
        Value* list = top();
        if (!list->is(Kind::kList)) fail("APPEND to something that is not a list");
        charge_slots(1);
        list->items.push_back(item);
        break;
      }
      case 'e': {  // APPENDS
        std::vector<Value*> items = pop_mark();
        Value* list = top();
        if (!list->is(Kind::kList)) fail("APPENDS to something that is not a list");
        list->items.insert(list->items.end(), items.begin(), items.end());
        break;
      }
      case '}': push(make(Kind::kDict)); break;  // EMPTY_DICT
      case 'd': case 'u': {  // DICT, SETITEMS
        std::vector<Value*> items = pop_mark();
        if (items.size() % 2 != 0) fail("odd number of items for a dict");
        Value* dict = op == 'd' ? make(Kind::kDict) : top();
        if (!dict->is(Kind::kDict)) fail("SETITEMS on something that is not a dict");
        for (std::size_t i = 0; i < items.size(); i += 2) dict->entries.emplace_back(items[i], items[i + 1]);
        if (op == 'd') push(dict);
        break;
      }
      case 's': {  // SETITEM
        Value* value = pop();
        Value* key = pop();
        Value* dict = top();
        if (!dict->is(Kind::kDict)) fail("SETITEM on something that is not a dict");
        charge_slots(1, sizeof(dict->entries[0]));
        dict->entries.emplace_back(key, value);
        break;
      }
      case 'c': {  // GLOBAL: "module\nname\n"
        std::string parts[2];
        for (std::string& part : parts) {
          for (;;) {
            const char c = static_cast<char>(*take(1));
            if (c == '\n') break;
            if (part.size() > 200) fail("GLOBAL name too long");
            part.push_back(c);
          }
        }
        push(global(parts[0], parts[1]));
        break;
      }
      case 0x93: {  // STACK_GLOBAL
        Value* name = pop();
        Value* module = pop();
        if (!module->is(Kind::kStr) || !name->is(Kind::kStr)) fail("STACK_GLOBAL of non-strings");
        push(global(module->text, name->text));
        break;
      }
      case 'R': {  // REDUCE
        Value* args = pop();
        Value* callable = pop();
        push(reduce(callable, args));
        break;
      }
      case 0x81: {  // NEWOBJ: cls.__new__(cls, *args), only for OrderedDict
        Value* args = pop();
        Value* cls = pop();
        if (!is_one_of(cls, {"collections.OrderedDict"}) || !args->is(Kind::kTuple) || !args->items.empty()) {
          fail("NEWOBJ of " + describe(cls) + " is not part of any checkpoint format wq reads");
        }
        push(make(Kind::kDict));
        break;
      }
      case 'b': {  // BUILD
        Value* state = pop();
        build(top(), state);
        break;
      }
      case 'q': case 'r': case 0x94: {  // BINPUT, LONG_BINPUT, MEMOIZE
        const std::size_t index = op == 0x94 ? memo_.size() : static_cast<std::size_t>(read_le(op == 'q' ? 1 : 4));
        if (index >= kMaxMemo || index > size_) fail("pickle memo index too large");
        if (index >= memo_.size()) {
          charge_slots(index + 1 - memo_.size());
          memo_.resize(index + 1, nullptr);
        }
        memo_[index] = top();
        break;
      }
      case 'h': case 'j': {  // BINGET, LONG_BINGET
        const std::size_t index = static_cast<std::size_t>(read_le(op == 'h' ? 1 : 4));
        if (index >= memo_.size() || memo_[index] == nullptr) fail("pickle refers to a memo entry that was never stored");
        push(memo_[index]);
        break;
      }
      case 'Q': {  // BINPERSID
        Value* pid = pop();
        if (!persistent_load_) fail("persistent id in a pickle that cannot have one");
        push(persistent_load_(pid));
        break;
      }
      default: {
        char hex[8];
        std::snprintf(hex, sizeof hex, "0x%02x", op);
        fail(std::string("pickle opcode ") + hex + " is not part of any checkpoint format wq reads");
      }
    }
  }
}

std::string describe(const Value* v) {
  if (v == nullptr) return "nothing";
  switch (v->kind) {
    case Kind::kNone: return "None";
    case Kind::kBool: return "a bool";
    case Kind::kInt: return "an int";
    case Kind::kFloat: return "a float";
    case Kind::kStr: return "a str";
    case Kind::kBytes: return "bytes";
    case Kind::kTuple: return "a tuple";
    case Kind::kList: return "a list";
    case Kind::kDict: return "a dict";
    case Kind::kGlobal: return "'" + v->text + "'";
    case Kind::kObject: return "a " + v->text;
  }
  return "?";
}

bool int_tuple(const Value* v, std::vector<std::int64_t>* out) {
  if (v == nullptr || (!v->is(Kind::kTuple) && !v->is(Kind::kList))) return false;
  out->clear();
  for (const Value* item : v->items) {
    if (!item->is(Kind::kInt)) return false;
    out->push_back(item->integer);
  }
  return true;
}

}  // namespace wq::detail::pickle
