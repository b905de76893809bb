// wq.quantize_tree and wq.plan_tree over wq::quantize_tree() / wq::plan_tree() (wq/tree.h).
//
// Tree mode runs several jobs on threads of its own, where Python cannot see signals: the
// calling thread waits for the run without the GIL, wakes every 50 ms to ask Python for a
// pending Ctrl-C and turns it into the run's cancel flag. The progress callback gets the whole
// tree's bytes, done and total, and the file in progress.
#include <pybind11/stl.h>

#include <chrono>
#include <future>
#include <map>
#include <mutex>

#include "options.h"

namespace wqpy {
namespace {

// The tree's bytes done: finished files and the parts done of the files in progress.
class TreeProgressSum {
 public:
  explicit TreeProgressSum(ProgressHook& hook) : report_(hook.function()) {}

  void start(const wq::TreeStart& s) { total_ = s.bytes; }
  void advance(std::size_t file, const std::string& name, std::uint64_t bytes_done) {
    in_flight_[file] = bytes_done;
    report(name);
  }
  void finished(std::size_t file, const wq::TreeFileReport& row) {
    in_flight_.erase(file);
    finished_ += row.original_bytes;
    report(row.input);
  }

 private:
  void report(const std::string& name) {
    std::uint64_t done = finished_;
    for (const auto& [file, bytes] : in_flight_) done += bytes;
    wq::Progress p;
    p.bytes_done = std::min(done, total_);
    p.bytes_total = total_;
    p.current_tensor = name;
    report_(p);
  }

