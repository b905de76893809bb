// The private folder of `wq-gpu sweep`: every container and decoded checkpoint a sweep makes
// lives in it, and it goes away with everything in it when the sweep ends, however it ends
// (success, an error, Ctrl-C: each unwinds through the destructor).
#pragma once

#include <string>

namespace wq::cli {

class SweepWorkspace {
 public:
  /// Creates a fresh folder (mkdtemp, mode 0700) named wq-sweep-XXXXXX inside `parent`, or
  /// inside the system's temporary folder (TMPDIR, else /tmp) when `parent` is empty. Throws
  /// Error(kOutput) naming the parent when it is missing or not writable.
  explicit SweepWorkspace(const std::string& parent);
  SweepWorkspace(const SweepWorkspace&) = delete;
  SweepWorkspace& operator=(const SweepWorkspace&) = delete;
  ~SweepWorkspace();

  const std::string& path() const noexcept { return path_; }

  /// A new empty sub-folder for one row; remove_folder() it when the row is done, so that the
  /// disk holds one row's files at a time.
  std::string make_folder(const std::string& name) const;
  /// The same inside any folder of the workspace. Throws Error(kOutput).
  static std::string make_folder_in(const std::string& parent, const std::string& name);
  static void remove_folder(const std::string& folder) noexcept;

 private:
  std::string path_;
};

}  // namespace wq::cli
