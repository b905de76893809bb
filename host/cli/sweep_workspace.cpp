#include "cli/sweep_workspace.h"

#include <stdlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <vector>

#include "wq/error.h"

namespace wq::cli {

namespace fs = std::filesystem;

SweepWorkspace::SweepWorkspace(const std::string& parent) {
  std::error_code ec;
  fs::path folder = parent.empty() ? fs::temp_directory_path(ec) : fs::path(parent);
  if (ec) throw Error(ErrorCode::kOutput, "no temporary folder to work in (" + ec.message() + "); give one with --work-dir");
  if (!fs::is_directory(folder, ec)) {
    throw Error(ErrorCode::kOutput, folder.string() + ": the folder to work in does not exist" +
                                        (parent.empty() ? " (TMPDIR); give another with --work-dir" : ""));
  }
  std::string pattern = (folder / "wq-sweep-XXXXXX").string();
  std::vector<char> buffer(pattern.begin(), pattern.end());
  buffer.push_back('\0');
  if (::mkdtemp(buffer.data()) == nullptr) {
    const int err = errno;
    throw Error(ErrorCode::kOutput, folder.string() + ": cannot create a temporary folder in it: " + std::strerror(err) +
                                        (parent.empty() ? " (give another with --work-dir)" : ""));
  }
  path_ = buffer.data();
}

SweepWorkspace::~SweepWorkspace() { remove_folder(path_); }

std::string SweepWorkspace::make_folder(const std::string& name) const { return make_folder_in(path_, name); }

std::string SweepWorkspace::make_folder_in(const std::string& parent, const std::string& name) {
  const std::string folder = (fs::path(parent) / name).string();
  std::error_code ec;
  if (!fs::create_directory(folder, ec)) {
    throw Error(ErrorCode::kOutput, folder + ": cannot create the folder: " + (ec ? ec.message() : "it exists already"));
  }
  return folder;
}

void SweepWorkspace::remove_folder(const std::string& folder) noexcept {
  std::error_code ec;  // best effort: a destructor may not throw, and there is no one to tell
  fs::remove_all(folder, ec);
}

}  // namespace wq::cli
