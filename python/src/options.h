// What the extension's files share: Ctrl-C and the progress callback (ProgressHook), and the
// options of a quantize call as the Python package passes them.
#pragma once

#include <pybind11/pybind11.h>

#include <atomic>
#include <functional>
#include <optional>

#include "wq/wq.h"

namespace wqpy {

namespace py = pybind11;

// A Python progress callback(bytes_done, bytes_total, name) or None, and the cancel flag that
// Ctrl-C (a pending signal) or an exception of the callback sets. The library calls function()
// between tensors and chunks; it takes the GIL.
struct ProgressHook {
  py::object callback;  // None or callable(bytes_done, bytes_total, tensor)
  std::atomic<bool> cancel{false};
  std::optional<py::error_already_set> pending;

  std::function<void(const wq::Progress&)> function() {
    return [this](const wq::Progress& p) {
      if (cancel.load()) return;
      py::gil_scoped_acquire gil;
      try {
        if (PyErr_CheckSignals() != 0) throw py::error_already_set();
        if (!callback.is_none()) callback(p.bytes_done, p.bytes_total, p.current_tensor);
      } catch (py::error_already_set& e) {
        pending.emplace(std::move(e));
        cancel.store(true);
      }
    };
  }

  // After the call: a Python exception that stopped it is raised in place of kInterrupted.
  void rethrow_pending() {
    if (pending) {
      py::error_already_set e = std::move(*pending);
      pending.reset();
      throw e;
    }
  }
};

// The options of a quantize call; rules: [(pattern, spec changes or None to keep raw, text)].
wq::QuantizeOptions quantize_options(const py::dict& spec_dict, const py::list& rules, bool all, bool keep_nonfinite,
                                     ProgressHook& hook);

// The output format: `format` holds "to" ("wq", "gguf", "compressed-tensors"), "type" (a ggml
// type or llama-quantize preset, or ""), "scheme", "ignore" (globs), "channel"
// (compressed-tensors per channel) and "allow_requantize"; wq/__init__.py has refused the
// arguments that do not apply to the format.
void apply_output_format(const py::dict& format, const wq::QuantSpec& spec, wq::QuantizeOptions* options);

// Adds quantize_tree and plan_tree to the module (tree.cpp).
void bind_tree(py::module_& m);

}  // namespace wqpy
