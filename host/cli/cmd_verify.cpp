// wq-gpu verify FILE|DIR: structure and every checksum of WQ containers; the structure of GGUF
// files (which carry no checksums).
#include <filesystem>
#include <memory>

#include <fmt/core.h>

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "formats/gguf_checkpoint.h"
#include "wq/checkpoint.h"
#include "wq/container.h"
#include "wq/error.h"

namespace wq::cli {
namespace {

namespace fs = std::filesystem;

struct VerifyFlags {
  std::vector<std::string> inputs;
  bool quiet = false;
};

// Checks one container (or GGUF file); prints what is wrong and returns the worst error code
// (0 when good).
int verify_file(const std::string& path, bool quiet) {
  try {
    if (detail::starts_with_gguf_magic(path)) {
      // Opening validates every rule of the format (docs/gguf.md); there is nothing more to check.
      const std::size_t n = open_checkpoint(path)->tensors().size();
      if (!quiet) fmt::print("ok  {} (GGUF, {} tensor{}; structure only: GGUF has no checksums)\n", path, n, n == 1 ? "" : "s");
      return 0;
    }
    const std::unique_ptr<ContainerReader> c = ContainerReader::open(path);
    int worst = 0;
    for (std::size_t i = 0; i < c->tensors().size(); ++i) {
      try {
        c->verify(i);
      } catch (const Error& e) {
        fmt::print(stderr, "wq-gpu: error: {}\n", e.what());
        worst = static_cast<int>(e.code());
      }
      c->release(i);
    }
    if (worst == 0 && !quiet) {
      const std::size_t n = c->tensors().size();
      fmt::print("ok  {} ({} tensor{})\n", path, n, n == 1 ? "" : "s");
    }
    return worst;
  } catch (const Error& e) {
    fmt::print(stderr, "wq-gpu: error: {}\n", e.what());
    return static_cast<int>(e.code());
  }
}

int run_verify(const VerifyFlags& f) {
  std::size_t checked = 0, bad = 0;
  int status = 0;
  const auto check = [&](const std::string& path) {
    const int s = verify_file(path, f.quiet);
    ++checked;
    if (s != 0) {
      ++bad;
      status = status == 0 ? s : status;
    }
  };
  for (const std::string& input : f.inputs) {
    std::error_code ec;
    if (fs::is_directory(input, ec)) {
      // Every regular file that is a container by content; links are not followed.
      for (auto it = fs::recursive_directory_iterator(input, fs::directory_options::skip_permission_denied, ec);
           it != fs::recursive_directory_iterator(); it.increment(ec)) {
        if (ec) break;
        if (it->is_regular_file(ec) && !it->is_symlink(ec) &&
            (is_wq_container(it->path().string()) || detail::starts_with_gguf_magic(it->path().string()))) {
          check(it->path().string());
        }
      }
    } else if (fs::exists(input, ec)) {
      check(input);
    } else {
      fmt::print(stderr, "wq-gpu: error: {}: no such file or folder\n", input);
      status = status == 0 ? static_cast<int>(ErrorCode::kInputMissing) : status;
    }
  }
  if (!f.quiet) fmt::print("{} container{} checked, {} bad\n", checked, checked == 1 ? "" : "s", bad);
  return status;
}

}  // namespace

CommandRunner add_verify_command(CLI::App& app) {
  auto flags = std::make_shared<VerifyFlags>();
  CLI::App* cmd = app.add_subcommand(
      "verify", "Check the structure and every checksum of WQ containers (and the structure of GGUF files)");
  cmd->footer(
      "\nA folder is searched recursively for containers (recognised by content; links are not\n"
      "followed). Each bad file and tensor is named; the exit status is non-zero when any is bad\n"
      "(7: a checksum mismatch, 4: a malformed container).\n");
  cmd->add_option("input", flags->inputs, "Containers, or folders holding them")->required();
  cmd->add_flag("-q,--quiet", flags->quiet, "Print only problems");
  return [flags] { return run_verify(*flags); };
}

}  // namespace wq::cli
