// The progress line of a tree run whose jobs work on several files at once: per-file progress
// lines would overwrite one another, so one line sums them all.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace wq::cli {

/// Files finished out of the run's files, the bytes done out of all input bytes (finished
/// files and the parts of files in progress, so a run of a few large files moves too), the
/// rate of the work done (files the journal skips do not count), and the last file finished.
/// Thread-safe; draws on stderr only when `draw` (a terminal, not --quiet).
class TreeProgress {
 public:
  TreeProgress(std::size_t units, std::size_t files, std::uint64_t bytes, bool draw);

  /// Unit `unit`'s current file has `bytes_done` of its input done.
  void advance(std::size_t unit, std::uint64_t bytes_done);
  /// Unit `unit` finished a file of `bytes` input bytes, written (`worked`) or skipped as up
  /// to date.
  void finished(std::size_t unit, std::uint64_t bytes, bool worked, const std::string& output);

 private:
  void draw(bool force);  // with mutex_ held

  const bool draw_;
  const std::size_t files_;
  const std::uint64_t bytes_total_;
  const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point drawn_{};
  std::mutex mutex_;
  std::vector<std::uint64_t> in_flight_;  ///< per unit: its current file's bytes done
  std::uint64_t in_flight_total_ = 0;
  std::uint64_t finished_bytes_ = 0;  ///< finished files, written or skipped
  std::uint64_t skipped_bytes_ = 0;   ///< finished files the journal skipped
  std::size_t finished_files_ = 0;
  std::string last_output_;
};

}  // namespace wq::cli
