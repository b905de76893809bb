#include "cli/sweep_run.h"

#include <cstdio>
#include <filesystem>
#include <optional>
#include <system_error>

#include <fmt/core.h>

#include "cli/cli_common.h"
#include "cli/eval_command.h"
#include "cli/sweep_table.h"
#include "cli/sweep_workspace.h"
#include "core/json_text.h"
#include "wq/atomic_write.h"
#include "wq/error.h"
#include "wq/pipeline.h"
#include "wq/tree.h"

namespace wq::cli {
namespace {

namespace fs = std::filesystem;

constexpr const char* kShardedFormat = "safetensors-sharded";

/// Sizes of every file a quantize run left in `folder`: the container, or a sharded
/// checkpoint's containers and index. Measured, not taken from the report, so that the
/// column is by construction what quantize writes.
std::uint64_t bytes_in_folder(const std::string& folder) {
  std::uint64_t total = 0;
  for (const fs::directory_entry& entry : fs::directory_iterator(folder)) {
    if (entry.is_regular_file()) total += entry.file_size();
  }
  return total;
}

/// The decoded checkpoint's file name: MODEL's own, so that an --eval script that looks at
/// the name sees what it would see for MODEL; a .npy decodes to an archive (.npz).
std::string decoded_name(const std::string& model, const std::string& decode_format) {
  const fs::path name = fs::path(model).filename();
  if (decode_format == "npz" && name.extension() != ".npz") return fs::path(name).replace_extension(".npz").string();
  return name.string();
}

class Sweep {
 public:
  Sweep(const SweepFlags& f, std::vector<SweepSetting> settings, SweepModel model, Backend& backend)
      : f_(f), settings_(std::move(settings)), model_(std::move(model)), backend_(backend),
        table_(model_, f.eval.empty() ? "" : f.eval_name), text_(f.json != "-") {}

  /// Runs every row; throws wq::Error (Error(kInterrupted) on Ctrl-C) after the workspace is
  /// removed.
  void run() {
    SweepWorkspace workspace(f_.work_dir);
    print(model_line(model_) + "\n" + table_.header());
    if (!f_.eval.empty()) {
      baseline_ = evaluate(f_.eval, model_.path, "the baseline (" + model_.path + " itself)", cancel_flag());
      print(table_.baseline(*baseline_));
    }
    for (std::size_t i = 0; i < settings_.size(); ++i) {
      // Ctrl-C between two library calls would otherwise only be seen inside the next one.
      if (cancel_flag()->load()) throw Error(ErrorCode::kInterrupted, "interrupted");
      const std::string folder = workspace.make_folder("row-" + std::to_string(i + 1));
      rows_.push_back(run_row(settings_[i], folder, fmt::format("[{}/{}] {}", i + 1, settings_.size(),
                                                                setting_short_text(settings_[i].flags))));
      SweepWorkspace::remove_folder(folder);
      print(table_.row(rows_.back()));
    }
    print(table_.legend());
  }

  std::size_t rows_done() const { return rows_.size(); }

  nlohmann::ordered_json json() const {
    return sweep_json(model_, baseline_, rows_, f_.eval.empty() ? "" : f_.eval_name, f_.eval);
  }

 private:
  void print(const std::string& text) const {
    if (!text_) return;
    finish_progress();
    fmt::print("{}", text);
    std::fflush(stdout);  // a row as soon as it is known, in order with the --eval command's stderr
  }

  std::function<void(const Progress&)> progress(const std::string& label, const std::string& step) const {
    return progress_printer(label + " " + step, f_.quiet || f_.json == "-");
  }

  SweepRow run_row(const SweepSetting& setting, const std::string& folder, const std::string& label) {
    const bool sharded = model_.format == kShardedFormat;
    const std::string model_name = fs::path(model_.path).filename().string();
    const std::string output = (fs::path(folder) / tree_output_name(model_name, sharded)).string();
    QuantizeOptions options = setting.options;
    options.cancel = cancel_flag();
    options.on_progress = progress(label, "quantizing");
    const QuantizeReport report = quantize_file(model_.path, output, backend_, options);
    finish_progress();
    SweepRow row;
    row.flags = setting.flags;
    row.bytes = bytes_in_folder(folder);
    add_report(row, report);
    if (!f_.eval.empty()) {
      const std::string checkpoint = decode_for_eval(folder, output, report.format, label);
      row.eval = evaluate(f_.eval, checkpoint, setting_flags_text(setting.flags), cancel_flag());
    }
    return row;
  }

