#include "formats/safetensors_header.h"

#include <algorithm>
#include <limits>
#include <optional>

#include <nlohmann/json.hpp>

#include "core/checked_math.h"
#include "wq/error.h"

namespace wq::detail {
namespace {

using json = nlohmann::json;

// One tensor's object as it streams by; checked when it closes.
struct PendingTensor {
  SafetensorsEntry entry;
  bool has_dtype = false, has_shape = false, shape_bad = false;
  bool has_offsets = false, offsets_bad = false;
  std::string dtype;
  std::size_t offsets = 0;  // elements of data_offsets seen
};

// Where the parser is. The header's structure is two levels deep: the root object, and in
// it one object per tensor (or "__metadata__"), whose "shape" and "data_offsets" are arrays.
enum class Place { kBeforeRoot, kRoot, kMetadata, kTensor, kShape, kOffsets };

class HeaderSax final : public nlohmann::json_sax<json> {
 public:
  // ---- scalars
  bool null() override { return scalar(nullptr, std::nullopt, true); }
  bool boolean(bool) override { return scalar(nullptr, std::nullopt); }
  bool number_integer(number_integer_t) override { return scalar(nullptr, std::nullopt); }
  bool number_unsigned(number_unsigned_t v) override { return scalar(nullptr, v); }
  bool number_float(number_float_t, const string_t&) override { return scalar(nullptr, std::nullopt); }
  bool string(string_t& v) override { return scalar(&v, std::nullopt); }
  bool binary(binary_t&) override { return scalar(nullptr, std::nullopt); }

  // ---- containers
  bool start_object(std::size_t) override { return open(true); }
  bool start_array(std::size_t) override { return open(false); }
  bool end_object() override { return close(); }
  bool end_array() override { return close(); }

  bool key(string_t& k) override {
    if (skip_ > 0) return true;
    if (place_ == Place::kRoot) {
      keys_.push_back(k);
      top_key_ = k;
    } else {
      field_ = k;
    }
    return true;
  }

  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    json_error_ = e.what();
    return false;
  }

  std::string json_error_;
  bool root_is_object_ = false;
  std::vector<std::string> keys_;                               // every top-level key, for duplicates
  std::vector<std::pair<std::string, std::string>> problems_;  // (key, what), the first per key
  SafetensorsHeader header_;

 private:
  void problem(const std::string& what) { problems_.emplace_back(top_key_, what); }

  // A scalar value where the parser is: a string, an unsigned integer, or (neither) any other.
  bool scalar(const std::string* text, std::optional<std::uint64_t> number, bool null = false) {
    if (skip_ > 0) return true;
    switch (place_) {
      case Place::kBeforeRoot: return true;  // a scalar root: not an object
      case Place::kRoot:
        if (top_key_ == "__metadata__") {
          if (!null) problem("__metadata__ is not an object");
        } else {
          problem("tensor '" + top_key_ + "' is not an object");
        }
        return true;
      case Place::kMetadata:
        if (text != nullptr) {
          header_.metadata[field_] = *text;
        } else {
          problem("__metadata__ value '" + field_ + "' is not a string");
        }
        return true;
      case Place::kTensor: tensor_field(text); return true;
      case Place::kShape:
        if (number) {
          tensor_.entry.shape.push_back(*number);
        } else {
          tensor_.shape_bad = true;
        }
        return true;
      case Place::kOffsets:
        if (!number) tensor_.offsets_bad = true;
        if (tensor_.offsets == 0) tensor_.entry.begin = number.value_or(0);
        if (tensor_.offsets == 1) tensor_.entry.end = number.value_or(0);
        ++tensor_.offsets;
        return true;
    }
    return true;
  }

  // A scalar field of a tensor object: dtype is a string, shape and data_offsets must not be
  // scalars, anything else is ignored. A field given twice counts as its last value.
  void tensor_field(const std::string* text) {
    if (field_ == "dtype") {
      tensor_.has_dtype = text != nullptr;
      if (text != nullptr) tensor_.dtype = *text;
    } else if (field_ == "shape") {
      tensor_.has_shape = false;
    } else if (field_ == "data_offsets") {
      tensor_.has_offsets = false;
    }
  }

