// Tree mode: folders of checkpoints in, a mirrored folder out (`wq-gpu quantize DIR -o OUT`,
// `wq.quantize_tree`).
//
// Every checkpoint under the inputs becomes an output of the chosen format beside where it
// was, a sharded checkpoint one per shard plus a new index (GGUF: one file of all its shards),
// a WQ container is copied as it is, and so is every other file, so that the output is a
// complete model folder. Each output is written to a temporary file, fsynced and renamed; a
// journal in the output folder (.wq-journal*.jsonl) records it after
// that, so a run that stopped (Ctrl-C, a crash, a preempted job) resumes where it was when run
// again with the same settings. N processes given TreeShard I of N (a Slurm array, a
// Kubernetes Indexed Job) split the work so that together they do each file once.
// README.md, "Tree mode" and "Sharding", describes the layout, the journal and the report.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "wq/export.h"
#include "wq/backend.h"
#include "wq/pipeline.h"

namespace wq {

/// The share of a tree's work one process does: shard `index` of `count`.
struct TreeShard {
  std::size_t index = 0;
  std::size_t count = 1;
  std::string source;  ///< where it was given, for messages ("--shard", "SLURM_ARRAY_TASK_ID", ...)
};

/// `spec` "I/N" (named `source` in errors); when empty, the environment: a Slurm array
/// (SLURM_ARRAY_TASK_ID minus SLURM_ARRAY_TASK_MIN, of SLURM_ARRAY_TASK_COUNT) or a Kubernetes
/// Indexed Job (JOB_COMPLETION_INDEX, of WQ_SHARD_COUNT); else nullopt (all the work). Throws
/// Error(kUsage) naming `source` or the variable when it is malformed or out of range.
WQ_API std::optional<TreeShard> select_tree_shard(const std::string& spec, const std::string& source);

/// The name an input file's output gets in tree mode: "model.pt" -> "model.wq.safetensors"
/// (kGguf: "model.gguf"); a shard index (`shard_index`) "model.safetensors.index.json" ->
/// "model.wq.safetensors.index.json", and each of its shards "x.safetensors" ->
/// "x.wq.safetensors", as quantize_file() names them. compressed-tensors output keeps names.
WQ_API std::string tree_output_name(const std::string& file_name, bool shard_index,
                                    OutputFormat format = OutputFormat::kContainer);

/// One output file of a tree run, as its report lists it.
struct TreeFileReport {
  std::string input;   ///< relative path in the mirrored tree ("sub/model.pt")
  std::string output;  ///< relative to the output folder ("sub/model.wq.safetensors")
  std::string action;  ///< "quantized", "copied", "indexed", "configured" or "up to date"
  std::string kind;    ///< "container" (any checkpoint output), "index", "copy" or "config"
  std::uint64_t original_bytes = 0;
  std::uint64_t output_bytes = 0;
  std::size_t encoded = 0;  ///< tensors with an error measurement
  double sqnr_min_db = 0, sqnr_median_db = 0;  ///< over those tensors; +inf when exact
  double seconds = 0;
};

/// What a run is about to do, given to TreeOptions::on_start once the plan is made and before
/// anything is written.
struct TreeStart {
  std::size_t files = 0;          ///< output files of this process (its shard)
  std::size_t files_in_tree = 0;  ///< output files of the whole tree, every shard
  std::uint64_t bytes = 0;        ///< input bytes of this process's files
  unsigned jobs = 1;              ///< files worked on at once
  std::string journal;            ///< the journal this process appends to
  std::optional<TreeShard> shard;
  std::string backend_notice;     ///< make_backend()'s notice for the first job (may be empty)
};

struct TreeOptions {
  /// The settings of every checkpoint. Its `cancel` is polled throughout; `on_progress` and
  /// `defer_commit` are the run's own (see on_file_progress).
  QuantizeOptions quantize;
  /// Each job's backend is made from this: CPU threads (0: every core) are shared out among
  /// the jobs, and so is a device's default memory budget.
  BackendOptions backend;
  std::vector<int> devices;  ///< CUDA devices to spread the jobs over (at least one job each)
  /// Files worked on at once; 0: decided by the run (one per core, at most 4 and at most the
  /// number of files). With several, large files commit (fsync, rename) on a thread of their
  /// own while their job goes on.
  unsigned jobs = 0;
  std::optional<TreeShard> shard;  ///< nullopt: all the work
  bool force = false;  ///< redo files the journal says are done
  /// A single file that looks like a checkpoint but cannot be read as one (a pickled object
  /// other than a state dict, say) is copied unchanged with a note, instead of failing the run
  /// (Error hint "copy_unreadable"). Shards of an index must always be readable.
  bool copy_unreadable = false;

  // What happens, for a caller that shows it. Each is called on the run's threads, one call at
  // a time, and must not throw.
  std::function<void(const std::string& note)> on_note;  ///< a file skipped or copied, and why
  std::function<void(const TreeStart&)> on_start;
  /// `worker` (0..jobs-1) has `progress` of the input `file` (relative path) done.
  std::function<void(std::size_t worker, const std::string& file, const Progress& progress)> on_file_progress;
  /// `worker` finished an output; `finished` of `start.files` are now done.
  std::function<void(std::size_t worker, const TreeFileReport& file, std::size_t finished)> on_file_finished;
};

struct TreeReport {
  std::vector<TreeFileReport> files;  ///< every output of this process, in the plan's order
  std::string settings_json;  ///< what decides the outputs' bytes (the journal's fingerprint), JSON
  std::string journal;        ///< the journal appended to
};

/// Quantizes `inputs` (folders, walked recursively, or single files) into the folder `output`.
/// One input folder is mirrored into `output` itself; with several inputs each goes to
/// output/NAME. Symbolic links are followed only to files inside the same input folder; .git
/// folders are skipped. Every checkpoint is opened before anything is written. Throws
/// wq::Error (the message names the file): kUsage when the output is inside an input (or the
/// reverse), or two inputs would give one output; kOutput when `output` is a file; what
/// quantize_file() throws; kInterrupted when `quantize.cancel` was set. Outputs in place when
/// it throws are journaled: the same call again resumes.
WQ_API TreeReport quantize_tree(const std::vector<std::string>& inputs, const std::string& output, const TreeOptions& options);

/// One output of a planned tree run (plan_tree()).
struct TreePlanEntry {
  std::string action;  ///< "quantize", "index", "configure", "copy" or "up to date"
  std::string input;   ///< relative path in the mirrored tree
  std::string output;  ///< relative to the output folder
  std::uint64_t bytes = 0;  ///< "copy": the file's size
  QuantizeReport plan;      ///< "quantize": plan_quantize()'s report (sizes, every tensor's encoding)
};

/// What quantize_tree() would do with the same arguments, for a dry run: writes nothing and
/// throws what quantize_tree() throws before it writes.
WQ_API std::vector<TreePlanEntry> plan_tree(const std::vector<std::string>& inputs, const std::string& output,
                                     const TreeOptions& options);

}  // namespace wq
