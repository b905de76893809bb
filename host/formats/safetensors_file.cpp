#include "formats/safetensors_file.h"

#include <algorithm>
#include <cstring>
#include <set>
#include <utility>

#include <nlohmann/json.hpp>

#include "wq/error.h"

namespace wq::detail {
namespace {

using nlohmann::json;

std::uint64_t read_u64_le(const std::byte* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<std::uint8_t>(p[i]);
  return v;
}

[[noreturn]] void bad(const std::string& path, const std::string& what) {
  throw Error(ErrorCode::kBadFormat, path + ": invalid safetensors file: " + what);
}

std::uint64_t json_u64(const json& v, const std::string& path, const std::string& what) {
  if (!v.is_number_unsigned()) bad(path, what + " must be a non-negative integer");
  return v.get<std::uint64_t>();
}

}  // namespace

bool SafetensorsFile::sniff(const std::byte* data, std::uint64_t size) {
  if (size < 9) return false;
  const std::uint64_t n = read_u64_le(data);
  // A header length past the end still counts: the reader then says the file is truncated.
  return n >= 2 && n <= kMaxHeaderBytes && static_cast<char>(data[8]) == '{';
}

SafetensorsFile::SafetensorsFile(const std::string& path) : SafetensorsFile(MappedFile(path)) {}

bool SafetensorsFile::has_metadata(MappedFile file, const std::string& key) {
  if (!sniff(file.data(), file.size())) return false;
  try {
    return SafetensorsFile(std::move(file)).metadata().count(key) != 0;
  } catch (const Error&) {
    return false;
  }
}

SafetensorsFile::SafetensorsFile(MappedFile file) : file_(std::move(file)) {
  const std::string& path = file_.path();
  const std::uint64_t size = file_.size();
  if (size < 8) bad(path, "file is " + std::to_string(size) + " bytes, shorter than the 8-byte header length");
  const std::uint64_t n = read_u64_le(file_.data());
  if (n > kMaxHeaderBytes) {
    bad(path, "header length " + std::to_string(n) + " exceeds the 100,000,000-byte limit");
  }
  if (n > size - 8) {
    bad(path, "header length " + std::to_string(n) + " runs past the end of the " +
                  std::to_string(size) + "-byte file (truncated?)");
  }
  data_start_ = 8 + n;
  std::string header(reinterpret_cast<const char*>(file_.data()) + 8, n);
  if (header.empty() || header.front() != '{') bad(path, "header does not start with '{'");
  parse_header(header);
  check_layout();
}

void SafetensorsFile::parse_header(const std::string& header) {
  const std::string& p = path();
  // Duplicate names are legal JSON but ambiguous: reject them while parsing (the parsed object
  // would silently keep the last one).
  std::set<std::string> top_keys;
  std::string duplicate;
  json::parser_callback_t on_event = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::key && depth == 1) {
      const std::string key = parsed.get<std::string>();
      if (!top_keys.insert(key).second && duplicate.empty()) duplicate = key;
    }
    return true;
  };
  json root;
  try {
    root = json::parse(header, on_event);
  } catch (const json::exception& e) {
    bad(p, std::string("header is not valid JSON: ") + e.what());
  }
  if (!duplicate.empty()) bad(p, "tensor name '" + duplicate + "' appears more than once");
  if (!root.is_object()) bad(p, "header is not a JSON object");

  for (auto it = root.begin(); it != root.end(); ++it) {
    const std::string& name = it.key();
    const json& value = it.value();
    if (name == "__metadata__") {
      if (value.is_null()) continue;
      if (!value.is_object()) bad(p, "__metadata__ is not an object");
      for (auto m = value.begin(); m != value.end(); ++m) {
        if (!m.value().is_string()) bad(p, "__metadata__ value '" + m.key() + "' is not a string");
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + name + "'";
    if (!value.is_object()) bad(p, where + " is not an object");
    const auto dtype_it = value.find("dtype");
    const auto shape_it = value.find("shape");
    const auto offsets_it = value.find("data_offsets");
    if (dtype_it == value.end() || !dtype_it->is_string()) bad(p, where + " has no dtype string");
    if (shape_it == value.end() || !shape_it->is_array()) bad(p, where + " has no shape array");
    if (offsets_it == value.end() || !offsets_it->is_array() || offsets_it->size() != 2) {
      bad(p, where + " has no [begin, end] data_offsets");
    }
    SafetensorsEntry entry;
    entry.name = name;
    const std::string dtype_name = dtype_it->get<std::string>();
    const auto dtype = parse_dtype(dtype_name);
    if (!dtype) {
      bad(p, where + " has unknown or unsupported dtype '" + dtype_name +
                 "' (supported: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL)");
    }
    entry.dtype = *dtype;
    for (const json& d : *shape_it) entry.shape.push_back(json_u64(d, p, where + " shape"));
    entry.begin = json_u64((*offsets_it)[0], p, where + " data_offsets");
    entry.end = json_u64((*offsets_it)[1], p, where + " data_offsets");
    if (entry.end < entry.begin) bad(p, where + " ends before it begins");
    std::uint64_t numel = 0;
    try {
      numel = element_count(entry.shape);
    } catch (const Error&) {
      bad(p, where + " shape overflows");
    }
    const std::uint64_t elem = dtype_size(entry.dtype);
    if (numel > UINT64_MAX / elem || numel * elem != entry.bytes()) {
      bad(p, where + " holds " + std::to_string(entry.bytes()) + " bytes but its shape and dtype need " +
                 (numel > UINT64_MAX / elem ? std::string("more than 2^64") : std::to_string(numel * elem)));
    }
    entries_.push_back(std::move(entry));
  }
}

void SafetensorsFile::check_layout() {
  const std::string& p = path();
  std::stable_sort(entries_.begin(), entries_.end(),
                   [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
                     return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
                   });
  std::uint64_t expected = 0;
  const SafetensorsEntry* previous = nullptr;
  for (const SafetensorsEntry& e : entries_) {
    if (e.begin < expected) {
      bad(p, "tensor '" + e.name + "' overlaps tensor '" + previous->name + "'");
    }
    if (e.begin > expected) {
      bad(p, "gap of " + std::to_string(e.begin - expected) + " bytes before tensor '" + e.name + "'");
    }
    expected = e.end;
    previous = &e;
  }
  const std::uint64_t available = file_.size() - data_start_;
  if (expected > available) {
    bad(p, "data ends at byte " + std::to_string(data_start_ + expected) + " but the file has only " +
               std::to_string(file_.size()) + " bytes (truncated?)");
  }
  if (expected < available) {
    bad(p, std::to_string(available - expected) + " trailing bytes after the last tensor");
  }
  for (std::size_t i = 0; i < entries_.size(); ++i) index_[entries_[i].name] = i;
}

std::optional<std::size_t> SafetensorsFile::find(const std::string& name) const {
  const auto it = index_.find(name);
  if (it == index_.end()) return std::nullopt;
  return it->second;
}

}  // namespace wq::detail
