#include "formats/pickled_ndarray.h"

#include <algorithm>
#include <cstring>

#include <tuple>

#include "core/checked_math.h"
#include "formats/pickle/unpickler.h"
#include "formats/strided_copy.h"
#include "wq/error.h"

namespace wq::detail {
namespace {

using pickle::Kind;
using pickle::Value;

[[noreturn]] void bad(const std::string& where, const std::string& what) {
  throw Error(ErrorCode::kBadFormat, where + ": " + what);
}

// numpy's type strings (kind + size) that wq has a dtype for.
std::optional<DType> numpy_dtype(const std::string& code, bool u16_as_bf16) {
  static const std::pair<const char*, DType> kCodes[] = {
      {"f8", DType::kF64}, {"f4", DType::kF32}, {"f2", DType::kF16}, {"i8", DType::kI64},
      {"i4", DType::kI32}, {"i2", DType::kI16}, {"i1", DType::kI8},  {"u1", DType::kU8},
      {"b1", DType::kBool},
  };
  for (const auto& [c, d] : kCodes) {
    if (code == c) return d;
  }
  if (code == "u2" && u16_as_bf16) return DType::kBF16;
  return std::nullopt;
}

// dtype object -> (wq dtype, big endian).
std::pair<DType, bool> dtype_of(const Value* d, const std::string& where, bool u16_as_bf16) {
  if (d == nullptr || !d->is_object("numpy.dtype")) bad(where, "array dtype is not a numpy dtype");
  std::string code = d->items[0]->text;
  bool big = false;
  if (d->state != nullptr) {
    const Value* s = d->state;
    if (!s->is(Kind::kTuple) || s->items.size() < 8) bad(where, "malformed numpy dtype state");
    if (!s->items[3]->is(Kind::kNone) || !s->items[4]->is(Kind::kNone) || !s->items[2]->is(Kind::kNone)) {
      bad(where, "structured or sub-array numpy dtypes are not supported");
    }
    if (s->items[1]->is(Kind::kStr)) big = s->items[1]->text == ">";
  }
  const auto dtype = numpy_dtype(code, u16_as_bf16);
  if (!dtype) bad(where, "numpy dtype '" + code + "' is not supported (supported: f8 f4 f2 i8 i4 i2 i1 u1 b1)");
  return {*dtype, big && dtype_size(*dtype) > 1};
}

Shape shape_of(const Value* v, const std::string& where) {
  std::vector<std::int64_t> dims;
  if (!pickle::int_tuple(v, &dims)) bad(where, "array shape is not a tuple of integers");
  Shape shape;
  for (std::int64_t d : dims) {
    if (d < 0) bad(where, "array shape has a negative dimension");
    shape.push_back(static_cast<std::uint64_t>(d));
  }
  return shape;
}

}  // namespace

bool is_pickled_ndarray(const Value* v) {
  return v->is_object("numpy.ndarray") || v->is_object("numpy.frombuffer");
}

PickledArray decode_pickled_ndarray(const Value* v, const std::string& where, bool u16_as_bf16) {
  PickledArray a;
  const Value* raw = nullptr;
  if (v->is_object("numpy.frombuffer")) {  // protocol 5: (buffer, dtype, shape, order)
    const std::vector<Value*>& args = v->items;
    std::tie(a.dtype, a.big_endian) = dtype_of(args[1], where, u16_as_bf16);
    a.shape = shape_of(args[2], where);
    if (!args[3]->is(Kind::kStr) || (args[3]->text != "C" && args[3]->text != "F")) {
      bad(where, "arrays stored in order other than C or F are not supported");
    }
    a.fortran = args[3]->text == "F";
    raw = args[0];
  } else {
    const Value* s = v->state;
    if (s == nullptr || !s->is(Kind::kTuple) || (s->items.size() != 5 && s->items.size() != 4)) {
      bad(where, "numpy array without its state");
    }
    const std::size_t base = s->items.size() == 5 ? 1 : 0;  // (version,) shape, dtype, fortran, raw
    a.shape = shape_of(s->items[base], where);
    std::tie(a.dtype, a.big_endian) = dtype_of(s->items[base + 1], where, u16_as_bf16);
    const Value* fortran = s->items[base + 2];
    a.fortran = (fortran->is(Kind::kBool) && fortran->boolean) || (fortran->is(Kind::kInt) && fortran->integer != 0);
    raw = s->items[base + 3];
  }
  if (raw == nullptr || !raw->is(Kind::kBytes)) bad(where, "numpy array data is not raw bytes (object arrays are not supported)");
  a.raw = raw->bytes;
  const std::optional<std::uint64_t> expected = checked_tensor_bytes(a.shape, a.dtype);
  if (!expected) bad(where, "numpy array shape needs more than 2^64 bytes");
  if (a.raw.size() != *expected) {
    bad(where, "numpy array holds " + std::to_string(a.raw.size()) + " bytes, its shape and dtype need " +
                   std::to_string(*expected));
  }
  return a;
}

void to_row_major_le(const PickledArray& a, std::string* out) {
  const std::size_t element = dtype_size(a.dtype);
  out->resize(a.raw.size());
  if (a.fortran && a.shape.size() > 1) {
    // Column-major data is the transpose laid out row-major: read it with reversed strides.
    std::vector<std::int64_t> shape(a.shape.begin(), a.shape.end()), stride(a.shape.size());
    std::int64_t s = 1;
    for (std::size_t d = 0; d < shape.size(); ++d) {
      stride[d] = s;
      s *= shape[d];
    }
    copy_strided(reinterpret_cast<const std::byte*>(a.raw.data()), element, shape, stride,
                 reinterpret_cast<std::byte*>(out->data()));
  } else {
    std::memcpy(out->data(), a.raw.data(), a.raw.size());
  }
  if (a.big_endian) {
    for (std::size_t i = 0; i + element <= out->size(); i += element) {
      std::reverse(out->begin() + static_cast<std::ptrdiff_t>(i), out->begin() + static_cast<std::ptrdiff_t>(i + element));
    }
  }
}

}  // namespace wq::detail
