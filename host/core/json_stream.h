// Reading JSON from files as a stream of events (nlohmann's SAX interface), for the headers
// that may be large: the safetensors header (formats/safetensors_header.cpp) and a
// container's metadata (container/metadata_parser.cpp).
//
// A stream rather than a DOM: a DOM takes ~25x the text in memory, nlohmann's DOM parse with a
// callback rescans an object at each member's end, and its ordered DOM finds each key by a
// linear search, so large headers took minutes. A handler sees only the values it descends
// into; whatever it skips (unknown fields, however nested) costs nothing but the parse.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace wq::detail {

/// A JSON scalar as the checks need it.
struct JsonScalar {
  enum class Kind { kNull, kBool, kSigned, kUnsigned, kFloat, kString };
  Kind kind = Kind::kNull;
  std::string text;     ///< a string's text; a number as the JSON spelled it (for messages)
  std::uint64_t u = 0;  ///< kUnsigned: the value

  bool is_null() const { return kind == Kind::kNull; }
  bool is_string() const { return kind == Kind::kString; }
  bool is_unsigned() const { return kind == Kind::kUnsigned; }
  bool is_integer() const { return kind == Kind::kSigned || kind == Kind::kUnsigned; }
};

/// The events of one JSON text, in document order. An object's members arrive as on_key()
/// then the value; an array's elements as values.
class JsonStreamHandler : public nlohmann::json_sax<nlohmann::json> {
 public:
  /// Why the text is not JSON (nlohmann's message); empty when it is.
  const std::string& json_error() const noexcept { return json_error_; }

  // The SAX interface, called by the parser (public: nlohmann calls it on this type).
  bool null() final { return scalar({}); }
  bool boolean(bool) final { return scalar({JsonScalar::Kind::kBool, {}, 0}); }
  bool number_integer(number_integer_t v) final { return scalar({JsonScalar::Kind::kSigned, std::to_string(v), 0}); }
  bool number_unsigned(number_unsigned_t v) final {
    return scalar({JsonScalar::Kind::kUnsigned, std::to_string(v), v});
  }
  bool number_float(number_float_t, const string_t& s) final { return scalar({JsonScalar::Kind::kFloat, s, 0}); }
  bool string(string_t& v) final { return scalar({JsonScalar::Kind::kString, std::move(v), 0}); }
  bool binary(binary_t&) final { return scalar({JsonScalar::Kind::kBool, {}, 0}); }  // not in JSON text
  bool start_object(std::size_t) final { return open(true); }
  bool start_array(std::size_t) final { return open(false); }
  bool end_object() final { return close(); }
  bool end_array() final { return close(); }
  bool key(string_t& k) final {
    if (skip_ == 0) on_key(std::move(k));
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) final {
    json_error_ = e.what();
    return false;
  }

 protected:
  /// A scalar value.
  virtual void on_scalar(JsonScalar value) = 0;
  /// An object or array begins: true to receive its contents (then on_close() at its end),
  /// false to skip all of it.
  virtual bool on_open(bool object) = 0;
  /// The object or array last descended into ends.
  virtual void on_close() = 0;
  /// The key of the next member of the object descended into.
  virtual void on_key(std::string key) = 0;

 private:
  bool scalar(JsonScalar value) {
    if (skip_ == 0) on_scalar(std::move(value));
    return true;
  }
  bool open(bool object) {
    if (skip_ > 0 || !on_open(object)) ++skip_;
    return true;
  }
  bool close() {
    if (skip_ > 0) {
      --skip_;
    } else {
      on_close();
    }
    return true;
  }

  std::uint64_t skip_ = 0;  // > 0: inside a skipped value, this deep
  std::string json_error_;
};

/// Feeds `text` to `handler`; afterwards handler.json_error() says whether it was JSON.
inline void parse_json_stream(std::string_view text, JsonStreamHandler& handler) {
  nlohmann::json::sax_parse(text.begin(), text.end(), &handler);
}

}  // namespace wq::detail
