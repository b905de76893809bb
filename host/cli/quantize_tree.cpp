#include "cli/quantize_tree.h"

#include <unistd.h>

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>

#include <fmt/core.h>

#include "cli/error_text.h"
#include "cli/rules.h"
#include "cli/tree_dry_run.h"
#include "cli/tree_progress.h"
#include "cli/tree_report.h"
#include "wq/atomic_write.h"
#include "wq/error.h"
#include "wq/tree.h"

namespace wq::cli {
namespace {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

// What stderr shows while the tree runs: with one job, each file's own progress line on a
// terminal; with several, one line summing them all (TreeProgress); off a terminal, a line per
// finished file. The library calls these one at a time.
class TreeDisplay {
 public:
  TreeDisplay(bool quiet, bool json_on_stdout) : quiet_(quiet || json_on_stdout), flags_quiet_(quiet) {}

  void attach(TreeOptions& options) {
    options.on_note = [this](const std::string& note) {
      if (!quiet_) fmt::print(stderr, "wq-gpu: note: {}\n", note);
    };
    options.on_start = [this](const TreeStart& s) { start(s); };
    options.on_file_progress = [this](std::size_t file, const std::string& input, const Progress& p) {
      progress(file, input, p);
    };
    options.on_file_finished = [this](std::size_t file, const TreeFileReport& row, std::size_t finished) {
      done(file, row, finished);
    };
  }

  bool started() const { return started_; }
  std::size_t finished() const { return finished_; }
  std::size_t files() const { return start_.files; }
  const std::string& journal() const { return start_.journal; }

 private:
  void start(const TreeStart& s) {
    started_ = true;
    start_ = s;
    tty_ = !flags_quiet_ && isatty(STDERR_FILENO);
    lines_ = !flags_quiet_ && !tty_;
    summed_ = std::make_unique<TreeProgress>(s.files, s.files, s.bytes, tty_ && s.jobs > 1);
    if (!quiet_ && !s.backend_notice.empty()) fmt::print(stderr, "wq-gpu: {}\n", s.backend_notice);
    if (!quiet_ && s.shard) {
      fmt::print(stderr, "wq-gpu: shard {}/{} (from {}): {} of {} files\n", s.shard->index, s.shard->count,
                 s.shard->source, s.files, s.files_in_tree);
    }
  }

  void progress(std::size_t file, const std::string& input, const Progress& p) {
    if (start_.jobs > 1) {
      summed_->advance(file, p.bytes_done);
      return;
    }
    auto it = printers_.find(file);
    if (it == printers_.end()) {
      it = printers_.emplace(file, progress_printer(fmt::format("[{}/{}] {}", finished_ + 1, start_.files, input),
                                                    flags_quiet_)).first;
    }
    if (it->second) it->second(p);
  }

  void done(std::size_t file, const TreeFileReport& row, std::size_t finished) {
    finished_ = finished;
    if (start_.jobs <= 1) {
      finish_progress();
      printers_.erase(file);
    }
    if (lines_) {
      fmt::print(stderr, "[{}/{}] {:<10} {}\n", finished, start_.files, row.action, row.output);
      std::fflush(stderr);
    }
    summed_->finished(file, row.original_bytes, row.action != "up to date", row.output);
  }

  const bool quiet_;        ///< no notes (--quiet, or the JSON report on stdout)
  const bool flags_quiet_;  ///< --quiet: no progress either
  bool started_ = false;
  TreeStart start_;
  bool tty_ = false;    ///< stderr is a terminal (and not --quiet): updating lines
  bool lines_ = false;  ///< a line per file on stderr (not a terminal, not --quiet)
  std::unique_ptr<TreeProgress> summed_;
  std::map<std::size_t, std::function<void(const Progress&)>> printers_;  ///< one job: per file
  std::size_t finished_ = 0;
};

void write_json_report(const std::string& path, const ojson& report) {
  // Reports of many shards often go to a folder of their own.
  const fs::path parent = fs::path(path).parent_path();
  std::error_code ec;
  if (!parent.empty()) fs::create_directories(parent, ec);
  write_file_atomically(path, report.dump(2, ' ', false, ojson::error_handler_t::replace) + "\n");
}

}  // namespace

int run_quantize_tree(const QuantizeFlags& f, const QuantizeOptions& quantize) {
  TreeOptions options;
  options.quantize = quantize;
  options.backend = backend_options(f.backend);
  options.devices = f.devices;
  options.jobs = f.jobs;
  options.shard = select_tree_shard(f.shard, "--shard");
  options.force = f.force;
  options.copy_unreadable = f.copy_unreadable;
  TreeDisplay display(f.quiet, f.json == "-");
  display.attach(options);
  if (f.dry_run) {
    print_tree_plan(plan_tree(f.inputs, f.output, options), quantize, options.shard);
    return 0;
  }
  TreeReport report;
  try {
    report = quantize_tree(f.inputs, f.output, options);
  } catch (const Error& e) {
    finish_progress();
    if (!display.started()) throw;
    const std::string resume = fmt::format("{} of {} files are finished and recorded in {}; run the same command "
                                           "again to resume",
                                           display.finished(), display.files(), display.journal());
    if (e.code() == ErrorCode::kInterrupted) {
      fmt::print(stderr, "wq-gpu: interrupted: {}\n", resume);
      return static_cast<int>(ErrorCode::kInterrupted);
    }
    throw Error(e.code(), error_text(e) + "\n" + resume);  // the hints before the resume line
  }
  finish_progress();
  const ojson settings = ojson::parse(report.settings_json);
  const ojson json = tree_report_json(report.files, settings);
  if (f.json == "-") {
    fmt::print("{}\n", json.dump(2, ' ', false, ojson::error_handler_t::replace));
  } else if (!f.quiet) {
    // the method and layout every row used, unless a rule said otherwise
    fmt::print("  {}\n", quantize.output_format == OutputFormat::kCompressedTensors ? pack_quantized_summary(quantize)
                                                                                    : spec_summary(quantize.spec));
    fmt::print("{}", tree_table_text(report.files));
  }
  if (!f.json.empty() && f.json != "-") write_json_report(f.json, json);
  return 0;
}

}  // namespace wq::cli
