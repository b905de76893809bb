#include "formats/npy_format.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <optional>
#include <string_view>
#include <vector>

#include "wq/error.h"

namespace wq::detail {
namespace {

constexpr std::string_view kMagic = "\x93NUMPY";
constexpr std::uint64_t kAlign = 64;             // numpy's ARRAY_ALIGN
constexpr std::size_t kGrowthAxisMaxDigits = 21;  // numpy's GROWTH_AXIS_MAX_DIGITS

[[noreturn]] void bad(const std::string& where, const std::string& what) {
  throw Error(ErrorCode::kBadFormat, where + ": invalid .npy data: " + what);
}

[[noreturn]] void unsupported(const std::string& where, const std::string& what) {
  throw Error(ErrorCode::kUnsupported, where + ": " + what);
}

// The numpy element types wq has a DType for, by kind + item size.
struct NpyType {
  std::string_view code;
  DType dtype;
};
constexpr std::array<NpyType, 9> kTypes{{
    {"f8", DType::kF64}, {"f4", DType::kF32}, {"f2", DType::kF16},
    {"i8", DType::kI64}, {"i4", DType::kI32}, {"i2", DType::kI16},
    {"i1", DType::kI8},  {"u1", DType::kU8},  {"b1", DType::kBool},
}};

// Sets dtype and byte order from a descr such as '<f4', '>i2', '|b1' or 'f8'.
void parse_descr(const std::string& descr, NpyHeader& h, const std::string& where) {
  std::string_view code = descr;
  char order = '=';
  if (!code.empty() && std::string_view("<>|=").find(code.front()) != std::string_view::npos) {
    order = code.front();
    code.remove_prefix(1);
  }
  for (const NpyType& t : kTypes) {
    if (t.code == code) {
      h.dtype = t.dtype;
      // Byte order means nothing for one-byte types; '|' and '=' are native (little-endian
      // on every platform wq builds for).
      h.big_endian = order == '>' && dtype_size(t.dtype) > 1;
      return;
    }
  }
  if (code == "u2") {
    unsupported(where, "dtype '" + descr + "' (uint16) has no wq type; bf16 data saved through "
                       "numpy arrives as uint16 (e.g. from Paddle): convert it to a real dtype first");
  }
  if (!code.empty() && std::string_view("uicfOSUVMmab").find(code.front()) != std::string_view::npos) {
    unsupported(where, "dtype '" + descr + "' is not supported (wq reads f2 f4 f8 i1 i2 i4 i8 u1 b1; "
                       "object, string, complex, datetime and wide unsigned arrays are refused)");
  }
  bad(where, "descr '" + descr + "' is not a numpy type string");
}

// A parser for the small subset of Python literals numpy writes in a header: a dict of
// strings, booleans and tuples of non-negative ints. Never an eval.
class HeaderParser {
 public:
  HeaderParser(std::string_view text, const std::string& where) : text_(text), where_(where) {}

  NpyHeader parse() {
    NpyHeader h;
    bool have_descr = false, have_order = false, have_shape = false;
    skip_space();
    expect('{');
    for (;;) {
      skip_space();
      if (peek() == '}') break;
      const std::string key = parse_string();
      skip_space();
      expect(':');
      skip_space();
      if (key == "descr") {
        if (peek() == '[') {
          unsupported(where_, "structured arrays (a list descr) are not supported");
        }
        check_once(have_descr, key);
        parse_descr(parse_string(), h, where_);
      } else if (key == "fortran_order") {
        check_once(have_order, key);
        h.fortran_order = parse_bool();
      } else if (key == "shape") {
        check_once(have_shape, key);
        h.shape = parse_shape();
      } else {
        bad(where_, "header has an unexpected key '" + key + "'");
      }
      skip_space();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() != '}') bad(where_, "header dict: expected ',' or '}' at offset " + std::to_string(pos_));
    }
    ++pos_;
    skip_space();
    if (pos_ != text_.size()) bad(where_, "header has text after its dict");
    if (!have_descr || !have_order || !have_shape) {
      bad(where_, "header lacks one of the keys 'descr', 'fortran_order', 'shape'");
    }
    return h;
  }

 private:
  char peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }

  void expect(char c) {
    if (peek() != c) {
      bad(where_, std::string("header: expected '") + c + "' at offset " + std::to_string(pos_));
    }
    ++pos_;
  }

  void skip_space() {
    while (pos_ < text_.size() && std::string_view(" \t\r\n").find(text_[pos_]) != std::string_view::npos) ++pos_;
  }

  void check_once(bool& seen, const std::string& key) {
    if (seen) bad(where_, "header repeats the key '" + key + "'");
    seen = true;
  }

  std::string parse_string() {
    const char quote = peek();
    if (quote != '\'' && quote != '"') bad(where_, "header: expected a string at offset " + std::to_string(pos_));
    const std::size_t end = text_.find(quote, pos_ + 1);
    if (end == std::string_view::npos) bad(where_, "header: unterminated string");
    std::string s(text_.substr(pos_ + 1, end - pos_ - 1));
    if (s.find('\\') != std::string::npos) bad(where_, "header: escapes in strings are not supported");
    pos_ = end + 1;
    return s;
  }

  bool parse_bool() {
    if (text_.substr(pos_, 4) == "True") {
      pos_ += 4;
      return true;
    }
    if (text_.substr(pos_, 5) == "False") {
      pos_ += 5;
      return false;
    }
    bad(where_, "header: 'fortran_order' must be True or False");
  }

  std::uint64_t parse_dim() {
    if (peek() == '-') bad(where_, "header: negative dimension in 'shape'");
    if (peek() < '0' || peek() > '9') bad(where_, "header: 'shape' must be a tuple of integers");
    std::uint64_t v = 0;
    while (peek() >= '0' && peek() <= '9') {
      const auto digit = static_cast<std::uint64_t>(peek() - '0');
      if (v > (UINT64_MAX - digit) / 10) bad(where_, "header: dimension too large");
      v = v * 10 + digit;
      ++pos_;
    }
    if (peek() == 'L' || peek() == 'l') ++pos_;  // Python 2 longs, which numpy still accepts
    return v;
  }

  Shape parse_shape() {
    expect('(');
    Shape shape;
    bool trailing_comma = false;
    for (;;) {
      skip_space();
      if (peek() == ')') break;
      shape.push_back(parse_dim());
      skip_space();
      trailing_comma = peek() == ',';
      if (trailing_comma) {
        ++pos_;
      } else if (peek() != ')') {
        bad(where_, "header: 'shape' must be a tuple of integers");
      }
    }
    ++pos_;
    // "(3)" is the int 3 in Python, not a tuple: numpy refuses it too.
    if (shape.size() == 1 && !trailing_comma) bad(where_, "header: 'shape' must be a tuple, not '(n)'");
    return shape;
  }

  std::string_view text_;
  std::size_t pos_ = 0;
  const std::string& where_;
};

std::uint32_t read_le(const std::byte* p, int bytes) {
  std::uint32_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<std::uint8_t>(p[i]);
  return v;
}

std::string shape_repr(const Shape& shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + (shape.size() == 1 ? ",)" : ")");
}

}  // namespace

bool NpyHeader::is_native() const noexcept {
  return !big_endian && (!fortran_order || shape.size() < 2);
}

NpyHeader parse_npy_header(const std::byte* data, std::uint64_t size, const std::string& where) {
  if (size < 10 || std::memcmp(data, kMagic.data(), kMagic.size()) != 0) {
    bad(where, "does not start with the .npy magic \\x93NUMPY");
  }
  const auto major = static_cast<std::uint8_t>(data[6]);
  const auto minor = static_cast<std::uint8_t>(data[7]);
  if (major < 1 || major > 3 || minor != 0) {
    bad(where, "unknown .npy version " + std::to_string(major) + "." + std::to_string(minor));
  }
  const std::uint64_t prefix = major == 1 ? 10 : 12;
  if (size < prefix) bad(where, "truncated inside the header length");
  const std::uint64_t header_len = read_le(data + 8, major == 1 ? 2 : 4);
  if (header_len > kNpyMaxHeaderChars) {
    bad(where, "header of " + std::to_string(header_len) + " bytes exceeds numpy's limit of 10000");
  }
  if (size < prefix + header_len) bad(where, "truncated inside the header");
  const std::string_view text(reinterpret_cast<const char*>(data + prefix), header_len);
  NpyHeader h = HeaderParser(text, where).parse();
  h.data_offset = prefix + header_len;

  std::uint64_t bytes = dtype_size(h.dtype);
  for (std::uint64_t d : h.shape) {
    if (__builtin_mul_overflow(bytes, d, &bytes)) bad(where, "shape " + shape_repr(h.shape) + " is too large");
  }
  h.data_bytes = bytes;
  return h;
}