  // What `wq-gpu decode` writes by default: MODEL's format back. A sharded checkpoint decodes
  // shard by shard beside a copy of MODEL's index, which names the shards as before.
  std::string decode_for_eval(const std::string& folder, const std::string& container, const std::string& source_format,
                              const std::string& label) const {
    const std::string decoded = SweepWorkspace::make_folder_in(folder, "decoded");
    DecodeOptions options;
    options.cancel = cancel_flag();
    options.on_progress = progress(label, "decoding");
    if (source_format == kShardedFormat) {
      for (const std::string& shard : shard_files(model_.path)) {
        decode_file((fs::path(folder) / tree_output_name(shard, false)).string(), (fs::path(decoded) / shard).string(),
                    backend_, options);
      }
      const std::string index = (fs::path(decoded) / fs::path(model_.path).filename()).string();
      std::error_code ec;
      fs::copy_file(model_.path, index, ec);
      if (ec) throw Error(ErrorCode::kOutput, index + ": cannot copy " + model_.path + " here: " + ec.message());
      finish_progress();
      return index;
    }
    const std::string path =
        (fs::path(decoded) / decoded_name(model_.path, output_format_of_source(source_format))).string();
    decode_file(container, path, backend_, options);
    finish_progress();
    return path;
  }

  const SweepFlags& f_;
  const std::vector<SweepSetting> settings_;
  const SweepModel model_;
  Backend& backend_;
  const SweepTableText table_;
  const bool text_;  ///< print the table as rows come (not with --json on stdout)
  std::optional<EvalNumber> baseline_;
  std::vector<SweepRow> rows_;
};

/// MODEL as the first line names it, from the plan of the first setting (policy and rules
/// decide which tensors are encoded; the settings only how).
SweepModel describe_model(const SweepFlags& f, const SweepSetting& first, const std::string& backend) {
  const QuantizeReport plan = plan_quantize(f.base.inputs[0], first.options);
  SweepModel model;
  model.path = f.base.inputs[0];
  model.format = plan.format;
  model.bytes = plan.input_bytes;
  model.tensors = plan.tensors.size();
  for (const TensorReport& t : plan.tensors) model.quantized += t.encoding != Encoding::kRaw ? 1 : 0;
  model.scale_dtype = f.base.scale_dtype;
  model.backend = backend;
  return model;
}

void write_json_file(const std::string& path, const nlohmann::ordered_json& j) {
  write_file_atomically(path, detail::json_text(j, 2) + "\n");
}

}  // namespace

int run_sweep(const SweepFlags& f) {
  const std::string& model_path = f.base.inputs[0];
  std::error_code ec;
  if (fs::is_directory(model_path, ec)) {
    throw Error(ErrorCode::kUsage, model_path + ": is a folder; sweep takes one checkpoint file (or a sharded "
                                                "checkpoint's *.index.json)");
  }
  // Every setting's options (and so every rule and method) are checked before MODEL is read.
  const std::vector<SweepSetting> settings = expand_settings(f.base, f.lists);
  const bool quiet = f.quiet || f.json == "-";
  BackendSelection selection = select_backend(f.base.backend, quiet);
  Sweep sweep(f, settings, describe_model(f, settings.front(), selection.backend->description()), *selection.backend);
  try {
    sweep.run();
  } catch (const Error& e) {
    // The workspace is gone by now: it lived inside run().
    finish_progress();
    if (e.code() != ErrorCode::kInterrupted) throw;
    fmt::print(stderr, "wq-gpu: interrupted after {} of {} settings; the temporary files were removed\n",
               sweep.rows_done(), settings.size());
    return static_cast<int>(ErrorCode::kInterrupted);
  }
  if (f.json == "-") fmt::print("{}\n", detail::json_text(sweep.json(), 2));
  if (!f.json.empty() && f.json != "-") write_json_file(f.json, sweep.json());
  return 0;
}

}  // namespace wq::cli
