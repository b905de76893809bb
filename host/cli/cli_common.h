// Pieces shared by the wq-gpu commands: backend flags, cancellation, progress, exit status.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include <CLI/CLI.hpp>

#include "wq/backend.h"
#include "wq/pipeline.h"

namespace wq::cli {

struct BackendFlags {
  std::string backend = "auto";
  unsigned threads = 0;
  int device = 0;
  std::uint64_t gpu_memory = 0;
};

/// Adds --backend, --threads, --device and --gpu-memory to a subcommand.
void add_backend_flags(CLI::App& command, BackendFlags& flags);

/// Adds --max-view-expansion SIZE (ReadOptions::max_expanded_view_bytes) to a subcommand
/// that reads checkpoints.
void add_read_flags(CLI::App& command, std::uint64_t& max_view_expansion);

/// The BackendOptions the flags ask for.
BackendOptions backend_options(const BackendFlags& flags);

/// Creates the backend the flags ask for; prints make_backend()'s notice unless `quiet`.
BackendSelection select_backend(const BackendFlags& flags, bool quiet);

/// Set by SIGINT/SIGTERM; operations poll it and stop cleanly.
const std::atomic<bool>* cancel_flag();
void install_signal_handlers();

/// A progress callback: a self-updating line on a terminal, nothing otherwise.
std::function<void(const Progress&)> progress_printer(const std::string& label, bool quiet);

/// Draws `text` as the terminal's updating progress line (replacing the one before).
void draw_progress_line(const std::string& text);
/// Ends the progress line, if one was drawn.
void finish_progress();

/// "1,047,430"
std::string with_commas(std::uint64_t value);

}  // namespace wq::cli