std::string npy_descr(DType dtype) {
  switch (dtype) {
    case DType::kF64: return "<f8";
    case DType::kF32: return "<f4";
    case DType::kF16: return "<f2";
    case DType::kBF16: return "<u2";
    case DType::kI64: return "<i8";
    case DType::kI32: return "<i4";
    case DType::kI16: return "<i2";
    case DType::kI8: return "|i1";
    case DType::kU8: return "|u1";
    case DType::kBool: return "|b1";
  }
  throw Error(ErrorCode::kInternal, "npy_descr: unknown dtype");
}

std::string format_npy_header(DType dtype, const Shape& shape) {
  if (dtype == DType::kBF16) {
    throw Error(ErrorCode::kUnsupported, "numpy has no bfloat16 type");
  }
  // Exactly what numpy 1.24's _write_array_header produces, spare growth spaces included.
  std::string header = "{'descr': '" + npy_descr(dtype) + "', 'fortran_order': False, 'shape': " +
                       shape_repr(shape) + ", }";
  if (!shape.empty()) {
    const std::size_t digits = std::to_string(shape[0]).size();
    header.append(kGrowthAxisMaxDigits - std::min(digits, kGrowthAxisMaxDigits), ' ');
  }
  const std::uint64_t hlen = header.size() + 1;  // + '\n'
  // Version 1.0 when the padded length fits its u16 field, else 2.0 (numpy's guess order).
  // The padding is 64, not 0, when already aligned: numpy does the same.
  const bool v1 = hlen + (kAlign - (10 + hlen) % kAlign) <= 0xFFFF;
  const std::uint64_t prefix = v1 ? 10 : 12;
  const std::uint64_t pad = kAlign - (prefix + hlen) % kAlign;
  const std::uint64_t total = hlen + pad;
  std::string out(kMagic);
  out += static_cast<char>(v1 ? 1 : 2);
  out += '\0';
  for (std::uint64_t i = 0; i < (v1 ? 2u : 4u); ++i) out += static_cast<char>((total >> (8 * i)) & 0xFF);
  out += header;
  out.append(pad, ' ');
  out += '\n';
  return out;
}

void npy_to_row_major(const NpyHeader& h, const std::byte* src, std::byte* dst) {
  const std::size_t item = dtype_size(h.dtype);
  const std::size_t n = h.data_bytes / item;
  if (n == 0) return;
  if (!h.fortran_order || h.shape.size() < 2) {
    std::memcpy(dst, src, h.data_bytes);
  } else {
    // Walk the destination in C order; the source offset of index i is sum i_k * fstride_k
    // with column-major strides.
    const std::size_t ndim = h.shape.size();
    std::vector<std::uint64_t> fstride(ndim), index(ndim, 0);
    fstride[0] = 1;
    for (std::size_t k = 1; k < ndim; ++k) fstride[k] = fstride[k - 1] * h.shape[k - 1];
    const std::uint64_t last = h.shape[ndim - 1];
    const std::uint64_t last_stride = fstride[ndim - 1] * item;
    std::byte* out = dst;
    for (std::size_t done = 0; done < n; done += last) {
      std::uint64_t base = 0;
      for (std::size_t k = 0; k + 1 < ndim; ++k) base += index[k] * fstride[k];
      const std::byte* in = src + base * item;
      for (std::uint64_t j = 0; j < last; ++j, out += item) std::memcpy(out, in + j * last_stride, item);
      for (std::size_t k = ndim - 1; k-- > 0;) {  // odometer over all but the last axis
        if (++index[k] < h.shape[k]) break;
        index[k] = 0;
      }
    }
  }
  if (h.big_endian) {
    for (std::size_t i = 0; i < n; ++i) std::reverse(dst + i * item, dst + (i + 1) * item);
  }
}

}  // namespace wq::detail
