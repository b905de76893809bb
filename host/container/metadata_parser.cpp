// parse_metadata_json(): the container's "wq" metadata in one streaming (SAX) pass.
//
// Streaming (core/json_stream.h) rather than an ordered DOM, which took O(n^2) for n tensors
// (40,000 tensors: 7 s; a crafted 100 MB header would never finish). Each tensor is checked as
// it closes and only what the container keeps is stored.
#include <optional>
#include <set>

#include "container/checksum.h"
#include "container/container_metadata.h"
#include "core/base64.h"
#include "core/checked_math.h"
#include "core/json_stream.h"
#include "wq/error.h"

namespace wq::detail {
namespace {

std::optional<Encoding> parse_encoding(const std::string& name) {
  if (name == "affine") return Encoding::kAffine;
  if (name == "cast") return Encoding::kCast;
  if (name == "raw") return Encoding::kRaw;
  if (name == "symmetric") return Encoding::kSymmetric;
  if (name == "ggml") return Encoding::kGgml;
  return std::nullopt;
}

// One tensor's fields as they stream by; checked when its object closes.
struct PendingTensor {
  std::string name;
  std::optional<JsonScalar> dtype, encoding, bits, group_size, range, xxh3, codes, scale, min, data, ggml_type, blocks;
  bool has_shape = false, shape_bad = false;
  Shape shape;
};

enum class Place { kBeforeRoot, kRoot, kSource, kTensors, kTensor, kShape, kPaddleTable, kDone };

class MetadataHandler final : public JsonStreamHandler {
 public:
  explicit MetadataHandler(ContainerMetadata* out) : m_(out) {}

  bool root_is_object_ = false;
  std::optional<JsonScalar> version_;
  std::string structure_error_;  // the first problem outside the tensors
  std::string tensor_error_;     // the first problem of a tensor, in file order
  bool have_tensors_ = false;

 private:
  void structure_problem(const std::string& what) {
    if (structure_error_.empty()) structure_error_ = what;
  }

  void on_key(std::string k) override { key_ = std::move(k); }

  void on_scalar(JsonScalar v) override {
    switch (place_) {
      case Place::kRoot: return root_member(&v);
      case Place::kSource:
        if (key_ == "file" || key_ == "format") {
          if (!v.is_string()) structure_problem("source " + key_ + " is not a string");
          (key_ == "file" ? m_->source.file : m_->source.format) = std::move(v.text);
        } else if (key_ == "bytes") {
          if (!v.is_unsigned()) structure_problem("source bytes is not a non-negative integer");
          m_->source.bytes = v.u;
        }
        return;
      case Place::kTensors: return tensor_problem("tensor '" + key_ + "' is not an object");
      case Place::kTensor: return field(std::move(v));
      case Place::kShape:
        if (v.is_unsigned()) {
          tensor_.shape.push_back(v.u);
        } else {
          tensor_.shape_bad = true;
        }
        return;
      case Place::kPaddleTable:
        if (v.is_string()) m_->paddle_name_table.emplace_back(key_, std::move(v.text));
        return;
      case Place::kBeforeRoot:
      case Place::kDone: return;
    }
  }

  // A member of the root object given as a scalar (`v`) or as an object or array (nullptr).
  void root_member(JsonScalar* v) {
    if (key_ == "version") version_ = v != nullptr ? std::move(*v) : JsonScalar{JsonScalar::Kind::kBool, {}, 0};
    if (key_ == "producer") {
      if (v == nullptr || !v->is_string()) return structure_problem("producer is not a string");
      m_->producer = std::move(v->text);
    }
    if (key_ == "source") structure_problem("source is not an object");
    if (key_ == "tensors") have_tensors_ = false;
    if (key_ == "gguf_kv") {
      std::optional<std::string> records;
      if (v != nullptr && v->is_string()) records = base64_decode(v->text);
      if (!records) return structure_problem("gguf_kv is not base64 text (RFC 4648, with padding)");
      m_->gguf_kv = std::move(*records);
    }
  }

  // A field of a tensor object; given twice, the last one counts (as in a JSON object).
  void field(JsonScalar v) {
    static const std::pair<const char*, std::optional<JsonScalar> PendingTensor::*> kFields[] = {
        {"dtype", &PendingTensor::dtype}, {"encoding", &PendingTensor::encoding}, {"bits", &PendingTensor::bits},
        {"group_size", &PendingTensor::group_size}, {"range", &PendingTensor::range},
        {"xxh3", &PendingTensor::xxh3}, {"codes", &PendingTensor::codes}, {"scale", &PendingTensor::scale},
        {"min", &PendingTensor::min}, {"data", &PendingTensor::data}, {"ggml_type", &PendingTensor::ggml_type},
        {"blocks", &PendingTensor::blocks}};
    for (const auto& [name, member] : kFields) {
      if (key_ == name) tensor_.*member = std::move(v);
    }
    if (key_ == "shape") tensor_.has_shape = false;  // a scalar: no shape array
  }

