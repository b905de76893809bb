#include "formats/safetensors_writer.h"

#include <string_view>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "core/json_members.h"
#include "wq/error.h"

namespace wq::detail {

SafetensorsWriter::SafetensorsWriter(AtomicFile& out, std::vector<PartLayout> parts,
                                     const Metadata& metadata)
    : out_(out), parts_(std::move(parts)) {
  offsets_.push_back(0);
  for (const PartLayout& part : parts_) {
    offsets_.push_back(offsets_.back() + element_count(part.shape) * dtype_size(part.dtype));
  }
  data_bytes_ = offsets_.back();
  const std::string header = header_json(metadata);
  std::uint8_t length[8];
  for (int i = 0; i < 8; ++i) length[i] = static_cast<std::uint8_t>(header.size() >> (8 * i));
  out_.write(length, sizeof length);
  out_.write(header.data(), header.size());
  data_start_ = 8 + header.size();
}

std::string SafetensorsWriter::header_json(const Metadata& metadata) const {
  nlohmann::ordered_json root;
  nlohmann::ordered_json meta = nlohmann::ordered_json::object();
  for (const auto& [key, value] : metadata) meta[key] = value;
  root["__metadata__"] = meta;
  std::unordered_set<std::string_view> names = {"__metadata__"};
  for (std::size_t i = 0; i < parts_.size(); ++i) {
    const PartLayout& part = parts_[i];
    if (!names.insert(part.name).second) {
      throw Error(ErrorCode::kBadFormat, out_.destination() + ": two parts are named '" + part.name + "'");
    }
    append_member(root, part.name,
                  {{"dtype", std::string(dtype_name(part.dtype))},
                   {"shape", part.shape},
                   {"data_offsets", {offsets_[i], offsets_[i + 1]}}});
  }
  std::string header = root.dump();
  // The data buffer starts 8-aligned, as the reference writer does (space padding is legal).
  header.append((8 - (8 + header.size()) % 8) % 8, ' ');
  return header;
}

void SafetensorsWriter::append(const void* data, std::size_t size) {
  if (written_ + size > data_bytes_) {
    throw Error(ErrorCode::kInternal, out_.destination() + ": more part data than the header declares");
  }
  out_.write(data, size);
  written_ += size;
}

void SafetensorsWriter::rewrite_metadata(const Metadata& metadata) {
  const std::string header = header_json(metadata);
  if (8 + header.size() != data_start_) {
    throw Error(ErrorCode::kInternal, out_.destination() + ": rewritten header changed length");
  }
  out_.write_at(8, header.data(), header.size());
}

void SafetensorsWriter::finish() {
  if (written_ != data_bytes_) {
    throw Error(ErrorCode::kInternal, out_.destination() + ": wrote " + std::to_string(written_) +
                                          " data bytes, header declares " + std::to_string(data_bytes_));
  }
}

}  // namespace wq::detail
