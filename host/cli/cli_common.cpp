#include "cli/cli_common.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <thread>

#include <fmt/core.h>

namespace wq::cli {
namespace {

std::atomic<bool> g_cancel{false};
bool g_progress_drawn = false;

extern "C" void on_signal(int signal) {
  g_cancel.store(true);
  // A second Ctrl-C kills at once (the temporary output is then left behind, hidden).
  std::signal(signal, SIG_DFL);
}

}  // namespace

void add_backend_flags(CLI::App& command, BackendFlags& flags) {
  command.add_option("--backend", flags.backend,
                     "auto: CUDA when a device is present, else CPU (with a notice); cpu; cuda "
                     "(an error when no device is usable)")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))
      ->capture_default_str();
  command.add_option("--threads", flags.threads, "CPU worker threads; 0 = every core")
      ->capture_default_str();
  command.add_option("--device", flags.device, "CUDA device ordinal")->capture_default_str();
  command.add_option("--gpu-memory", flags.gpu_memory,
                     "device memory (and as much pinned host memory) the CUDA backend may use, "
                     "e.g. 512M or 2G; 0 = a quarter of the free device memory, at most 1.5G. "
                     "Larger tensors stream through in pieces")
      ->transform(CLI::AsSizeValue(false))
      ->capture_default_str();
}

void add_read_flags(CLI::App& command, std::uint64_t& max_view_expansion) {
  command.add_option("--max-view-expansion", max_view_expansion,
                     "largest dense copy of a PyTorch broadcast view (stride 0 or overlapping strides, "
                     "as expand() makes), which is larger than the storage it reads, e.g. 2G; every "
                     "other tensor is at most as large as the file")
      ->transform(CLI::AsSizeValue(false))
      ->default_str("256M");
}

BackendOptions backend_options(const BackendFlags& flags) {
  BackendOptions options;
  options.kind = flags.backend == "cpu" ? BackendKind::kCpu
               : flags.backend == "cuda" ? BackendKind::kCuda : BackendKind::kAuto;
  options.threads = flags.threads;
  options.device = flags.device;
  options.gpu_memory = flags.gpu_memory;
  return options;
}

BackendSelection select_backend(const BackendFlags& flags, bool quiet) {
  BackendSelection selection = make_backend(backend_options(flags));
  if (!selection.notice.empty() && !quiet) fmt::print(stderr, "wq-gpu: {}\n", selection.notice);
  return selection;
}

const std::atomic<bool>* cancel_flag() { return &g_cancel; }

void install_signal_handlers() {
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
}

std::function<void(const Progress&)> progress_printer(const std::string& label, bool quiet) {
  if (quiet || !isatty(STDERR_FILENO)) return {};
  const auto started = std::chrono::steady_clock::now();
  return [label, started](const Progress& p) {
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    const double fraction = p.bytes_total ? static_cast<double>(p.bytes_done) / static_cast<double>(p.bytes_total) : 1.0;
    const double rate = seconds > 0 ? static_cast<double>(p.bytes_done) / seconds / 1e9 : 0.0;
    std::string tensor = p.current_tensor.size() > 40 ? "..." + p.current_tensor.substr(p.current_tensor.size() - 37)
                                                       : p.current_tensor;
    draw_progress_line(fmt::format("{} {:5.1f}%  {:.2f} GB/s  {}", label, 100.0 * fraction, rate, tensor));
  };
}

void draw_progress_line(const std::string& text) {
  fmt::print(stderr, "\r\033[K{}", text);
  std::fflush(stderr);
  g_progress_drawn = true;
}

void finish_progress() {
  if (g_progress_drawn) fmt::print(stderr, "\r\033[K");
  g_progress_drawn = false;
}

std::string with_commas(std::uint64_t value) {
  std::string digits = std::to_string(value);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i != 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

}  // namespace wq::cli
