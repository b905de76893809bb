#include "cli/tree_progress.h"

#include <algorithm>

#include <fmt/core.h>

#include "cli/cli_common.h"

namespace wq::cli {

namespace {
// Redrawn at most this often while files are in progress (a line per tensor of every job
// would flood a slow terminal); a finished file always redraws.
constexpr auto kRedrawInterval = std::chrono::milliseconds(100);
}  // namespace

TreeProgress::TreeProgress(std::size_t units, std::size_t files, std::uint64_t bytes, bool draw)
    : draw_(draw), files_(files), bytes_total_(bytes), in_flight_(units, 0) {}

void TreeProgress::advance(std::size_t unit, std::uint64_t bytes_done) {
  if (!draw_) return;
  const std::lock_guard<std::mutex> lock(mutex_);
  in_flight_total_ = in_flight_total_ - in_flight_[unit] + bytes_done;
  in_flight_[unit] = bytes_done;
  draw(false);
}

void TreeProgress::finished(std::size_t unit, std::uint64_t bytes, bool worked, const std::string& output) {
  if (!draw_) return;
  const std::lock_guard<std::mutex> lock(mutex_);
  in_flight_total_ -= in_flight_[unit];
  in_flight_[unit] = 0;
  finished_bytes_ += bytes;
  if (!worked) skipped_bytes_ += bytes;
  ++finished_files_;
  last_output_ = output;
  draw(true);
}

void TreeProgress::draw(bool force) {
  const auto now = std::chrono::steady_clock::now();
  if (!force && now - drawn_ < kRedrawInterval) return;
  drawn_ = now;
  const std::uint64_t done = std::min(bytes_total_, finished_bytes_ + in_flight_total_);
  const double fraction = bytes_total_ != 0 ? static_cast<double>(done) / static_cast<double>(bytes_total_) : 1.0;
  const double seconds = std::chrono::duration<double>(now - started_).count();
  const double worked = static_cast<double>(done - std::min(done, skipped_bytes_));
  const double rate = seconds > 0 ? worked / seconds / 1e9 : 0.0;
  std::string last = last_output_.size() > 40 ? "..." + last_output_.substr(last_output_.size() - 37) : last_output_;
  draw_progress_line(fmt::format("[{}/{}] {:5.1f}%  {:.2f} GB/s  {}", finished_files_, files_, 100.0 * fraction, rate,
                                 last));
}

}  // namespace wq::cli
