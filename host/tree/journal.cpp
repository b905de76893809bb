#include "tree/journal.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <utility>
#include <vector>

#include "core/json_text.h"
#include "core/utf8.h"
#include "pipeline/input_checksum.h"
#include "wq/error.h"

namespace wq::detail {
namespace {

namespace fs = std::filesystem;

nlohmann::ordered_json identity_json(const FileIdentity& id) {
  nlohmann::ordered_json j;
  j["size"] = id.size;
  j["mtime_ns"] = id.mtime_ns;
  if (!id.xxh3.empty()) j["xxh3"] = id.xxh3;
  return j;
}

// A journal's paths are matched again on resume, so they must come back as the same bytes. A
// file name is any bytes but '/' and NUL, a JSON string only UTF-8: a path that is not UTF-8
// is stored as a NUL followed by its bytes in hex. No path holds a NUL, so the two forms never
// meet, and a journal of UTF-8 paths reads as before.
std::string path_to_json(const std::string& path) {
  if (detail::is_valid_utf8(path)) return path;
  static const char* kHex = "0123456789abcdef";
  std::string out(1, '\0');
  for (const char c : path) {
    const auto b = static_cast<unsigned char>(c);
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

/// The path path_to_json() stored; nullopt for a damaged hex form (its line is ignored, like
/// a torn one).
std::optional<std::string> path_from_json(const std::string& text) {
  if (text.empty() || text[0] != '\0') return text;
  if (text.size() % 2 != 1) return std::nullopt;
  std::string out;
  for (std::size_t i = 1; i < text.size(); i += 2) {
    const int hi = hex_digit(text[i]), lo = hex_digit(text[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
  }
  return out;
}

FileIdentity identity_of(const nlohmann::ordered_json& j) {
  FileIdentity id;
  id.size = j.at("size").get<std::uint64_t>();
  id.mtime_ns = j.at("mtime_ns").get<std::int64_t>();
  if (j.contains("xxh3")) id.xxh3 = j.at("xxh3").get<std::string>();
  return id;
}

void write_all(int fd, const std::string& text, const std::string& path) {
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      throw Error(ErrorCode::kOutput, path + ": cannot append to the journal: " + std::strerror(n < 0 ? errno : ENOSPC));
    }
    done += static_cast<std::size_t>(n);
  }
}

}  // namespace

std::optional<FileIdentity> stat_identity(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  FileIdentity id;
  id.size = static_cast<std::uint64_t>(st.st_size);
  id.mtime_ns = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  return id;
}

Journal::Journal(std::string output_root, std::string file_name)
    : root_(std::move(output_root)), path_(root_ + "/" + file_name) {
  std::error_code ec;
  std::vector<std::string> journals;
  for (fs::directory_iterator it(root_, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.rfind(".wq-journal", 0) == 0 && name.size() > 6 && name.compare(name.size() - 6, 6, ".jsonl") == 0) {
      journals.push_back(it->path().string());
    }
  }
  std::sort(journals.begin(), journals.end());
  for (const std::string& j : journals) read_file(j);
}

Journal::~Journal() {
  if (fd_ >= 0) ::close(fd_);
}

void Journal::read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  for (std::string line; std::getline(in, line);) {
    // A line that does not parse was torn by a kill mid-append: its file is simply not done.
    try {
      const nlohmann::ordered_json j = nlohmann::ordered_json::parse(line);
      const std::optional<std::string> output = path_from_json(j.at("output").get<std::string>());
      const std::optional<std::string> input = path_from_json(j.at("input").get<std::string>());
      if (!output || !input) continue;
      JournalEntry e;
      e.output = *output;
      e.kind = j.at("kind").get<std::string>();
      e.output_id = identity_of(j.at("output_id"));
      e.input = *input;
      e.input_id = identity_of(j.at("input_id"));
      e.settings = j.at("settings").get<std::string>();
      bool parts_ok = true;
      if (j.contains("parts")) {
        for (const auto& part : j.at("parts")) {
          const std::optional<std::string> name = path_from_json(part.at("name").get<std::string>());
          parts_ok = parts_ok && name.has_value();
          if (name) e.parts.push_back(PartIdentity{*name, identity_of(part)});
        }
      }
      if (!parts_ok) continue;
      if (j.contains("summary")) e.summary = j.at("summary");
      entries_[e.output] = std::move(e);  // a later line describes a later write
    } catch (const nlohmann::json::exception&) {
      continue;
    }
  }
}

const JournalEntry* Journal::done(const std::string& output, const std::string& input_path,
                                  const std::string& settings, const std::string& output_path,
                                  const std::atomic<bool>* cancel, const std::vector<std::string>& part_paths) const {
  const auto it = entries_.find(output);
  if (it == entries_.end()) return nullptr;
  const JournalEntry& e = it->second;
  if (e.settings != settings || e.parts.size() != part_paths.size()) return nullptr;
  const std::optional<FileIdentity> out = stat_identity(output_path);
  if (!out || out->size != e.output_id.size || out->mtime_ns != e.output_id.mtime_ns) return nullptr;
  for (std::size_t i = 0; i < part_paths.size(); ++i) {
    if (fs::path(part_paths[i]).filename().string() != e.parts[i].name) return nullptr;
  }
  // The input and every part alike: sizes and mtimes first, all of them, then a hash only where
  // nothing cheaper decided (touched but perhaps not changed: a copy that kept the bytes, a
  // checkout).
  std::vector<std::pair<const std::string*, const FileIdentity*>> files{{&input_path, &e.input_id}};
  for (std::size_t i = 0; i < part_paths.size(); ++i) files.emplace_back(&part_paths[i], &e.parts[i].id);
  std::vector<std::pair<const std::string*, const FileIdentity*>> touched;
  for (const auto& [path, recorded] : files) {
    const std::optional<FileIdentity> now = stat_identity(*path);
    if (!now || now->size != recorded->size) return nullptr;
    if (now->mtime_ns != recorded->mtime_ns) touched.emplace_back(path, recorded);
  }
  for (const auto& [path, recorded] : touched) {
    if (recorded->xxh3.empty() || detail::checksum_file(*path, cancel) != recorded->xxh3) return nullptr;
  }
  return &e;
}

void Journal::append(const JournalEntry& entry) {
  if (fd_ < 0) {
    const bool existed = fs::exists(path_);
    fd_ = ::open(path_.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0644);  // RDWR: pread below
    if (fd_ < 0) throw Error(ErrorCode::kOutput, path_ + ": cannot open the journal: " + std::strerror(errno));
    // After a kill mid-append the file ends in a torn line: end it so the next line parses.
    struct stat st {};
    if (::fstat(fd_, &st) == 0 && st.st_size > 0) {
      char last = '\n';
      if (::pread(fd_, &last, 1, st.st_size - 1) == 1 && last != '\n') write_all(fd_, "\n", path_);
    }
    if (!existed) {  // make the new file's name durable too
      const int dir = ::open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (dir >= 0) {
        ::fsync(dir);
        ::close(dir);
      }
    }
  }
  nlohmann::ordered_json j;
  j["output"] = path_to_json(entry.output);
  j["kind"] = entry.kind;
  j["output_id"] = identity_json(entry.output_id);
  j["input"] = path_to_json(entry.input);
  j["input_id"] = identity_json(entry.input_id);
  j["settings"] = entry.settings;
  if (!entry.parts.empty()) {
    nlohmann::ordered_json parts = nlohmann::ordered_json::array();
    for (const PartIdentity& part : entry.parts) {
      nlohmann::ordered_json p;
      p["name"] = path_to_json(part.name);
      p.update(identity_json(part.id));
      parts.push_back(std::move(p));
    }
    j["parts"] = std::move(parts);
  }
  j["summary"] = entry.summary;
  write_all(fd_, detail::json_text(j) + "\n", path_);  // one write: a line is never interleaved
  if (::fsync(fd_) != 0) throw Error(ErrorCode::kOutput, path_ + ": fsync of the journal failed: " + std::strerror(errno));
  entries_[entry.output] = entry;
}

}  // namespace wq::detail
