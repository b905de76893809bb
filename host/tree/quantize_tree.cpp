// wq::quantize_tree() and wq::plan_tree() (see wq/tree.h): the walk (tree_walk.h), the journal
// (journal.h), the share of one process (work_shard.h), and the jobs that work on several files
// at once.
#include "wq/tree.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <set>
#include <thread>

#include "container/checksum.h"
#include "core/json_text.h"
#include "cpu/thread_pool.h"
#include "formats/sharded_safetensors.h"
#include "io/atomic_file.h"
#include "pipeline/input_checksum.h"
#include "pipeline/output_path.h"
#include "pipeline/sharded_output.h"
#include "tree/atomic_copy.h"
#include "tree/journal.h"
#include "tree/tree_row.h"
#include "tree/tree_settings.h"
#include "tree/tree_walk.h"
#include "tree/work_shard.h"
#include "wq/error.h"

namespace wq::detail {
namespace {

namespace fs = std::filesystem;

// Crash injection for the tests of resume: WQ_TEST_CRASH=POINT:N kills this process with
// SIGKILL at the N-th passage through POINT ("temp": a container's temporary file is partly
// written; "output": an output was renamed into place but not yet journaled; "journal": just
// after a journal line); WQ_TEST_CRASH=POINT:N:int sends SIGINT instead (Ctrl-C). Unset, it
// costs one getenv.
void crash_point(const char* point) {
  static const std::string spec = std::getenv("WQ_TEST_CRASH") ? std::getenv("WQ_TEST_CRASH") : "";
  static std::atomic<int> passes{0};
  if (spec.empty()) return;
  const auto colon = spec.find(':');
  if (spec.substr(0, colon) != point) return;
  const int n = colon == std::string::npos ? 1 : std::atoi(spec.c_str() + colon + 1);
  if (++passes == n) ::kill(::getpid(), spec.ends_with(":int") ? SIGINT : SIGKILL);
}

std::string parent_folder(const std::string& path) {
  const fs::path parent = fs::path(path).parent_path();
  return parent.empty() ? std::string(".") : parent.string();
}

void make_folder(const std::string& folder) {
  std::error_code ec;
  fs::create_directories(folder, ec);
  if (ec || !fs::is_directory(folder)) {
    throw Error(ErrorCode::kOutput, folder + ": cannot create the output folder: " + (ec ? ec.message() : "not a folder"));
  }
}

FileIdentity input_identity(const std::string& path, const std::atomic<bool>* cancel) {
  std::optional<FileIdentity> id = stat_identity(path);
  if (!id) throw Error(ErrorCode::kInputMissing, path + ": no such file");
  id->xxh3 = detail::checksum_file(path, cancel);
  return *id;
}

FileIdentity output_identity(const std::string& path) {
  const std::optional<FileIdentity> id = stat_identity(path);
  if (!id) throw Error(ErrorCode::kOutput, path + ": vanished right after it was written");
  return *id;
}

// Temporaries of an interrupted run (.NAME.wq-tmp.XXXXXX, see detail::AtomicFile) are removed,
// but only those of this process's outputs: another --shard may be writing beside us.
void remove_stale_temps(const std::vector<WorkUnit>& units) {
  std::map<std::string, std::set<std::string>> prefixes;  // folder -> ".NAME.wq-tmp."
  const auto note = [&](const TreeFile& f) {
    prefixes[parent_folder(f.output)].insert("." + fs::path(f.output).filename().string() + ".wq-tmp.");
  };
  for (const WorkUnit& u : units) {
    note(u.file);
    for (const TreeFile& s : u.shards) note(s);
  }
  for (const auto& [folder, names] : prefixes) {
    std::error_code ec;
    for (fs::directory_iterator it(folder, ec), end; !ec && it != end; it.increment(ec)) {
      const std::string name = it->path().filename().string();
      for (const std::string& prefix : names) {
        if (name.rfind(prefix, 0) == 0 && name.size() == prefix.size() + 6) fs::remove(it->path(), ec);
      }
    }
  }
}

std::string journal_name(const std::optional<TreeShard>& shard) {
  if (!shard) return ".wq-journal.jsonl";
  return ".wq-journal.shard-" + std::to_string(shard->index) + "-of-" + std::to_string(shard->count) + ".jsonl";
}

// The parts of a unit's output (the shards of a checkpoint that becomes one GGUF file): their
// identities before they are read, and their XXH3s from a thread of its own while
// quantize_file() reads them, a second read of pages that are mostly still cached, as
// InputChecksum does for a large file. Leaving early (an error, Ctrl-C) stops the hashing.
class PartHashes {
 public:
  explicit PartHashes(const std::vector<std::string>& paths) {
    for (const std::string& path : paths) {
      const std::optional<FileIdentity> id = stat_identity(path);
      if (!id) throw Error(ErrorCode::kInputMissing, path + ": no such file");
      parts_.push_back(PartIdentity{fs::path(path).filename().string(), *id});
    }
    if (paths.empty()) return;
    hashes_ = std::async(std::launch::async, [this, paths] {
      std::vector<std::string> hashes;
      for (const std::string& path : paths) hashes.push_back(detail::checksum_file(path, &stop_));
      return hashes;
    });
  }
  ~PartHashes() {
    stop_ = true;
    if (hashes_.valid()) hashes_.wait();
  }
  PartHashes(const PartHashes&) = delete;
  PartHashes& operator=(const PartHashes&) = delete;

