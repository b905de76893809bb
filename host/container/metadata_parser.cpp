// parse_metadata_json(): the container's "wq" metadata in one streaming (SAX) pass.
//
// Streaming rather than an ordered DOM: nlohmann's ordered_json finds each new key by a
// linear search, so a container of n tensors took O(n^2) to parse (40,000 tensors: 7 s; a
// crafted 100 MB header would never finish), and a DOM takes ~25x the text in memory. Here
// each tensor is checked as it closes and only what the container keeps is stored.
#include <optional>
#include <set>

#include <nlohmann/json.hpp>

#include "container/checksum.h"
#include "container/container_metadata.h"
#include "core/checked_math.h"
#include "wq/error.h"

namespace wq::detail {
namespace {

using json = nlohmann::json;

std::optional<Encoding> parse_encoding(const std::string& name) {
  if (name == "affine") return Encoding::kAffine;
  if (name == "cast") return Encoding::kCast;
  if (name == "raw") return Encoding::kRaw;
  return std::nullopt;
}

// A JSON scalar as the checks need it: its kind, the text of a string, the value of an
// integer and how the JSON spelled a number (for messages).
struct Scalar {
  enum class Kind { kNull, kBool, kSigned, kUnsigned, kFloat, kString } kind = Kind::kNull;
  std::string text;
  std::uint64_t u = 0;

  bool is_integer() const { return kind == Kind::kSigned || kind == Kind::kUnsigned; }
  bool is_unsigned() const { return kind == Kind::kUnsigned; }
  bool is_string() const { return kind == Kind::kString; }
};

// One tensor's fields as they stream by; checked when its object closes.
struct PendingTensor {
  std::string name;
  std::optional<Scalar> dtype, encoding, bits, group_size, range, xxh3, codes, scale, min, data;
  bool has_shape = false, shape_bad = false;
  Shape shape;
};

enum class Place { kBeforeRoot, kRoot, kSource, kTensors, kTensor, kShape, kPaddleTable, kDone };

class MetadataSax final : public nlohmann::json_sax<json> {
 public:
  explicit MetadataSax(ContainerMetadata* out) : m_(out) {}

  bool null() override { return scalar({}); }
  bool boolean(bool) override { return scalar({Scalar::Kind::kBool, {}, 0}); }
  bool number_integer(number_integer_t v) override {
    return scalar({Scalar::Kind::kSigned, std::to_string(v), 0});
  }
  bool number_unsigned(number_unsigned_t v) override {
    return scalar({Scalar::Kind::kUnsigned, std::to_string(v), v});
  }
  bool number_float(number_float_t, const string_t& s) override { return scalar({Scalar::Kind::kFloat, s, 0}); }
  bool string(string_t& v) override { return scalar({Scalar::Kind::kString, std::move(v), 0}); }
  bool binary(binary_t&) override { return scalar({Scalar::Kind::kBool, {}, 0}); }
  bool start_object(std::size_t) override { return open(true); }
  bool start_array(std::size_t) override { return open(false); }
  bool end_object() override { return close(); }
  bool end_array() override { return close(); }
  bool key(string_t& k) override {
    if (skip_ == 0) key_ = std::move(k);
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    json_error_ = e.what();
    return false;
  }

  std::string json_error_;
  bool root_is_object_ = false;
  std::optional<Scalar> version_;
  std::string structure_error_;  // the first problem outside the tensors
  std::string tensor_error_;     // the first problem of a tensor, in file order
  bool have_tensors_ = false;

 private:
  void structure_problem(const std::string& what) {
    if (structure_error_.empty()) structure_error_ = what;
  }

  bool scalar(Scalar v) {
    if (skip_ > 0) return true;
    switch (place_) {
      case Place::kRoot:
        if (key_ == "version") version_ = std::move(v);
        if (key_ == "producer") {
          if (!v.is_string()) structure_problem("producer is not a string");
          m_->producer = std::move(v.text);
        }
        if (key_ == "source") structure_problem("source is not an object");
        if (key_ == "tensors") have_tensors_ = false;
        return true;
      case Place::kSource:
        if (key_ == "file" || key_ == "format") {
          if (!v.is_string()) structure_problem("source " + key_ + " is not a string");
          (key_ == "file" ? m_->source.file : m_->source.format) = std::move(v.text);
        } else if (key_ == "bytes") {
          if (!v.is_unsigned()) structure_problem("source bytes is not a non-negative integer");
          m_->source.bytes = v.u;
        }
        return true;
      case Place::kTensors: tensor_problem("tensor '" + key_ + "' is not an object"); return true;
      case Place::kTensor: field(std::move(v)); return true;
      case Place::kShape:
        if (v.is_unsigned()) {
          tensor_.shape.push_back(v.u);
        } else {
          tensor_.shape_bad = true;
        }
        return true;
      case Place::kPaddleTable:
        if (v.is_string()) m_->paddle_name_table.emplace_back(key_, std::move(v.text));
        return true;
      case Place::kBeforeRoot:
      case Place::kDone: return true;
    }
    return true;
  }

