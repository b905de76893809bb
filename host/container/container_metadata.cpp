#include "container/container_metadata.h"

#include <nlohmann/json.hpp>

#include "container/checksum.h"
#include "core/checked_math.h"
#include "wq/codec/pack.h"
#include "wq/error.h"

namespace wq::detail {
namespace {

using ojson = nlohmann::ordered_json;

[[noreturn]] void bad(const std::string& path, const std::string& what) {
  throw Error(ErrorCode::kBadFormat, path + ": invalid WQ container: " + what);
}

std::optional<Encoding> parse_encoding(const std::string& name) {
  if (name == "affine") return Encoding::kAffine;
  if (name == "cast") return Encoding::kCast;
  if (name == "raw") return Encoding::kRaw;
  return std::nullopt;
}

}  // namespace

std::string_view encoding_name_impl(Encoding e) {
  switch (e) {
    case Encoding::kAffine: return "affine";
    case Encoding::kCast: return "cast";
    case Encoding::kRaw: return "raw";
  }
  return "?";
}

std::vector<std::string> part_names(const std::string& name, Encoding encoding) {
  if (encoding == Encoding::kAffine) return {name + ".__codes", name + ".__scale", name + ".__min"};
  return {name};
}

std::vector<PartLayout> parts_of(const ContainerTensor& t) {
  if (t.encoding == Encoding::kAffine) {
    const GroupGeometry g = stored_group_geometry(t.shape, t.group_size, t.bits);
    const DType scale = t.scale_dtype == ScaleDType::kF32 ? DType::kF32 : DType::kF16;
    return {PartLayout{t.parts.at(0), DType::kU8, {g.code_bytes}},
            PartLayout{t.parts.at(1), scale, {g.groups}},
            PartLayout{t.parts.at(2), scale, {g.groups}}};
  }
  return {PartLayout{t.parts.at(0), t.data_dtype, t.shape}};
}

std::string metadata_json(const ContainerMetadata& m) {
  ojson root;
  root["version"] = m.version;
  root["producer"] = m.producer;
  root["source"] = {{"file", m.source.file}, {"format", m.source.format}, {"bytes", m.source.bytes}};
  ojson tensors = ojson::object();
  for (const ContainerTensor& t : m.tensors) {
    ojson entry;
    entry["dtype"] = std::string(dtype_name(t.dtype));
    entry["shape"] = t.shape;
    entry["encoding"] = std::string(encoding_name_impl(t.encoding));
    if (t.encoding == Encoding::kAffine) {
      entry["bits"] = t.bits;
      entry["group_size"] = t.group_size;
      entry["range"] = t.range;
      entry["codes"] = t.parts.at(0);
      entry["scale"] = t.parts.at(1);
      entry["min"] = t.parts.at(2);
    } else {
      entry["data"] = t.parts.at(0);
    }
    entry["xxh3"] = t.xxh3;
    tensors[t.name] = std::move(entry);
  }
  root["tensors"] = std::move(tensors);
  if (!m.paddle_name_table.empty()) {
    ojson table = ojson::object();
    for (const auto& [structured, parameter] : m.paddle_name_table) table[structured] = parameter;
    root["paddle_name_table"] = std::move(table);
  }
  return root.dump();
}

ContainerMetadata parse_metadata_json(const std::string& text, const std::string& path) {
  ojson root;
  try {
    root = ojson::parse(text);
  } catch (const ojson::exception& e) {
    bad(path, std::string("metadata is not valid JSON: ") + e.what());
  }
  ContainerMetadata m;
  try {
    if (!root.is_object()) bad(path, "metadata is not a JSON object");
    if (!root.contains("version") || !root["version"].is_number_integer()) bad(path, "no version");
    // Compared as the 64-bit integer the JSON holds: get<int>() would truncate 4294967297 to 1.
    if (!root["version"].is_number_unsigned() || root["version"].get<std::uint64_t>() != 1) {
      bad(path, "container version " + root["version"].dump() + " is not supported (this wq reads version 1)");
    }
    m.version = 1;
    m.producer = root.value("producer", "");
    if (root.contains("source") && root["source"].is_object()) {
      const ojson& s = root["source"];
      m.source.file = s.value("file", "");
      m.source.format = s.value("format", "");
      m.source.bytes = s.value("bytes", std::uint64_t{0});
    }
    if (!root.contains("tensors") || !root["tensors"].is_object()) bad(path, "no tensors object");
    for (auto it = root["tensors"].begin(); it != root["tensors"].end(); ++it) {
      const std::string where = "tensor '" + it.key() + "'";
      const ojson& e = it.value();
      if (!e.is_object()) bad(path, where + " is not an object");
      ContainerTensor t;
      t.name = it.key();
      const auto dtype = parse_dtype(e.value("dtype", ""));
      if (!dtype) bad(path, where + " has an unknown dtype '" + e.value("dtype", "") + "'");
      t.dtype = *dtype;
      if (!e.contains("shape") || !e["shape"].is_array()) bad(path, where + " has no shape");
      for (const ojson& d : e["shape"]) {
        if (!d.is_number_unsigned()) bad(path, where + " has a shape that is not non-negative integers");
        t.shape.push_back(d.get<std::uint64_t>());
      }
      if (!checked_tensor_bytes(t.shape, t.dtype)) bad(path, where + " has a shape of more than 2^64 bytes");
      const std::string encoding = e.value("encoding", "");
      const auto enc = parse_encoding(encoding);
      if (!enc) bad(path, where + " has an unknown encoding '" + encoding + "'");
      t.encoding = *enc;
      if (t.encoding == Encoding::kAffine) {
        if (!e.contains("bits") || !e["bits"].is_number_integer()) bad(path, where + " has no bits");
        // Range-checked as the 64-bit integer the JSON holds, before narrowing.
        const ojson& bits = e["bits"];
        if (!bits.is_number_unsigned() || bits.get<std::uint64_t>() < 1 || bits.get<std::uint64_t>() > 8) {
          bad(path, where + " has bits " + bits.dump() + " outside 1..8");
        }
        t.bits = static_cast<int>(bits.get<std::uint64_t>());
        if (!e.contains("group_size") || !e["group_size"].is_number_unsigned()) {
          bad(path, where + " has no group_size");
        }
        t.group_size = e["group_size"].get<std::uint64_t>();
        t.range = e.value("range", "minmax");
        if (!is_floating(t.dtype)) bad(path, where + " is affine but its dtype is not floating");
        for (const char* key : {"codes", "scale", "min"}) {
          if (!e.contains(key) || !e[key].is_string()) bad(path, where + " has no '" + key + "' part");
          t.parts.push_back(e[key].get<std::string>());
        }
      } else {
        if (!e.contains("data") || !e["data"].is_string()) bad(path, where + " has no 'data' part");
        t.parts.push_back(e["data"].get<std::string>());
      }
      t.xxh3 = e.value("xxh3", "");
      if (!is_checksum_text(t.xxh3)) bad(path, where + " has no valid xxh3 (16 lowercase hex digits)");
      m.tensors.push_back(std::move(t));
    }
    if (root.contains("paddle_name_table") && root["paddle_name_table"].is_object()) {
      for (auto it = root["paddle_name_table"].begin(); it != root["paddle_name_table"].end(); ++it) {
        if (it.value().is_string()) m.paddle_name_table.emplace_back(it.key(), it.value().get<std::string>());
      }
    }
  } catch (const ojson::exception& e) {
    bad(path, std::string("malformed metadata: ") + e.what());
  }
  return m;
}

}  // namespace wq::detail

namespace wq {
std::string_view encoding_name(Encoding encoding) noexcept {
  return detail::encoding_name_impl(encoding);
}
}  // namespace wq