  /// The parts with their hashes: waits for them, or stops them when `cancel` is set (then
  /// throws Error(kInterrupted)).
  std::vector<PartIdentity> finish(const std::atomic<bool>* cancel) {
    if (hashes_.valid()) {
      while (hashes_.wait_for(std::chrono::milliseconds(50)) != std::future_status::ready) {
        if (cancel != nullptr && cancel->load()) stop_ = true;
      }
      const std::vector<std::string> hashes = hashes_.get();
      for (std::size_t i = 0; i < parts_.size(); ++i) parts_[i].id.xxh3 = hashes[i];
    }
    return std::move(parts_);
  }

 private:
  std::vector<PartIdentity> parts_;
  std::atomic<bool> stop_{false};
  std::future<std::vector<std::string>> hashes_;
};

// The report row of file `f`, before its sizes and time are known.
TreeFileReport new_row(const TreeFile& f, const char* action, const char* kind) {
  TreeFileReport row;
  row.input = f.rel_input;
  row.output = f.rel_output;
  row.action = action;
  row.kind = kind;
  return row;
}

std::size_t output_count(const std::vector<WorkUnit>& units) {
  std::size_t n = 0;
  for (const WorkUnit& u : units) n += 1 + u.shards.size();
  return n;
}

// One run over this process's units: skips what the journal says is done, writes the rest,
// journals each output after it is in place. With several jobs, one thread per job calls
// unit() at once, each with its own backend (a Backend is used from one thread at a time); the
// journal and the rows are shared under one mutex, the caller's callbacks under another.
class TreeRun {
 public:
  TreeRun(const TreeOptions& options, unsigned jobs, std::string settings, Journal& journal, std::size_t units)
      : options_(options), quantize_(options.quantize), jobs_(jobs), settings_(std::move(settings)),
        journal_(journal), rows_(units) {}

  /// `pending`: the worker's commit still running on a thread of its own (see quantize()).
  void unit(std::size_t index, const WorkUnit& u, Backend& backend, std::future<void>* pending) {
    detail::check_cancel(quantize_.cancel);
    const Job job{index, &backend, deferred_commit(u) ? pending : nullptr};
    switch (u.kind) {
      case UnitKind::kQuantize: quantize(job, u.file, settings_, u.parts); break;
      case UnitKind::kCopy: copy(job, u.file); break;
      case UnitKind::kSharded: sharded(job, u); break;
      case UnitKind::kConfig: config(job, u.file); break;
    }
  }

  /// Every finished file's row, units in `order` (whatever order the jobs finished in).
  std::vector<TreeFileReport> rows(const std::vector<std::size_t>& order) const {
    std::vector<TreeFileReport> all;
    for (const std::size_t unit : order) all.insert(all.end(), rows_[unit].begin(), rows_[unit].end());
    return all;
  }

 private:
  struct Job {
    std::size_t unit;
    Backend* backend;
    std::future<void>* pending_commit;  ///< null: the output is committed before unit() returns
  };

