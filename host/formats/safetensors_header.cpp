#include "formats/safetensors_header.h"

#include <algorithm>
#include <limits>
#include <optional>

#include "core/checked_math.h"
#include "core/json_stream.h"
#include "wq/error.h"

namespace wq::detail {
namespace {

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

class HeaderHandler final : public JsonStreamHandler {
 public:
  bool root_is_object_ = false;
  std::vector<std::string> keys_;                               // every top-level key, for duplicates
  std::vector<std::pair<std::string, std::string>> problems_;  // (key, what), the first per key
  SafetensorsHeader header_;

 private:
  void problem(const std::string& what) { problems_.emplace_back(top_key_, what); }

  void on_key(std::string k) override {
    if (place_ == Place::kRoot) {
      keys_.push_back(k);
      top_key_ = std::move(k);
    } else {
      field_ = std::move(k);
    }
  }

  void on_scalar(JsonScalar v) override {
    switch (place_) {
      case Place::kBeforeRoot: return;  // a scalar root: not an object
      case Place::kRoot:
        if (top_key_ != "__metadata__") return problem("tensor '" + top_key_ + "' is not an object");
        if (!v.is_null()) problem("__metadata__ is not an object");
        return;
      case Place::kMetadata:
        if (!v.is_string()) return problem("__metadata__ value '" + field_ + "' is not a string");
        header_.metadata[field_] = std::move(v.text);
        return;
      case Place::kTensor: return tensor_field(&v);
      case Place::kShape:
        if (!v.is_unsigned()) {
          tensor_.shape_bad = true;
        } else {
          tensor_.entry.shape.push_back(v.u);
        }
        return;
      case Place::kOffsets:
        if (!v.is_unsigned()) tensor_.offsets_bad = true;
        if (tensor_.offsets == 0) tensor_.entry.begin = v.u;
        if (tensor_.offsets == 1) tensor_.entry.end = v.u;
        ++tensor_.offsets;
        return;
    }
  }

  // A field of a tensor object given as a scalar (`v`) or as an object or array (nullptr):
  // dtype must be a string, shape and data_offsets arrays; other fields are ignored. A field
  // given twice counts as its last value.
  void tensor_field(const JsonScalar* v) {
    if (field_ == "dtype") {
      tensor_.has_dtype = v != nullptr && v->is_string();
      if (tensor_.has_dtype) tensor_.dtype = v->text;
    } else if (field_ == "shape") {
      tensor_.has_shape = false;
    } else if (field_ == "data_offsets") {
      tensor_.has_offsets = false;
    }
  }

  bool on_open(bool object) override {
    switch (place_) {
      case Place::kBeforeRoot:
        root_is_object_ = object;
        place_ = Place::kRoot;
        return object;
      case Place::kRoot:
        if (top_key_ == "__metadata__") {
          if (!object) {
            problem("__metadata__ is not an object");
            return false;
          }
          place_ = Place::kMetadata;
          return true;
        }
        if (!object) {
          problem("tensor '" + top_key_ + "' is not an object");
          return false;
        }
        tensor_ = PendingTensor{};
        tensor_.entry.name = top_key_;
        place_ = Place::kTensor;
        return true;
      case Place::kMetadata: problem("__metadata__ value '" + field_ + "' is not a string"); return false;
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
        tensor_field(nullptr);
        return false;
      case Place::kShape: tensor_.shape_bad = true; return false;
      case Place::kOffsets:
        tensor_.offsets_bad = true;
        ++tensor_.offsets;
        return false;
    }
    return false;
  }

  void on_close() override {
    switch (place_) {
      case Place::kShape:
      case Place::kOffsets: place_ = Place::kTensor; return;
      case Place::kTensor:
        finish_tensor();
        place_ = Place::kRoot;
        return;
      case Place::kMetadata: place_ = Place::kRoot; return;
      case Place::kRoot:
      case Place::kBeforeRoot: place_ = Place::kBeforeRoot; return;
    }
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

  Place place_ = Place::kBeforeRoot;
  std::string top_key_, field_;
  PendingTensor tensor_;
};

[[noreturn]] void bad(const std::string& path, const std::string& what) {
  throw Error(ErrorCode::kBadFormat, path + ": invalid safetensors file: " + what);
}

}  // namespace

SafetensorsHeader parse_safetensors_header(std::string_view text, const std::string& path) {
  HeaderHandler sax;
  parse_json_stream(text, sax);
  if (!sax.json_error().empty()) bad(path, "header is not valid JSON: " + sax.json_error());
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