  bool open(bool object) {
    if (skip_ > 0) {
      ++skip_;
      return true;
    }
    switch (place_) {
      case Place::kBeforeRoot:
        root_is_object_ = object;
        if (object) {
          place_ = Place::kRoot;
        } else {
          skip_ = 1;
        }
        return true;
      case Place::kRoot:
        if (top_key_ == "__metadata__") {
          if (object) {
            place_ = Place::kMetadata;
            return true;
          }
          problem("__metadata__ is not an object");
        } else if (object) {
          tensor_ = PendingTensor{};
          tensor_.entry.name = top_key_;
          place_ = Place::kTensor;
          return true;
        } else {
          problem("tensor '" + top_key_ + "' is not an object");
        }
        skip_ = 1;
        return true;
      case Place::kMetadata:
        problem("__metadata__ value '" + field_ + "' is not a string");
        skip_ = 1;
        return true;
      case Place::kTensor:
        if (!object && field_ == "shape") {
          tensor_.has_shape = true;
          tensor_.shape_bad = false;
          tensor_.entry.shape.clear();
          place_ = Place::kShape;
          return true;
        }
        if (!object && field_ == "data_offsets") {
          tensor_.has_offsets = true;
          tensor_.offsets_bad = false;
          tensor_.offsets = 0;
          place_ = Place::kOffsets;
          return true;
        }
        tensor_field(nullptr);  // an object or array where dtype/shape/offsets should be
        skip_ = 1;
        return true;
      case Place::kShape: tensor_.shape_bad = true; break;
      case Place::kOffsets:
        tensor_.offsets_bad = true;
        ++tensor_.offsets;
        break;
    }
    skip_ = 1;
    return true;
  }

  bool close() {
    if (skip_ > 0) {
      --skip_;
      return true;
    }
    switch (place_) {
      case Place::kShape:
      case Place::kOffsets: place_ = Place::kTensor; return true;
      case Place::kTensor:
        finish_tensor();
        place_ = Place::kRoot;
        return true;
      case Place::kMetadata: place_ = Place::kRoot; return true;
      case Place::kRoot: place_ = Place::kBeforeRoot; return true;
      case Place::kBeforeRoot: return true;
    }
    return true;
  }

  // The checks of one tensor, in the order the DOM reader made them.
  void finish_tensor() {
    const std::string where = "tensor '" + tensor_.entry.name + "'";
    SafetensorsEntry& e = tensor_.entry;
    if (!tensor_.has_dtype) return problem(where + " has no dtype string");
    if (!tensor_.has_shape) return problem(where + " has no shape array");
    if (!tensor_.has_offsets || tensor_.offsets != 2) return problem(where + " has no [begin, end] data_offsets");
    const auto dtype = parse_dtype(tensor_.dtype);
    if (!dtype) {
      return problem(where + " has unknown or unsupported dtype '" + tensor_.dtype +
                     "' (supported: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL)");
    }
    e.dtype = *dtype;
    if (tensor_.shape_bad) return problem(where + " shape must be a non-negative integer");
    if (tensor_.offsets_bad) return problem(where + " data_offsets must be a non-negative integer");
    if (e.end < e.begin) return problem(where + " ends before it begins");
    std::optional<std::uint64_t> numel = 1;
    for (std::size_t d = 0; d < e.shape.size() && numel; ++d) numel = checked_mul(*numel, e.shape[d]);
    if (!numel) return problem(where + " shape overflows");
    const std::optional<std::uint64_t> bytes = checked_tensor_bytes(e.shape, e.dtype);
    if (!bytes || *bytes != e.bytes()) {
      return problem(where + " holds " + std::to_string(e.bytes()) + " bytes but its shape and dtype need " +
                     (bytes ? std::to_string(*bytes) : std::string("more than 2^64")));
    }
    header_.entries.push_back(std::move(e));
  }

 private:
  Place place_ = Place::kBeforeRoot;
  int skip_ = 0;  // > 0: inside a value that is not looked at (its nesting depth)
  std::string top_key_, field_;
  PendingTensor tensor_;
};

[[noreturn]] void bad(const std::string& path, const std::string& what) {
  throw Error(ErrorCode::kBadFormat, path + ": invalid safetensors file: " + what);
}

}  // namespace

SafetensorsHeader parse_safetensors_header(std::string_view text, const std::string& path) {
  HeaderSax sax;
  json::sax_parse(text.begin(), text.end(), &sax);
  if (!sax.json_error_.empty()) bad(path, "header is not valid JSON: " + sax.json_error_);
  // A repeated name is legal JSON but ambiguous (a DOM would silently keep the last one).
  std::sort(sax.keys_.begin(), sax.keys_.end());
  const auto repeated = std::adjacent_find(sax.keys_.begin(), sax.keys_.end());
  if (repeated != sax.keys_.end()) bad(path, "tensor name '" + *repeated + "' appears more than once");
  if (!sax.root_is_object_) bad(path, "header is not a JSON object");
  if (!sax.problems_.empty()) {
    const auto first = std::min_element(sax.problems_.begin(), sax.problems_.end(),
                                        [](const auto& a, const auto& b) { return a.first < b.first; });
    bad(path, first->second);
  }
  std::sort(sax.header_.entries.begin(), sax.header_.entries.end(),
            [](const SafetensorsEntry& a, const SafetensorsEntry& b) { return a.name < b.name; });
  return std::move(sax.header_);
}

}  // namespace wq::detail