  // Whether a container's fsync and rename run on a thread of their own while the worker goes
  // on to its next file. A flush of a large file took ~0.5 s on a cloud VM, with the worker's
  // core idle: for a 7.8 GB sharded folder on 2 cores, 0.5 s of 5.5. Small files flush fast,
  // and with one job a file's progress would race its predecessor's.
  bool deferred_commit(const WorkUnit& u) const {
    return jobs_ > 1 && u.kind == UnitKind::kQuantize && u.bytes >= (64ull << 20);
  }

  const JournalEntry* done(const TreeFile& f, const std::string& settings, const std::vector<std::string>& parts = {}) {
    if (options_.force) return nullptr;
    const std::lock_guard<std::mutex> lock(mutex_);
    return journal_.done(f.rel_output, f.input, settings, f.output, quantize_.cancel, parts);
  }

  void finished(const Job& job, TreeFileReport row) {
    const std::lock_guard<std::mutex> lock(mutex_);
    ++finished_;
    if (options_.on_file_finished) {
      const std::lock_guard<std::mutex> events(events_);
      options_.on_file_finished(job.unit, row, finished_);
    }
    rows_[job.unit].push_back(std::move(row));
  }

  std::function<void(const Progress&)> progress_for(const Job& job, const TreeFile& f) {
    return [this, unit = job.unit, &f](const Progress& p) {
      crash_point("temp");
      if (!options_.on_file_progress) return;
      const std::lock_guard<std::mutex> events(events_);
      options_.on_file_progress(unit, f.rel_input, p);
    };
  }

  void journal(const TreeFile& f, const char* kind, const FileIdentity& input, const std::string& settings,
               const TreeFileReport& row, std::vector<PartIdentity> parts = {}) {
    crash_point("output");
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      journal_.append(JournalEntry{f.rel_output, kind, output_identity(f.output), f.rel_input, input, settings,
                                   std::move(parts), row_summary(row)});
    }
    crash_point("journal");
  }

  // Returns true when the container was (re)written; remembers that for the index of its
  // shard, which is written after every shard (sharded()).
  // `parts`: the shards of a checkpoint that becomes one GGUF file, journaled beside its index.
  bool quantize(const Job& job, const TreeFile& f, const std::string& settings,
                const std::vector<std::string>& parts = {}) {
    if (const JournalEntry* e = done(f, settings, parts)) {
      finished(job, row_from_summary(e->summary, f.rel_input, f.rel_output, e->kind));
      return false;
    }
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      rewritten_.insert(f.rel_output);
    }
    make_folder(parent_folder(f.output));
    std::optional<FileIdentity> input = stat_identity(f.input);
    if (!input) throw Error(ErrorCode::kInputMissing, f.input + ": no such file");
    PartHashes part_hashes(parts);
    QuantizeOptions options = quantize_;
    options.on_progress = progress_for(job, f);
    options.checksum_input = true;  // the journal's checksum, as the file is read: one pass
    options.defer_commit = nullptr;
    options.durable = true;  // the journal records outputs that are on disk
    std::function<void()> commit;
    if (job.pending_commit) options.defer_commit = [&commit](std::function<void()> c) { commit = std::move(c); };
    const QuantizeReport report = quantize_file(f.input, f.output, *job.backend, options);
    input->xxh3 = report.input_xxh3;
    // Journaled only once the output is in place, as without deferral.
    auto in_place = [this, job, &f, settings, input = *input, row = row_of(report, f.rel_input, f.rel_output),
                     commit = std::move(commit), part_ids = part_hashes.finish(quantize_.cancel)]() mutable {
      if (commit) commit();
      journal(f, "container", input, settings, row, std::move(part_ids));
      finished(job, row);
    };
    if (!job.pending_commit) {
      in_place();
      return true;
    }
    // One commit in flight per worker: memory and open files stay bounded, and its error
    // surfaces here at the latest.
    if (job.pending_commit->valid()) job.pending_commit->get();
    *job.pending_commit = std::async(std::launch::async, std::move(in_place));
    return true;
  }
  void copy(const Job& job, const TreeFile& f) {
    if (const JournalEntry* e = done(f, "copy")) {
      finished(job, row_from_summary(e->summary, f.rel_input, f.rel_output, e->kind));
      return;
    }
    make_folder(parent_folder(f.output));
    const auto started = std::chrono::steady_clock::now();
    std::optional<FileIdentity> input = stat_identity(f.input);
    if (!input) throw Error(ErrorCode::kInputMissing, f.input + ": no such file");
    input->xxh3 = copy_file_atomically(f.input, f.output, quantize_.cancel);
    TreeFileReport row = new_row(f, "copied", "copy");
    row.original_bytes = row.output_bytes = input->size;
    row.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    journal(f, "copy", *input, "copy", row);
    finished(job, row);
  }

