#include "container/container_metadata.h"

#include <algorithm>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "container/checksum.h"
#include "core/base64.h"
#include "core/json_members.h"
#include "core/json_text.h"
#include "wq/codec/pack.h"
#include "wq/codec/pack_quantized.h"
#include "wq/error.h"

namespace wq::detail {
namespace {

using ojson = nlohmann::ordered_json;

}  // namespace

std::string_view encoding_name_impl(Encoding e) {
  switch (e) {
    case Encoding::kAffine: return "affine";
    case Encoding::kCast: return "cast";
    case Encoding::kRaw: return "raw";
    case Encoding::kSymmetric: return "symmetric";
    case Encoding::kGgml: return "ggml";
    case Encoding::kPackQuantized: return "pack-quantized";
  }
  return "?";
}

std::vector<std::string> pack_quantized_part_names(const std::string& name, bool symmetric) {
  const std::string module = name.ends_with(".weight") ? name.substr(0, name.size() - 7) : name;
  if (symmetric) return {module + ".weight_packed", module + ".weight_scale", module + ".weight_shape"};
  return {module + ".weight_packed", module + ".weight_scale", module + ".weight_zero_point", module + ".weight_shape"};
}

std::vector<std::string> part_names(const std::string& name, Encoding encoding) {
  if (encoding == Encoding::kAffine) return {name + ".__codes", name + ".__scale", name + ".__min"};
  if (encoding == Encoding::kSymmetric) return {name + ".__codes", name + ".__scale"};
  if (encoding == Encoding::kGgml) return {name + ".__blocks"};
  return {name};
}

std::vector<PartLayout> parts_of(const ContainerTensor& t) {
  if (has_codes(t.encoding)) {
    const GroupGeometry g = stored_group_geometry(t.shape, t.group_size, t.bits);
    const DType scale = t.scale_dtype == ScaleDType::kF32 ? DType::kF32 : DType::kF16;
    std::vector<PartLayout> parts{PartLayout{t.parts.at(0), DType::kU8, {g.code_bytes}},
                                  PartLayout{t.parts.at(1), scale, {g.groups}}};
    if (t.encoding == Encoding::kAffine) parts.push_back(PartLayout{t.parts.at(2), scale, {g.groups}});
    return parts;
  }
  if (t.encoding == Encoding::kPackQuantized) {
    const std::uint64_t rows = t.shape.at(0), cols = t.shape.at(1);
    const std::uint64_t groups = t.group_size == 0 ? 1 : cols / t.group_size;
    std::vector<PartLayout> parts{PartLayout{t.parts.at(0), DType::kI32, {rows, codec::ct::packed_words(cols, t.bits)}},
                                  PartLayout{t.parts.at(1), t.dtype, {rows, groups}}};
    if (t.parts.size() == 4) {
      parts.push_back(PartLayout{t.parts.at(2), DType::kI32, {codec::ct::packed_words(rows, t.bits), groups}});
    }
    parts.push_back(PartLayout{t.parts.back(), DType::kI64, {2}});
    return parts;
  }
  if (t.encoding == Encoding::kGgml) {
    const codec::ggml::TypeLayout layout = codec::ggml::layout_of(t.ggml_type);
    return {PartLayout{t.parts.at(0), DType::kU8, {element_count(t.shape) / layout.block_elements * layout.block_bytes}}};
  }
  return {PartLayout{t.parts.at(0), t.data_dtype, t.shape}};
}

std::string metadata_json(const ContainerMetadata& m) {
  ojson root;
  // Version 2 only where version 1 cannot describe the file: other files stay byte for byte
  // what earlier releases wrote, and older readers still open them.
  bool needs_v2 = false;
  for (const ContainerTensor& t : m.tensors) {
    needs_v2 = needs_v2 || t.encoding == Encoding::kSymmetric || t.encoding == Encoding::kGgml;
  }
  root["version"] = needs_v2 ? std::max(m.version, 2) : m.version;
  root["producer"] = m.producer;
  root["source"] = {{"file", m.source.file}, {"format", m.source.format}, {"bytes", m.source.bytes}};
  ojson tensors = ojson::object();
  std::unordered_set<std::string_view> names;
  for (const ContainerTensor& t : m.tensors) {
    if (!names.insert(t.name).second) throw Error(ErrorCode::kInternal, "two container tensors are named '" + t.name + "'");
    ojson entry;
    entry["dtype"] = std::string(dtype_name(t.dtype));
    entry["shape"] = t.shape;
    entry["encoding"] = std::string(encoding_name_impl(t.encoding));
    if (has_codes(t.encoding)) {
      entry["bits"] = t.bits;
      entry["group_size"] = t.group_size;
      entry["range"] = t.range;
      entry["codes"] = t.parts.at(0);
      entry["scale"] = t.parts.at(1);
      if (t.encoding == Encoding::kAffine) entry["min"] = t.parts.at(2);
    } else if (t.encoding == Encoding::kGgml) {
      entry["ggml_type"] = codec::ggml::type_name(t.ggml_type);
      if (!t.range.empty()) entry["range"] = t.range;
      entry["blocks"] = t.parts.at(0);
    } else {
      entry["data"] = t.parts.at(0);
    }
    entry["xxh3"] = t.xxh3;
    append_member(tensors, t.name, std::move(entry));
  }
  root["tensors"] = std::move(tensors);
  if (!m.paddle_name_table.empty()) {
    // A pickle may repeat a key: the first place, the last value, as a dict keeps it.
    ojson table = ojson::object();
    std::unordered_map<std::string_view, std::size_t> place;
    for (const auto& [structured, parameter] : m.paddle_name_table) {
      const auto [it, added] = place.emplace(structured, table.size());
      if (added) {
        append_member(table, structured, parameter);
      } else {
        (table.get_ref<ojson::object_t&>().begin() + static_cast<std::ptrdiff_t>(it->second))->second = parameter;
      }
    }
    root["paddle_name_table"] = std::move(table);
  }
  if (!m.gguf_kv.empty()) root["gguf_kv"] = base64_encode(m.gguf_kv);
  return json_text(root);  // source.file is a file name: any bytes
}

}  // namespace wq::detail

namespace wq {
std::string_view encoding_name(Encoding encoding) noexcept {
  return detail::encoding_name_impl(encoding);
}
}  // namespace wq
