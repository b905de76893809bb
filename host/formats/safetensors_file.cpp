#include "formats/safetensors_file.h"

#include <algorithm>
#include <string_view>
#include <utility>

#include "wq/error.h"

namespace wq::detail {
namespace {

std::uint64_t read_u64_le(const std::byte* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<std::uint8_t>(p[i]);
  return v;
}

[[noreturn]] void bad(const std::string& path, const std::string& what) {
  throw Error(ErrorCode::kBadFormat, path + ": invalid safetensors file: " + what);
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
  const std::string_view header(reinterpret_cast<const char*>(file_.data()) + 8, n);  // read in place
  if (header.empty() || header.front() != '{') bad(path, "header does not start with '{'");
  SafetensorsHeader parsed = parse_safetensors_header(header, path);
  entries_ = std::move(parsed.entries);
  metadata_ = std::move(parsed.metadata);
  check_layout();
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