  // compressed-tensors output: the model's config.json with the scheme's quantization_config.
  void config(const Job& job, const TreeFile& f) {
    if (const JournalEntry* e = done(f, settings_)) {
      finished(job, row_from_summary(e->summary, f.rel_input, f.rel_output, e->kind));
      return;
    }
    make_folder(parent_folder(f.output));
    const auto started = std::chrono::steady_clock::now();
    const FileIdentity input = input_identity(f.input, quantize_.cancel);
    write_quantized_model_config(f.input, f.output, quantize_.pack_quantized);
    TreeFileReport row = new_row(f, "configured", "config");
    row.original_bytes = input.size;
    row.output_bytes = output_identity(f.output).size;
    row.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    journal(f, "config", input, settings_, row);
    finished(job, row);
  }

  // The index of a sharded checkpoint, once every shard is in place: its shards ran as units
  // of their own (split_shards()), each journaled on its own (a long sharded model resumes
  // mid-way, and shards are quantized in parallel); the index is rewritten when one of them was.
  void sharded(const Job& job, const WorkUnit& u) {
    bool rewritten = false;
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      for (const TreeFile& s : u.shards) rewritten = rewritten || rewritten_.count(s.rel_output) != 0;
    }
    const TreeFile& f = u.file;
    if (!rewritten) {
      if (const JournalEntry* e = done(f, settings_)) {
        finished(job, row_from_summary(e->summary, f.rel_input, f.rel_output, e->kind));
        return;
      }
    }
    const auto started = std::chrono::steady_clock::now();
    const FileIdentity input = input_identity(f.input, quantize_.cancel);
    const detail::ShardIndex index = detail::read_shard_index(f.input);
    std::uint64_t containers = 0;
    for (const TreeFile& s : u.shards) containers += output_identity(s.output).size;
    TreeFileReport row = new_row(f, "indexed", "index");
    row.original_bytes = input.size;
    if (quantize_.output_format == OutputFormat::kCompressedTensors) {
      std::vector<std::pair<std::string, std::string>> shards;
      for (const TreeFile& s : u.shards) shards.emplace_back(fs::path(s.output).filename().string(), s.output);
      row.output_bytes = detail::write_tensor_index(shards, f.output);
    } else {
      row.output_bytes = detail::write_container_index(index, containers, f.output);
    }
    row.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    journal(f, "index", input, settings_, row);
    finished(job, row);
  }

  const TreeOptions& options_;
  const QuantizeOptions& quantize_;
  unsigned jobs_;
  std::string settings_;
  Journal& journal_;
  std::mutex mutex_;   ///< the journal, the rows, the counts
  std::mutex events_;  ///< the caller's callbacks: one call at a time
  std::vector<std::vector<TreeFileReport>> rows_;  ///< per unit
  std::size_t finished_ = 0;
  std::set<std::string> rewritten_;  ///< rel_output of every container written in this run
};

// The units one process runs: a sharded checkpoint's shards become units of their own, so that
// several jobs quantize them at once, and its index (the kSharded unit, which then only writes
// the index) runs after every other unit.
struct SplitUnits {
  std::size_t first_phase = 0;       ///< units [0, first_phase) run first, the indexes after
  std::vector<std::size_t> report;   ///< the units in the plan's order: shards, then their index
};