  bool on_open(bool object) override {
    switch (place_) {
      case Place::kBeforeRoot:
        root_is_object_ = object;
        return enter(object ? Place::kRoot : Place::kDone);
      case Place::kRoot:
        if (object && key_ == "source") return enter(Place::kSource);
        if (object && key_ == "paddle_name_table") return enter(Place::kPaddleTable);
        if (object && key_ == "tensors") {
          have_tensors_ = true;
          return enter(Place::kTensors);
        }
        if (key_ != "source" && key_ != "paddle_name_table") root_member(nullptr);
        if (key_ == "source") structure_problem("source is not an object");
        return false;
      case Place::kTensors:
        if (!object) {
          tensor_problem("tensor '" + key_ + "' is not an object");
          return false;
        }
        tensor_ = PendingTensor{};
        tensor_.name = key_;
        return enter(Place::kTensor);
      case Place::kTensor:
        if (!object && key_ == "shape") {
          tensor_.has_shape = true;
          tensor_.shape_bad = false;
          tensor_.shape.clear();
          return enter(Place::kShape);
        }
        field(JsonScalar{JsonScalar::Kind::kBool, {}, 0});  // a container where a scalar belongs
        return false;
      case Place::kShape: tensor_.shape_bad = true; return false;
      case Place::kSource:
        if (key_ == "file" || key_ == "format") structure_problem("source " + key_ + " is not a string");
        if (key_ == "bytes") structure_problem("source bytes is not a non-negative integer");
        return false;
      case Place::kPaddleTable:
      case Place::kDone: return false;
    }
    return false;
  }

  bool enter(Place next) {
    if (next == Place::kDone) return false;
    place_ = next;
    return true;
  }

  void on_close() override {
    switch (place_) {
      case Place::kShape: place_ = Place::kTensor; return;
      case Place::kTensor:
        finish_tensor();
        place_ = Place::kTensors;
        return;
      case Place::kSource:
      case Place::kTensors:
      case Place::kPaddleTable: place_ = Place::kRoot; return;
      case Place::kRoot:
      case Place::kBeforeRoot:
      case Place::kDone: place_ = Place::kDone; return;
    }
  }

  void tensor_problem(const std::string& what) {
    if (tensor_error_.empty()) tensor_error_ = what;
  }

  static std::string text_or(const std::optional<JsonScalar>& v, const std::string& otherwise) {
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
    if (has_codes(t.encoding)) {
      if (!p.bits || !p.bits->is_integer()) return tensor_problem(where + " has no bits");
      // Range-checked as the 64-bit integer the JSON holds, before narrowing.
      if (!p.bits->is_unsigned() || p.bits->u < 1 || p.bits->u > 8) {
        return tensor_problem(where + " has bits " + p.bits->text + " outside 1..8");
      }
      t.bits = static_cast<int>(p.bits->u);
      if (!p.group_size || !p.group_size->is_unsigned()) return tensor_problem(where + " has no group_size");
      t.group_size = p.group_size->u;
      t.range = text_or(p.range, t.encoding == Encoding::kSymmetric ? "symmetric" : "minmax");
      if (!is_floating(t.dtype)) return tensor_problem(where + " is " + encoding + " but its dtype is not floating");
      for (const auto& [part, value] : {std::pair{"codes", &p.codes}, std::pair{"scale", &p.scale}, std::pair{"min", &p.min}}) {
        if (t.encoding == Encoding::kSymmetric && value == &p.min) {
          if (*value) return tensor_problem(where + " is symmetric but has a 'min' part");
          continue;
        }
        if (!*value || !(*value)->is_string()) return tensor_problem(where + " has no '" + part + "' part");
        t.parts.push_back((*value)->text);
      }
    } else if (t.encoding == Encoding::kGgml) {
      const std::string type = text_or(p.ggml_type, "");
      bool known = false;
      for (codec::ggml::Type k : codec::ggml::kQuantizedTypes) {
        if (type == codec::ggml::type_name(k)) {
          t.ggml_type = k;
          known = true;
        }
      }
      if (!known) return tensor_problem(where + " has an unknown ggml_type '" + type + "'");
      t.range = text_or(p.range, "");  // "mse" where wq's search chose the blocks
      if (!is_floating(t.dtype)) return tensor_problem(where + " is ggml but its dtype is not floating");
      const std::uint64_t block = codec::ggml::layout_of(t.ggml_type).block_elements;
      if ((t.shape.empty() ? 1 : t.shape.back()) % block != 0) {
        return tensor_problem(where + "'s innermost dimension is not whole " + type + " blocks of " + std::to_string(block));
      }
      if (!p.blocks || !p.blocks->is_string()) return tensor_problem(where + " has no 'blocks' part");
      t.parts.push_back(p.blocks->text);
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
  MetadataHandler sax(&m);
  parse_json_stream(text, sax);
  // Problems in the order the checks were always made: the JSON, its structure, the version,
  // then the tensors.
  if (!sax.json_error().empty()) bad(path, "metadata is not valid JSON: " + sax.json_error());
  if (!sax.root_is_object_) bad(path, "metadata is not a JSON object");
  if (!sax.version_ || !sax.version_->is_integer()) bad(path, "no version");
  // Compared as the 64-bit integer the JSON holds: get<int>() would truncate 4294967297 to 1.
  if (!sax.version_->is_unsigned() || sax.version_->u < 1 || sax.version_->u > 2) {
    bad(path, "container version " + sax.version_->text + " is not supported (this wq reads versions 1 and 2)");
  }
  m.version = static_cast<int>(sax.version_->u);
  if (!sax.structure_error_.empty()) bad(path, "malformed metadata: " + sax.structure_error_);
  if (!sax.have_tensors_) bad(path, "no tensors object");
  if (!sax.tensor_error_.empty()) bad(path, sax.tensor_error_);
  for (const ContainerTensor& t : m.tensors) {  // after the whole object: "version" may come last
    if ((t.encoding == Encoding::kSymmetric || t.encoding == Encoding::kGgml) && m.version < 2) {
      bad(path, "tensor '" + t.name + "' has encoding '" + std::string(encoding_name(t.encoding)) +
                    "', which needs container version 2");
    }
  }
  return m;
}

}  // namespace wq::detail