  // A field of a tensor object; given twice, the last one counts (as in a JSON object).
  void field(Scalar v) {
    static const std::pair<const char*, std::optional<Scalar> PendingTensor::*> kFields[] = {
        {"dtype", &PendingTensor::dtype}, {"encoding", &PendingTensor::encoding}, {"bits", &PendingTensor::bits},
        {"group_size", &PendingTensor::group_size}, {"range", &PendingTensor::range},
        {"xxh3", &PendingTensor::xxh3}, {"codes", &PendingTensor::codes}, {"scale", &PendingTensor::scale},
        {"min", &PendingTensor::min}, {"data", &PendingTensor::data}};
    for (const auto& [name, member] : kFields) {
      if (key_ == name) tensor_.*member = std::move(v);
    }
    if (key_ == "shape") tensor_.has_shape = false;  // a scalar: no shape array
  }

  bool open(bool object) {
    if (skip_ > 0) {
      ++skip_;
      return true;
    }
    Place next = Place::kDone;
    switch (place_) {
      case Place::kBeforeRoot:
        root_is_object_ = object;
        next = object ? Place::kRoot : Place::kDone;
        break;
      case Place::kRoot:
        if (object && key_ == "source") next = Place::kSource;
        if (object && key_ == "tensors") {
          next = Place::kTensors;
          have_tensors_ = true;
        }
        if (object && key_ == "paddle_name_table") next = Place::kPaddleTable;
        if (key_ == "source" && !object) structure_problem("source is not an object");
        if (key_ == "producer") structure_problem("producer is not a string");
        if (key_ == "tensors" && !object) have_tensors_ = false;
        if (key_ == "version") version_ = Scalar{Scalar::Kind::kBool, {}, 0};  // neither integer nor absent
        break;
      case Place::kTensors:
        if (object) {
          tensor_ = PendingTensor{};
          tensor_.name = key_;
          next = Place::kTensor;
        } else {
          tensor_problem("tensor '" + key_ + "' is not an object");
        }
        break;
      case Place::kTensor:
        if (!object && key_ == "shape") {
          tensor_.has_shape = true;
          tensor_.shape_bad = false;
          tensor_.shape.clear();
          next = Place::kShape;
        } else {
          field(Scalar{Scalar::Kind::kBool, {}, 0});  // a container where a scalar belongs
        }
        break;
      case Place::kShape: tensor_.shape_bad = true; break;
      case Place::kSource:
        if (key_ == "file" || key_ == "format") structure_problem("source " + key_ + " is not a string");
        if (key_ == "bytes") structure_problem("source bytes is not a non-negative integer");
        break;
      case Place::kPaddleTable:
      case Place::kDone: break;
    }
    if (next == Place::kDone) {
      skip_ = 1;
    } else {
      place_ = next;
    }
    return true;
  }

  bool close() {
    if (skip_ > 0) {
      --skip_;
      return true;
    }
    switch (place_) {
      case Place::kShape: place_ = Place::kTensor; break;
      case Place::kTensor:
        finish_tensor();
        place_ = Place::kTensors;
        break;
      case Place::kSource:
      case Place::kTensors:
      case Place::kPaddleTable: place_ = Place::kRoot; break;
      case Place::kRoot:
      case Place::kBeforeRoot:
      case Place::kDone: place_ = Place::kDone; break;
    }
    return true;
  }

  void tensor_problem(const std::string& what) {
    if (tensor_error_.empty()) tensor_error_ = what;
  }

  static std::string text_or(const std::optional<Scalar>& v, const std::string& otherwise) {
    return v && v->is_string() ? v->text : otherwise;
  }