SplitUnits split_shards(std::vector<WorkUnit>* units) {
  std::vector<WorkUnit> first, last;
  std::vector<std::pair<bool, std::size_t>> order;  // (in `last`, position)
  for (WorkUnit& u : *units) {
    if (u.kind != UnitKind::kSharded) {
      order.emplace_back(false, first.size());
      first.push_back(std::move(u));
      continue;
    }
    for (const TreeFile& shard : u.shards) {
      WorkUnit s;
      s.kind = UnitKind::kQuantize;
      s.file = shard;
      std::error_code ec;
      const std::uintmax_t bytes = fs::file_size(shard.input, ec);
      s.bytes = ec ? 0 : static_cast<std::uint64_t>(bytes);
      order.emplace_back(false, first.size());
      first.push_back(std::move(s));
    }
    order.emplace_back(true, last.size());
    last.push_back(std::move(u));
  }
  SplitUnits split;
  split.first_phase = first.size();
  for (const auto& [in_last, at] : order) split.report.push_back(in_last ? split.first_phase + at : at);
  for (WorkUnit& u : last) first.push_back(std::move(u));
  *units = std::move(first);
  return split;
}

// Runs every unit on one thread per backend (the calling thread when one); the first error
// stops the others from starting new units and is rethrown. With several, the largest units
// start first, so that a large file does not start last and run alone at the end (the rows
// keep the units' order).
void run_units(TreeRun& run, const std::vector<WorkUnit>& units, std::size_t begin, std::size_t end,
               std::vector<BackendSelection>& backends) {
  std::vector<std::size_t> order(end - begin);
  std::iota(order.begin(), order.end(), begin);
  if (backends.size() > 1) {
    std::stable_sort(order.begin(), order.end(),
                     [&](std::size_t a, std::size_t b) { return units[a].bytes > units[b].bytes; });
  }
  std::atomic<std::size_t> next{0};
  std::atomic<bool> failed{false};
  std::exception_ptr first_error;
  std::mutex error_mutex;
  const auto worker = [&](Backend& backend) {
    std::future<void> pending;  // this worker's last output, still being committed
    const auto fail = [&] {
      const std::lock_guard<std::mutex> lock(error_mutex);
      if (!first_error) first_error = std::current_exception();
      failed.store(true);
    };
    try {
      for (;;) {
        const std::size_t k = next.fetch_add(1);
        if (failed.load() || k >= order.size()) break;
        const std::size_t i = order[k];
        run.unit(i, units[i], backend, &pending);
      }
    } catch (...) {
      fail();
    }
    try {
      if (pending.valid()) pending.get();  // in place and journaled before the phase ends
    } catch (...) {
      fail();
    }
  };
  if (backends.size() == 1) {
    worker(*backends[0].backend);
  } else {
    std::vector<std::thread> threads;
    for (BackendSelection& b : backends) threads.emplace_back(worker, std::ref(*b.backend));
    for (std::thread& t : threads) t.join();
  }
  if (first_error) std::rethrow_exception(first_error);
}

// How many files a run works on at once. TreeOptions::jobs 0 (the default) picks: a small
// file's opening, planning and writing are serial, so one file at a time leaves cores idle; on
// 2 cores 2 jobs of one thread did 1000 files of 1 MiB 1.5-1.6x faster than one job of two
// threads, and 256 MiB files as fast (bench/RESULTS.md). More jobs hold more batches in memory,
// and on a GPU 8 workers did no better than 4: at most 4, and at most one per core and per
// unit. Devices ask for at least one job each.
unsigned tree_jobs(const TreeOptions& o, std::size_t units) {
  unsigned jobs = o.jobs;
  if (jobs == 0) {
    const unsigned cores = o.backend.threads != 0 ? o.backend.threads : std::max(1u, std::thread::hardware_concurrency());
    jobs = static_cast<unsigned>(std::max<std::size_t>(1, std::min<std::size_t>({units, cores, 4})));
  }
  return std::max(jobs, static_cast<unsigned>(o.devices.size()));
}

