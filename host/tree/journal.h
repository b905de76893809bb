// Tree mode's journal: what is finished, so that a rerun (after Ctrl-C, a crash, SIGKILL, a
// preempted cluster job) redoes only what is not.
//
// One JSON object per line in OUTPUT/.wq-journal.jsonl (with --shard I/N:
// .wq-journal.shard-I-of-N.jsonl, so that processes sharing a network file system never append
// to one file). A line is appended and fsynced only after its output was renamed into place,
// so a line always describes a complete file; a torn last line (killed mid-append) is ignored.
// Every journal in the output root is read, so a rerun with other sharding still sees all.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace wq::detail {

/// Size and modification time of a file, and its XXH3-64 when computed.
struct FileIdentity {
  std::uint64_t size = 0;
  std::int64_t mtime_ns = 0;
  std::string xxh3;  ///< 16 hex digits; empty when not computed
};

/// stat() of `path`, nullopt when it does not exist.
std::optional<FileIdentity> stat_identity(const std::string& path);

/// A file besides the input that an output is made of: a shard of a checkpoint that becomes one
/// GGUF file (its index is the input). Known by its file name, so a moved folder is not a
/// changed shard.
struct PartIdentity {
  std::string name;
  FileIdentity id;  ///< with hash
};

struct JournalEntry {
  std::string output;       ///< relative to the output root: the key
  std::string kind;         ///< "container", "index" or "copy"
  FileIdentity output_id;   ///< as committed (no hash)
  std::string input;        ///< relative path in the mirrored tree
  FileIdentity input_id;    ///< with hash
  std::string settings;     ///< fingerprint of the settings that made it ("copy" for copies)
  std::vector<PartIdentity> parts;  ///< in the input's order; empty for most outputs
  /// The file's line of the final report, so that a resumed run still reports every file.
  nlohmann::ordered_json summary = nlohmann::ordered_json::object();
};

class Journal {
 public:
  /// Reads every .wq-journal*.jsonl in `output_root` (none yet is fine); appends will go to
  /// output_root/file_name. Writes nothing until append().
  Journal(std::string output_root, std::string file_name);
  ~Journal();
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  const std::string& path() const noexcept { return path_; }

  /// The entry of `output` when the work is done and still valid: same settings, the output
  /// exists with the recorded size and mtime, and the input and every part (`part_paths`, the
  /// same file names in the same order as recorded) are unchanged: the same size and mtime, or,
  /// where only the mtime differs, the same XXH3. nullptr otherwise.
  const JournalEntry* done(const std::string& output, const std::string& input_path, const std::string& settings,
                           const std::string& output_path, const std::atomic<bool>* cancel,
                           const std::vector<std::string>& part_paths = {}) const;

  /// Appends one line and fsyncs it. Throws Error(kOutput).
  void append(const JournalEntry& entry);

 private:
  void read_file(const std::string& path);

  std::string root_;
  std::string path_;
  int fd_ = -1;
  std::map<std::string, JournalEntry> entries_;
};

}  // namespace wq::detail