  // The checks of one tensor, in the order the DOM reader made them.
  void finish_tensor() {
    PendingTensor& p = tensor_;
    const std::string where = "tensor '" + p.name + "'";
    if (!names_.insert(p.name).second) return tensor_problem(where + " appears more than once");
    if (!tensor_error_.empty()) return;  // only the first problem is reported: stop checking
    ContainerTensor t;
    t.name = p.name;
    const std::string dtype = text_or(p.dtype, "");
    const auto parsed_dtype = parse_dtype(dtype);
    if (!parsed_dtype) return tensor_problem(where + " has an unknown dtype '" + dtype + "'");
    t.dtype = *parsed_dtype;
    if (!p.has_shape) return tensor_problem(where + " has no shape");
    if (p.shape_bad) return tensor_problem(where + " has a shape that is not non-negative integers");
    t.shape = std::move(p.shape);
    if (!checked_tensor_bytes(t.shape, t.dtype)) return tensor_problem(where + " has a shape of more than 2^64 bytes");
    const std::string encoding = text_or(p.encoding, "");
    const auto parsed_encoding = parse_encoding(encoding);
    if (!parsed_encoding) return tensor_problem(where + " has an unknown encoding '" + encoding + "'");
    t.encoding = *parsed_encoding;
    if (t.encoding == Encoding::kAffine) {
      if (!p.bits || !p.bits->is_integer()) return tensor_problem(where + " has no bits");
      // Range-checked as the 64-bit integer the JSON holds, before narrowing.
      if (!p.bits->is_unsigned() || p.bits->u < 1 || p.bits->u > 8) {
        return tensor_problem(where + " has bits " + p.bits->text + " outside 1..8");
      }
      t.bits = static_cast<int>(p.bits->u);
      if (!p.group_size || !p.group_size->is_unsigned()) return tensor_problem(where + " has no group_size");
      t.group_size = p.group_size->u;
      t.range = text_or(p.range, "minmax");
      if (!is_floating(t.dtype)) return tensor_problem(where + " is affine but its dtype is not floating");
      for (const auto& [part, value] : {std::pair{"codes", &p.codes}, std::pair{"scale", &p.scale}, std::pair{"min", &p.min}}) {
        if (!*value || !(*value)->is_string()) return tensor_problem(where + " has no '" + part + "' part");
        t.parts.push_back((*value)->text);
      }
    } else {
      if (!p.data || !p.data->is_string()) return tensor_problem(where + " has no 'data' part");
      t.parts.push_back(p.data->text);
    }
    t.xxh3 = text_or(p.xxh3, "");
    if (!is_checksum_text(t.xxh3)) return tensor_problem(where + " has no valid xxh3 (16 lowercase hex digits)");
    m_->tensors.push_back(std::move(t));
  }

  ContainerMetadata* m_;
  Place place_ = Place::kBeforeRoot;
  int skip_ = 0;  // > 0: inside a value that is not looked at (its nesting depth)
  std::string key_;
  PendingTensor tensor_;
  std::set<std::string> names_;
};

[[noreturn]] void bad(const std::string& path, const std::string& what) {
  throw Error(ErrorCode::kBadFormat, path + ": invalid WQ container: " + what);
}

}  // namespace

ContainerMetadata parse_metadata_json(const std::string& text, const std::string& path) {
  ContainerMetadata m;
  MetadataSax sax(&m);
  json::sax_parse(text, &sax);
  // Problems in the order the checks were always made: the JSON, its structure, the version,
  // then the tensors.
  if (!sax.json_error_.empty()) bad(path, "metadata is not valid JSON: " + sax.json_error_);
  if (!sax.root_is_object_) bad(path, "metadata is not a JSON object");
  if (!sax.version_ || !sax.version_->is_integer()) bad(path, "no version");
  // Compared as the 64-bit integer the JSON holds: get<int>() would truncate 4294967297 to 1.
  if (!sax.version_->is_unsigned() || sax.version_->u != 1) {
    bad(path, "container version " + sax.version_->text + " is not supported (this wq reads version 1)");
  }
  m.version = 1;
  if (!sax.structure_error_.empty()) bad(path, "malformed metadata: " + sax.structure_error_);
  if (!sax.have_tensors_) bad(path, "no tensors object");
  if (!sax.tensor_error_.empty()) bad(path, sax.tensor_error_);
  return m;
}

}  // namespace wq::detail