// One backend per job; CPU threads are shared out among the jobs, jobs among the devices, and
// each device's default memory budget among the jobs on it.
std::vector<BackendSelection> make_backends(const TreeOptions& o, unsigned jobs) {
  std::vector<BackendSelection> backends;
  BackendOptions per_job = o.backend;
  if (jobs > 1) {
    const unsigned cores = o.backend.threads != 0 ? o.backend.threads : std::max(1u, std::thread::hardware_concurrency());
    per_job.threads = std::max(1u, cores / jobs);
  }
  const auto devices = static_cast<unsigned>(std::max<std::size_t>(1, o.devices.size()));
  const unsigned jobs_per_device = (jobs + devices - 1) / devices;
  if (per_job.gpu_memory == 0 && jobs_per_device > 1) {
    per_job.gpu_memory = std::max<std::uint64_t>(128ull << 20, (1536ull << 20) / jobs_per_device);
  }
  for (unsigned j = 0; j < jobs; ++j) {
    if (!o.devices.empty()) per_job.device = o.devices[j % o.devices.size()];
    backends.push_back(make_backend(per_job));
  }
  return backends;
}

void note(const TreeOptions& options, const std::string& text) {
  if (options.on_note) options.on_note(text);
}

// Every checkpoint is opened once before anything is written: a file that cannot be read
// fails the run up front, not after hours of work. With copy_unreadable, a single file that
// looks like a checkpoint but is not one we can read (a pickled object other than a state
// dict, say) is copied unchanged instead, with a note; shards of an index still must be read.
// With `plans`, each unit's plan is kept there (a dry run shows them).
void check_checkpoints_readable(std::vector<WorkUnit>& units, const TreeOptions& options,
                                const std::string& output_root, std::vector<QuantizeReport>* plans) {
  // Opened on several threads (a tree of thousands of small files spends long on this);
  // judged in the units' order, so the first unreadable file is the one reported.
  std::vector<std::exception_ptr> failures(units.size());
  if (plans != nullptr) plans->assign(units.size(), QuantizeReport{});
  ThreadPool pool(metadata_threads(units.size()));
  pool.parallel_for(units.size(), [&](std::size_t i) {
    if (units[i].kind == UnitKind::kCopy || units[i].kind == UnitKind::kConfig) return;
    try {
      QuantizeReport plan = plan_quantize(units[i].file.input, options.quantize);
      if (plans != nullptr) (*plans)[i] = std::move(plan);
    } catch (...) {
      failures[i] = std::current_exception();
    }
  });
  for (std::size_t i = 0; i < units.size(); ++i) {
    WorkUnit& u = units[i];
    if (!failures[i]) continue;
    try {
      std::rethrow_exception(failures[i]);
    } catch (const Error& e) {
      const bool copyable = e.code() == ErrorCode::kBadFormat || e.code() == ErrorCode::kUnsupported;
      if (!copyable || u.kind != UnitKind::kQuantize) throw;
      if (!options.copy_unreadable) {
        std::vector<ErrorHint> hints = e.hints();
        hints.push_back(ErrorHint{"copy_unreadable", ""});
        throw Error(e.code(), e.what(), std::move(hints));
      }
      note(options, u.file.rel_input + ": not readable as a checkpoint, copied unchanged: " + e.what());
      u.kind = UnitKind::kCopy;
      u.file.rel_output = u.file.rel_input;
      u.file.output = output_root + "/" + u.file.rel_input;
    }
  }
}

// What plan_tree() and quantize_tree() share: the walk, this process's share of it, the
// settings' fingerprint and the journal, every checkpoint opened once.
struct Prepared {
  TreePlan plan;
  std::vector<WorkUnit> units;  ///< this process's
  std::string settings_text;    ///< the settings as JSON (settings_json())
  std::string settings;         ///< their fingerprint (XXH3 of settings_text)
  std::unique_ptr<Journal> journal;
  std::vector<QuantizeReport> plans;  ///< per unit of `units`, when asked for (plan_tree())
};