  std::function<void(const wq::Progress&)> report_;  ///< the hook's: Ctrl-C and the callback
  std::uint64_t total_ = 0, finished_ = 0;
  std::map<std::size_t, std::uint64_t> in_flight_;
};

// Runs `work` on a thread of its own and waits for it, polling Python for Ctrl-C; raises the
// Python exception that stopped it (Ctrl-C, the progress callback's) in place of kInterrupted.
template <typename Work>
auto run_watching_signals(ProgressHook& hook, Work&& work) {
  auto done = std::async(std::launch::async, std::forward<Work>(work));
  for (;;) {
    {
      py::gil_scoped_release nogil;
      if (done.wait_for(std::chrono::milliseconds(50)) == std::future_status::ready) break;
    }
    if (!hook.cancel.load() && PyErr_CheckSignals() != 0) {
      hook.pending.emplace(py::error_already_set());
      hook.cancel.store(true);
    }
  }
  try {
    return done.get();
  } catch (const wq::Error&) {
    hook.rethrow_pending();
    throw;
  }
}

wq::TreeOptions tree_options(const py::dict& spec_dict, const py::list& rules, bool all, bool keep_nonfinite,
                             const py::dict& format, const py::dict& run, ProgressHook& hook) {
  wq::TreeOptions options;
  options.quantize = quantize_options(spec_dict, rules, all, keep_nonfinite, hook);
  options.quantize.on_progress = nullptr;  // the tree's own (TreeProgressSum)
  apply_output_format(format, options.quantize.spec, &options.quantize);
  const std::string backend = run["backend"].cast<std::string>();
  if (backend == "cpu") {
    options.backend.kind = wq::BackendKind::kCpu;
  } else if (backend == "cuda") {
    options.backend.kind = wq::BackendKind::kCuda;
  } else if (backend != "auto") {
    throw wq::Error(wq::ErrorCode::kUsage, "unknown backend '" + backend + "' (auto, cpu, cuda)");
  }
  options.backend.threads = run["threads"].cast<unsigned>();
  options.devices = run["devices"].cast<std::vector<int>>();
  options.jobs = run["jobs"].cast<unsigned>();
  const std::string shard = run["shard"].cast<std::string>();
  if (shard == "env") {
    options.shard = wq::select_tree_shard("", "shard");
  } else if (!shard.empty()) {
    options.shard = wq::select_tree_shard(shard, "shard");
  }
  options.force = run["force"].cast<bool>();
  options.copy_unreadable = run["copy_unreadable"].cast<bool>();
  return options;
}

py::dict row_dict(const wq::TreeFileReport& r) {
  py::dict d;
  d["input"] = r.input;
  d["output"] = r.output;
  d["action"] = r.action;
  d["kind"] = r.kind;
  d["original_bytes"] = r.original_bytes;
  d["output_bytes"] = r.output_bytes;
  d["encoded_tensors"] = r.encoded;
  d["sqnr_min_db"] = r.encoded ? py::cast(r.sqnr_min_db) : py::none();
  d["sqnr_median_db"] = r.encoded ? py::cast(r.sqnr_median_db) : py::none();
  d["seconds"] = r.seconds;
  return d;
}

// The report: "files" (a dict per output, in the plan's order), "settings" (JSON text),
// "journal", "notes", "jobs".
py::dict quantize_tree(const std::vector<std::string>& inputs, const std::string& output, const py::dict& spec_dict,
                       const py::list& rules, bool all, bool keep_nonfinite, const py::dict& format, const py::dict& run,
                       const py::object& progress) {
  ProgressHook hook{progress};
  wq::TreeOptions options = tree_options(spec_dict, rules, all, keep_nonfinite, format, run, hook);
  TreeProgressSum sum(hook);
  std::vector<std::string> notes;
  unsigned jobs = 0;
  options.on_note = [&](const std::string& note) { notes.push_back(note); };
  options.on_start = [&](const wq::TreeStart& s) {
    jobs = s.jobs;
    sum.start(s);
  };
  options.on_file_progress = [&](std::size_t file, const std::string& name, const wq::Progress& p) {
    sum.advance(file, name, p.bytes_done);
  };
  options.on_file_finished = [&](std::size_t file, const wq::TreeFileReport& row, std::size_t) {
    sum.finished(file, row);
  };
  const wq::TreeReport report = run_watching_signals(hook, [&] { return wq::quantize_tree(inputs, output, options); });
  py::dict d;
  py::list files;
  for (const wq::TreeFileReport& r : report.files) files.append(row_dict(r));
  d["files"] = files;
  d["settings"] = report.settings_json;
  d["journal"] = report.journal;
  d["notes"] = notes;
  d["jobs"] = jobs;
  return d;
}

// The plan: "files" (a dict per output: action, input, output, input_bytes, output_bytes, the
// latter estimated), "notes".
py::dict plan_tree(const std::vector<std::string>& inputs, const std::string& output, const py::dict& spec_dict,
                   const py::list& rules, bool all, bool keep_nonfinite, const py::dict& format, const py::dict& run) {
  ProgressHook hook{py::none()};
  wq::TreeOptions options = tree_options(spec_dict, rules, all, keep_nonfinite, format, run, hook);
  std::vector<std::string> notes;
  options.on_note = [&](const std::string& note) { notes.push_back(note); };
  const std::vector<wq::TreePlanEntry> entries =
      run_watching_signals(hook, [&] { return wq::plan_tree(inputs, output, options); });
  py::list files;
  for (const wq::TreePlanEntry& e : entries) {
    py::dict f;
    f["action"] = e.action;
    f["input"] = e.input;
    f["output"] = e.output;
    f["input_bytes"] = e.action == "quantize" ? e.plan.input_bytes : e.action == "copy" ? e.bytes : 0;
    f["output_bytes"] = e.action == "quantize" ? e.plan.output_bytes : e.action == "copy" ? e.bytes : 0;
    files.append(f);
  }
  py::dict d;
  d["files"] = files;
  d["notes"] = notes;
  return d;
}

}  // namespace

void bind_tree(py::module_& m) {
  m.def("quantize_tree", &quantize_tree, py::arg("inputs"), py::arg("output"), py::arg("spec"), py::arg("rules"),
        py::arg("all"), py::arg("keep_nonfinite"), py::arg("format"), py::arg("run"), py::arg("progress"));
  m.def("plan_tree", &plan_tree, py::arg("inputs"), py::arg("output"), py::arg("spec"), py::arg("rules"),
        py::arg("all"), py::arg("keep_nonfinite"), py::arg("format"), py::arg("run"));
}

}  // namespace wqpy
