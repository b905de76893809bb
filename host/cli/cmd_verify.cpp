// wq-gpu verify FILE|DIR: structure and every checksum of WQ containers; the structure of GGUF
// files and of compressed-tensors checkpoints (which carry no checksums).
#include <filesystem>
#include <cstring>
#include <memory>
#include <vector>

#include <fmt/core.h>

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "cli/error_text.h"
#include "wq/checkpoint.h"
#include "wq/codec/half.h"
#include "wq/container.h"
#include "wq/error.h"

namespace wq::cli {
namespace {

namespace fs = std::filesystem;

struct VerifyFlags {
  std::vector<std::string> inputs;
  bool quiet = false;
};

// A compressed-tensors checkpoint (docs/compressed-tensors.md): the safetensors file's own
// checks, its modules' parts fit together, and every quantized weight decodes to finite
// values. Returns false when `path` is a safetensors file without such weights.
bool verify_packed(const std::string& path, bool quiet) {
  std::unique_ptr<CheckpointReader> reader = open_checkpoint(path);  // validates the modules' parts
  if (reader->format() != "compressed-tensors") return false;
  const std::vector<TensorInfo>& tensors = reader->tensors();
  std::size_t quantized = 0;
  for (std::size_t k = 0; k < tensors.size(); ++k) {
    if (reader->stored_quantized_as(k).empty()) continue;
    ++quantized;
    const TensorView view = reader->tensor(k);
    const std::uint64_t n = view.numel();
    for (std::uint64_t i = 0; i < n; ++i) {
      float v = 0.0f;
      if (view.dtype == DType::kF32) {
        std::memcpy(&v, view.data + 4 * i, 4);
      } else {
        std::uint16_t h = 0;
        std::memcpy(&h, view.data + 2 * i, 2);
        v = view.dtype == DType::kF16 ? codec::f16_bits_to_f32(h) : codec::bf16_bits_to_f32(h);
      }
      if (!codec::is_finite(v)) {
        throw Error(ErrorCode::kBadData, path + ": tensor '" + std::string(view.name) + "': element " +
                                             std::to_string(i) + " decodes to " + (v != v ? "NaN" : "an infinity"));
      }
    }
    reader->release(k);
  }
  if (!quiet) {
    fmt::print("ok  {} (compressed-tensors, {} tensor{}, {} quantized; structure and decoded values only: no "
               "checksums)\n",
               path, tensors.size(), tensors.size() == 1 ? "" : "s", quantized);
  }
  return true;
}

// Checks one container (or GGUF file, or compressed-tensors checkpoint); prints what is wrong
// and returns the worst error code (0 when good).
int verify_file(const std::string& path, bool quiet) {
  try {
    if (!is_wq_container(path) && !is_gguf_file(path) && verify_packed(path, quiet)) return 0;
    if (is_gguf_file(path)) {
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
        fmt::print(stderr, "wq-gpu: error: {}\n", error_text(e));
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
    fmt::print(stderr, "wq-gpu: error: {}\n", error_text(e));
    return static_cast<int>(e.code());
  }
}

// Whether a safetensors file holds compressed-tensors weights (its header parsed).
bool is_packed_file(const std::string& path) {
  try {
    return open_checkpoint(path)->format() == "compressed-tensors";
  } catch (const Error& e) {
    // A malformed compressed-tensors file is checked (and its problem reported), not skipped.
    return std::string_view(e.what()).find("compressed-tensors") != std::string_view::npos;
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
        const std::string path = it->path().string();
        if (!it->is_regular_file(ec) || it->is_symlink(ec)) continue;
        // compressed-tensors checkpoints: a model folder's safetensors files (a shard index
        // is checked through its shards).
        if (is_wq_container(path) || is_gguf_file(path) ||
            (path.ends_with(".safetensors") && is_packed_file(path))) {
          check(path);
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
      "verify", "Check the structure and every checksum of WQ containers (and the structure of GGUF files and "
                "compressed-tensors checkpoints)");
  cmd->footer(
      "\nA folder is searched recursively for containers, GGUF files and compressed-tensors safetensors\n"
      "files (recognised by content; links are not followed). Each bad file and tensor is named; the\n"
      "exit status is non-zero when any is bad (7: a checksum mismatch, 4: a malformed file, 5: a\n"
      "compressed-tensors weight that decodes to NaN or infinity). GGUF and compressed-tensors files\n"
      "carry no checksums: their structure is checked, and compressed-tensors weights are decoded.\n");
  cmd->add_option("input", flags->inputs, "Containers, or folders holding them")->required();
  cmd->add_flag("-q,--quiet", flags->quiet, "Print only problems");
  return [flags] { return run_verify(*flags); };
}

}  // namespace wq::cli