Prepared prepare(const std::vector<std::string>& inputs, const std::string& output, const TreeOptions& options,
                 bool keep_plans) {
  std::error_code ec;
  if (fs::exists(output, ec) && !fs::is_directory(output, ec)) {
    throw Error(ErrorCode::kOutput, output + ": is a file; the output of a folder (or of several inputs) is a folder");
  }
  Prepared p;
  p.plan = walk_tree(inputs, output, options.quantize.output_format);
  for (const std::string& text : p.plan.notes) note(options, text);
  if (p.plan.units.empty()) note(options, "no files under the inputs: nothing to do");
  if (options.shard) {
    check_shard(*options.shard);
    const std::vector<std::size_t> owner = assign_shards(p.plan.units, options.shard->count);
    for (std::size_t i = 0; i < p.plan.units.size(); ++i) {
      if (owner[i] == options.shard->index) p.units.push_back(p.plan.units[i]);
    }
  } else {
    p.units = p.plan.units;
  }
  Xxh3 fingerprint;
  p.settings_text = json_text(settings_json(options.quantize));
  fingerprint.update(p.settings_text.data(), p.settings_text.size());
  p.settings = fingerprint.hex();
  p.journal = std::make_unique<Journal>(output, journal_name(options.shard));
  check_checkpoints_readable(p.units, options, p.plan.output_root, keep_plans ? &p.plans : nullptr);
  return p;
}

}  // namespace
}  // namespace wq::detail

namespace wq {

TreeReport quantize_tree(const std::vector<std::string>& inputs, const std::string& output, const TreeOptions& options) {
  using namespace detail;
  Prepared p = prepare(inputs, output, options, /*keep_plans=*/false);
  make_folder(output);
  remove_stale_temps(p.units);
  TreeStart start;
  start.files = output_count(p.units);
  start.files_in_tree = output_count(p.plan.units);
  for (const WorkUnit& u : p.units) start.bytes += u.bytes;
  start.journal = p.journal->path();
  start.shard = options.shard;
  const SplitUnits split = split_shards(&p.units);
  start.jobs = tree_jobs(options, split.first_phase);
  std::vector<BackendSelection> backends = make_backends(options, start.jobs);
  start.backend_notice = backends.front().notice;
  if (options.on_start) options.on_start(start);
  TreeRun run(options, start.jobs, p.settings, *p.journal, p.units.size());
  run_units(run, p.units, 0, split.first_phase, backends);
  run_units(run, p.units, split.first_phase, p.units.size(), backends);  // the shard indexes
  TreeReport report;
  report.files = run.rows(split.report);
  report.settings_json = std::move(p.settings_text);
  report.journal = p.journal->path();
  return report;
}

std::vector<TreePlanEntry> plan_tree(const std::vector<std::string>& inputs, const std::string& output,
                                     const TreeOptions& options) {
  using namespace detail;
  Prepared p = prepare(inputs, output, options, /*keep_plans=*/true);
  std::vector<TreePlanEntry> entries;
  const auto up_to_date = [&](const TreeFile& f, const std::string& settings,
                              const std::vector<std::string>& parts = {}) {
    return !options.force &&
           p.journal->done(f.rel_output, f.input, settings, f.output, options.quantize.cancel, parts) != nullptr;
  };
  const auto entry = [&](const char* action, const TreeFile& f) {
    TreePlanEntry e;
    e.action = action;
    e.input = f.rel_input;
    e.output = f.rel_output;
    return e;
  };
  // `plan`: the readability check's, where it planned this very file (not a shard's).
  const auto quantize = [&](const TreeFile& f, const std::string& settings, QuantizeReport* plan,
                            const std::vector<std::string>& parts = {}) {
    if (up_to_date(f, settings, parts)) {
      entries.push_back(entry("up to date", f));
      return;
    }
    TreePlanEntry e = entry("quantize", f);
    e.plan = plan != nullptr ? std::move(*plan) : plan_quantize(f.input, options.quantize);
    entries.push_back(std::move(e));
  };
  for (std::size_t i = 0; i < p.units.size(); ++i) {
    const WorkUnit& u = p.units[i];
    switch (u.kind) {
      case UnitKind::kQuantize: quantize(u.file, p.settings, &p.plans[i], u.parts); break;
      case UnitKind::kSharded:
        for (const TreeFile& s : u.shards) quantize(s, p.settings, nullptr);
        entries.push_back(entry("index", u.file));
        break;
      case UnitKind::kConfig: entries.push_back(entry(up_to_date(u.file, p.settings) ? "up to date" : "configure", u.file)); break;
      case UnitKind::kCopy: {
        TreePlanEntry e = entry(up_to_date(u.file, "copy") ? "up to date" : "copy", u.file);
        e.bytes = u.bytes;
        entries.push_back(std::move(e));
        break;
      }
    }
  }
  return entries;
}

}  // namespace wq
