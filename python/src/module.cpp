// The `wq._wq` extension: libwqcuda's public API for Python (python/wq/__init__.py wraps it).
//
// Arrays cross as buffers (the buffer protocol: numpy arrays, and torch tensors through their
// zero-copy .numpy()), read in place: the library sees the caller's memory, never a copy. Every
// long call releases the GIL. Ctrl-C reaches the library as its cancel flag: the progress hook,
// which the library calls between tensors and chunks on the calling thread, takes the GIL and
// asks Python for pending signals.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <atomic>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "options.h"
#include "wq/wq.h"

namespace py = pybind11;

namespace {

// ---- Errors -------------------------------------------------------------------------------------

// wq.Error and one subclass per wq::ErrorCode, made in Python (python/wq/_errors.py) and
// handed to set_error_types() at import.
std::map<wq::ErrorCode, py::object>& error_types() {
  static auto* types = new std::map<wq::ErrorCode, py::object>();  // never destroyed: outlives the interpreter
  return *types;
}

void set_error_types(const py::dict& by_code) {
  for (const auto& [code, type] : by_code) {
    error_types()[static_cast<wq::ErrorCode>(code.cast<int>())] = py::reinterpret_borrow<py::object>(type);
  }
}

// A wq::ErrorHint as this package's keyword arguments (the CLI names its flags instead).
std::string keyword_text(const wq::ErrorHint& h) {
  const std::string& o = h.option;
  if (o == "keep_nonfinite") return "keep_nonfinite=True stores such tensors raw";
  if (o == "allow_requantize") return "allow it with allow_requantize=True";
  if (o == "keep") return "keep it with rules={'" + (h.value.empty() ? std::string("NAME") : h.value) + "': 'keep'}";
  if (o == "scale_dtype_f32") return "use scale_dtype='f32'";
  if (o == "method_bf16") return "use method='bf16' for wide ranges";
  if (o == "ggml_type") return "choose a ggml type with type=";
  if (o == "ignore") return "leave the module out with ignore=['" + (h.value.empty() ? std::string("MODULE") : h.value) + "']";
  if (o == "group_size") return "choose a group_size that divides it";
  if (o == "channel") return "use granularity='channel'";
  if (o == "backend_cpu") return "use backend='cpu'";
  if (o == "copy_unreadable") return "copy_unreadable=True copies such files unchanged";
  return "";  // options this package does not offer (GPU memory, view limits, long GGUF names)
}

void raise_wq_error(const wq::Error& e) {
  std::string message = e.what(), hints;
  for (const wq::ErrorHint& h : e.hints()) {
    const std::string text = keyword_text(h);
    if (!text.empty()) hints += (hints.empty() ? "" : ", or ") + text;
  }
  if (!hints.empty()) message += " (" + hints + ")";
  auto it = error_types().find(e.code());
  if (it == error_types().end()) it = error_types().find(wq::ErrorCode::kInternal);
  if (it == error_types().end()) {
    PyErr_SetString(PyExc_RuntimeError, message.c_str());
    return;
  }
  py::object exc = it->second(message);
  exc.attr("code") = wq::error_code_name(e.code());
  PyErr_SetObject(it->second.ptr(), exc.ptr());
}

// ---- Conversions --------------------------------------------------------------------------------

wq::DType dtype_of(const std::string& name) {
  const std::optional<wq::DType> d = wq::parse_dtype(name);
  if (!d) throw wq::Error(wq::ErrorCode::kUsage, "unknown dtype '" + name + "'");
  return *d;
}

wq::QuantSpec spec_of(const py::dict& d) {
  wq::QuantSpec spec;
  if (d.contains("method")) {
    const std::string m = d["method"].cast<std::string>();
    const std::optional<wq::Method> method = wq::parse_method(m);
    if (!method) throw wq::Error(wq::ErrorCode::kUsage, "unknown method '" + m + "' (minmax, mse, symmetric, fp16, bf16)");
    spec.method = *method;
  }
  if (d.contains("bits")) spec.bits = d["bits"].cast<int>();
  if (d.contains("granularity")) {
    const std::string g = d["granularity"].cast<std::string>();
    const std::optional<wq::Granularity> gran = wq::parse_granularity(g);
    if (!gran) throw wq::Error(wq::ErrorCode::kUsage, "unknown granularity '" + g + "' (tensor, channel, group)");
    spec.granularity = *gran;
  }
  if (d.contains("group_size")) spec.group_size = d["group_size"].cast<std::uint64_t>();
  if (d.contains("scale_dtype")) {
    const std::string s = d["scale_dtype"].cast<std::string>();
    const std::optional<wq::ScaleDType> sd = wq::parse_scale_dtype(s);
    if (!sd) throw wq::Error(wq::ErrorCode::kUsage, "unknown scale dtype '" + s + "' (f32, f16)");
    spec.scale_dtype = *sd;
  }
  spec.validate();
  return spec;
}

wq::Shape shape_of(const py::sequence& s) {
  wq::Shape shape;
  for (const py::handle& d : s) shape.push_back(d.cast<std::uint64_t>());
  return shape;
}

py::tuple shape_tuple(const wq::Shape& shape) {
  py::tuple t(shape.size());
  for (std::size_t i = 0; i < shape.size(); ++i) t[i] = shape[i];
  return t;
}

// A C-contiguous buffer of exactly `bytes` bytes; `what` names it in the error.
py::buffer_info contiguous(const py::buffer& b, std::uint64_t bytes, const std::string& what, bool writable) {
  py::buffer_info info = b.request(writable);
  std::uint64_t expected_stride = static_cast<std::uint64_t>(info.itemsize);
  for (py::ssize_t i = info.ndim - 1; i >= 0; --i) {
    if (info.shape[i] > 1 && static_cast<std::uint64_t>(info.strides[i]) != expected_stride) {
      throw wq::Error(wq::ErrorCode::kUsage, what + ": not C-contiguous (make it so with numpy.ascontiguousarray)");
    }
    expected_stride *= static_cast<std::uint64_t>(info.shape[i]);
  }
  const std::uint64_t have = static_cast<std::uint64_t>(info.size) * static_cast<std::uint64_t>(info.itemsize);
  if (have != bytes) {
    throw wq::Error(wq::ErrorCode::kUsage,
                    what + ": holds " + std::to_string(have) + " bytes, its dtype and shape need " + std::to_string(bytes));
  }
  return info;
}

py::dict stats_dict(const wq::ErrorStats& s) {
  py::dict d;
  d["count"] = s.count;
  d["sqnr_db"] = s.count == 0 ? py::object(py::none()) : py::object(py::float_(s.sqnr_db()));
  d["max_abs_error"] = s.max_abs_error;
  return d;
}

// ---- Backends -----------------------------------------------------------------------------------

// One backend per kind for the process (a CPU backend owns a thread pool; a CUDA one, device
// buffers), used by one call at a time.
struct SharedBackend {
  std::unique_ptr<wq::Backend> backend;
  std::mutex busy;
};

SharedBackend& backend_for(const std::string& kind) {
  static std::mutex guard;
  static auto* backends = new std::map<std::string, std::unique_ptr<SharedBackend>>();
  std::lock_guard<std::mutex> lock(guard);
  auto it = backends->find(kind);
  if (it != backends->end()) return *it->second;
  wq::BackendOptions options;
  if (kind == "cpu") {
    options.kind = wq::BackendKind::kCpu;
  } else if (kind == "cuda") {
    options.kind = wq::BackendKind::kCuda;
  } else if (kind != "auto") {
    throw wq::Error(wq::ErrorCode::kUsage, "unknown backend '" + kind + "' (auto, cpu, cuda)");
  }
  auto shared = std::make_unique<SharedBackend>();
  shared->backend = wq::make_backend(options).backend;
  return *backends->emplace(kind, std::move(shared)).first->second;
}

// ---- Progress and Ctrl-C ------------------------------------------------------------------------

// The library's progress hook for a call made without the GIL: calls the user's callback (if
// any) and turns a pending Ctrl-C (or an exception from the callback) into the cancel flag.
// ---- save: a state dict in memory, through the library's quantize pipeline ---------------------

class MemoryCheckpoint final : public wq::CheckpointReader {
 public:
  MemoryCheckpoint(std::string label, std::string format) : path_(std::move(label)), format_(std::move(format)) {}
  void add(wq::TensorInfo info, const std::byte* data) {
    bytes_ += wq::element_count(info.shape) * wq::dtype_size(info.dtype);
    infos_.push_back(std::move(info));
    data_.push_back(data);
  }
  const std::string& path() const noexcept override { return path_; }
  const std::string& format() const noexcept override { return format_; }
  std::uint64_t file_bytes() const noexcept override { return bytes_; }
  const std::vector<wq::TensorInfo>& tensors() const noexcept override { return infos_; }
  wq::TensorView tensor(std::size_t i) override { return {infos_[i].name, infos_[i].dtype, infos_[i].shape, data_[i]}; }
  void release(std::size_t) override {}

 private:
  std::string path_, format_;
  std::uint64_t bytes_ = 0;
  std::vector<wq::TensorInfo> infos_;
  std::vector<const std::byte*> data_;
};

py::dict report_dict(const wq::QuantizeReport& r) {
  py::dict d;
  d["output"] = r.output;
  d["input_bytes"] = r.input_bytes;
  d["output_bytes"] = r.output_bytes;
  d["seconds"] = r.seconds;
  d["backend"] = r.backend;
  py::list tensors;
  for (const wq::TensorReport& t : r.tensors) {
    py::dict e = stats_dict(t.error);
    e["name"] = t.name;
    e["dtype"] = std::string(wq::dtype_name(t.dtype));
    e["shape"] = shape_tuple(t.shape);
    e["encoding"] = std::string(wq::encoding_name(t.encoding));
    e["bits"] = t.bits;
    e["group_size"] = t.group_size;
    e["range"] = t.range;
    e["input_bytes"] = t.input_bytes;
    e["output_bytes"] = t.output_bytes;
    e["note"] = t.note;
    e["rule"] = t.rule;
    tensors.append(e);
  }
  d["tensors"] = tensors;
  return d;
}

}  // namespace

namespace wqpy {

// The options of a quantize call; rules: [(pattern, spec changes or None to keep raw, text)].
wq::QuantizeOptions quantize_options(const py::dict& spec_dict, const py::list& rules, bool all, bool keep_nonfinite,
                                     ProgressHook& hook) {
  wq::QuantizeOptions options;
  options.spec = spec_of(spec_dict);
  for (const py::handle& item : rules) {
    const py::tuple r = item.cast<py::tuple>();
    wq::TensorRule rule;
    rule.pattern = r[0].cast<std::string>();
    rule.keep = r[1].is_none();
    if (!rule.keep) {
      py::dict merged = spec_dict.attr("copy")();
      merged.attr("update")(r[1]);
      rule.spec = spec_of(merged);
    }
    rule.text = r[2].cast<std::string>();
    options.rules.push_back(std::move(rule));
  }
  options.all = all;
  options.keep_nonfinite = keep_nonfinite;
  options.on_progress = hook.function();
  options.cancel = &hook.cancel;
  return options;
}

// The output format of quantize_file(): `format` holds "to" ("wq", "gguf", "compressed-tensors"),
// "type" (a ggml type or llama-quantize preset, or ""), "scheme", "ignore" (globs),
// "channel" (compressed-tensors per channel) and "allow_requantize"; wq/__init__.py has
// refused the arguments that do not apply to the format.
void apply_output_format(const py::dict& format, const wq::QuantSpec& spec, wq::QuantizeOptions* options) {
  const std::string to = format["to"].cast<std::string>();
  const std::string type = format["type"].cast<std::string>();
  options->allow_requantize = format["allow_requantize"].cast<bool>();
  if (to == "compressed-tensors") {
    options->output_format = wq::OutputFormat::kCompressedTensors;
    wq::PackQuantizedScheme scheme = wq::PackQuantizedScheme::named(format["scheme"].cast<std::string>());
    scheme.group_size = format["channel"].cast<bool>() ? 0 : spec.group_size;
    scheme.mse = spec.method == wq::Method::kMse;
    for (const py::handle& glob : format["ignore"].cast<py::list>()) scheme.ignore.push_back(glob.cast<std::string>());
    options->pack_quantized = scheme;
    options->spec = {};
    return;
  }
  options->output_format = to == "gguf" ? wq::OutputFormat::kGguf : wq::OutputFormat::kContainer;
  if (!type.empty()) {
    try {
      wq::choose_ggml_types(type, options);  // refuses a method that the type has no form of
    } catch (const wq::Error& e) {
      const std::string method =
          spec.method == wq::Method::kMinMax ? "" : " with method='" + std::string(wq::method_name(spec.method)) + "'";
      throw wq::Error(e.code(), "type='" + type + "'" + method + ": " + e.what(), e.hints());
    }
  } else if (options->output_format == wq::OutputFormat::kGguf) {
    throw wq::Error(wq::ErrorCode::kUsage, "a GGUF file holds ggml types: choose one with type= (" +
                                               wq::ggml_type_names() + "), e.g. type=\"Q8_0\"");
  }
  if (options->output_format == wq::OutputFormat::kContainer && options->spec.method == wq::Method::kGgml &&
      options->spec.ggml_type == wq::codec::ggml::Type::kF32) {
    throw wq::Error(wq::ErrorCode::kUsage, "type F32 is for GGUF output (a WQ container keeps float32 tensors with "
                                           "rules={'*': 'keep'})");
  }
  options->spec.validate();
}

}  // namespace wqpy

namespace {

using wqpy::ProgressHook;
using wqpy::quantize_options;
using wqpy::apply_output_format;

// Runs `work` without the GIL on the backend, a Python exception that stopped it (Ctrl-C, the
// progress callback's) raised in place of the library's kInterrupted.
template <typename Work>
auto run_cancellable(ProgressHook& hook, const std::string& backend_kind, Work&& work) {
  SharedBackend& backend = backend_for(backend_kind);
  try {
    py::gil_scoped_release nogil;
    std::lock_guard<std::mutex> lock(backend.busy);
    return work(*backend.backend);
  } catch (const wq::Error&) {
    hook.rethrow_pending();
    throw;
  }
}

// tensors: [(name, dtype, shape, buffer)].
py::dict save(const py::list& tensors, const std::string& path, const py::dict& spec_dict, const py::list& rules,
              bool all, bool keep_nonfinite, const std::string& source_format, const std::string& backend_kind,
              const py::object& progress, bool durable) {
  MemoryCheckpoint checkpoint("<state_dict>", source_format);
  std::vector<py::buffer_info> held;  // the callers' buffers, pinned for the call
  held.reserve(tensors.size());
  for (const py::handle& item : tensors) {
    const py::tuple t = item.cast<py::tuple>();
    wq::TensorInfo info{t[0].cast<std::string>(), dtype_of(t[1].cast<std::string>()), shape_of(t[2].cast<py::sequence>())};
    const std::uint64_t bytes = wq::element_count(info.shape) * wq::dtype_size(info.dtype);
    held.push_back(contiguous(t[3].cast<py::buffer>(), bytes, "tensor '" + info.name + "'", false));
    checkpoint.add(std::move(info), static_cast<const std::byte*>(held.back().ptr));
  }
  ProgressHook hook{progress};
  wq::QuantizeOptions options = quantize_options(spec_dict, rules, all, keep_nonfinite, hook);
  options.durable = durable;
  return report_dict(run_cancellable(hook, backend_kind, [&](wq::Backend& backend) {
    return wq::quantize_checkpoint(checkpoint, path, backend, options);
  }));
}

py::dict quantize_file(const std::string& input, const std::string& output, const py::dict& spec_dict,
                       const py::list& rules, bool all, bool keep_nonfinite, const std::string& backend_kind,
                       const py::object& progress, const py::dict& format) {
  ProgressHook hook{progress};
  wq::QuantizeOptions options = quantize_options(spec_dict, rules, all, keep_nonfinite, hook);
  apply_output_format(format, options.spec, &options);
  py::dict report = report_dict(run_cancellable(hook, backend_kind, [&](wq::Backend& backend) {
    return wq::quantize_file(input, output, backend, options);
  }));
  report["input"] = input;
  if (options.output_format == wq::OutputFormat::kCompressedTensors) {
    // What the model's config.json needs (a folder's is rewritten by the CLI's tree mode).
    report["quantization_config"] = wq::pack_quantized_config_json(options.pack_quantized);
  }
  return report;
}

void decode_file(const std::string& input, const std::string& output, const std::string& format,
                 const std::string& backend_kind, const py::object& progress) {
  ProgressHook hook{progress};
  wq::DecodeOptions options;
  options.format = format;
  options.on_progress = hook.function();
  options.cancel = &hook.cancel;
  run_cancellable(hook, backend_kind, [&](wq::Backend& backend) {
    wq::decode_file(input, output, backend, options);
    return 0;
  });
}

// Every tensor's checksum of a container; throws the IntegrityError of the first mismatch.
// Every tensor's checksum, with progress (stored bytes) between tensors and Ctrl-C.
std::size_t verify(const std::string& path, const py::object& progress) {
  ProgressHook hook{progress};
  const std::function<void(const wq::Progress&)> report = hook.function();
  try {
    py::gil_scoped_release nogil;
    const std::unique_ptr<wq::ContainerReader> reader = wq::ContainerReader::open(path);
    wq::Progress p;
    for (const wq::ContainerTensor& t : reader->tensors()) p.bytes_total += t.stored_bytes;
    for (std::size_t i = 0; i < reader->tensors().size(); ++i) {
      if (hook.cancel.load()) throw wq::Error(wq::ErrorCode::kInterrupted, path + ": verify interrupted");
      p.current_tensor = reader->tensors()[i].name;
      report(p);
      reader->verify(i);
      reader->release(i);
      p.bytes_done += reader->tensors()[i].stored_bytes;
    }
    p.current_tensor.clear();
    report(p);
    if (hook.cancel.load()) throw wq::Error(wq::ErrorCode::kInterrupted, path + ": verify interrupted");
    return reader->tensors().size();
  } catch (const wq::Error&) {
    hook.rethrow_pending();
    throw;
  }
}

// ---- Reading: a container or any checkpoint, one tensor at a time ------------------------------

class Reader {
 public:
  explicit Reader(const std::string& path) {
    py::gil_scoped_release nogil;
    if (wq::is_wq_container(path)) {
      container_ = wq::ContainerReader::open(path);
    } else {
      checkpoint_ = wq::open_checkpoint(path);
    }
  }

  std::size_t size() const { return container_ ? container_->tensors().size() : checkpoint_->tensors().size(); }

  // Name, original dtype and shape of tensor `index`, from either kind of file.
  wq::TensorInfo info(std::size_t index) const {
    if (!container_) return checkpoint_->tensors()[index];
    const wq::ContainerTensor& t = container_->tensors()[index];
    return {t.name, t.dtype, t.shape};
  }

  py::list tensors() const {
    py::list out;
    for (std::size_t i = 0; i < size(); ++i) {
      const wq::TensorInfo t = info(i);
      out.append(py::make_tuple(t.name, std::string(wq::dtype_name(t.dtype)), shape_tuple(t.shape)));
    }
    return out;
  }

  py::dict metadata() const {
    py::dict d;
    if (container_) {
      d["format"] = "wq";
      d["path"] = container_->path();
      d["file_bytes"] = container_->file_bytes();
      d["producer"] = container_->producer();
      d["source_file"] = container_->source().file;
      d["source_format"] = container_->source().format;
      py::dict encodings;
      for (const wq::ContainerTensor& t : container_->tensors()) {
        py::dict e;
        e["encoding"] = std::string(wq::encoding_name(t.encoding));
        e["bits"] = t.bits;
        e["group_size"] = t.group_size;
        e["range"] = t.range;
        e["scale_dtype"] = std::string(wq::scale_dtype_name(t.scale_dtype));
        e["stored_bytes"] = t.stored_bytes;
        encodings[py::str(t.name)] = e;
      }
      d["tensors"] = encodings;
    } else {
      d["format"] = checkpoint_->format();
      d["path"] = checkpoint_->path();
      d["file_bytes"] = checkpoint_->file_bytes();
    }
    // A GGUF's metadata pairs (or those its container carries), as `wq-gpu inspect` shows them.
    const std::vector<wq::MetadataEntry> pairs =
        container_ ? container_->gguf_metadata_entries() : checkpoint_->metadata();
    if (!pairs.empty()) {
      py::list listed;
      for (const wq::MetadataEntry& m : pairs) listed.append(py::make_tuple(m.key, m.type, m.value));
      d["gguf_metadata"] = listed;
    }
    return d;
  }

  // Decodes (a container) or copies (a checkpoint) tensor `index` into `out`, a C-contiguous
  // buffer of the tensor's dtype and size.
  void read_into(std::size_t index, const py::buffer& out, const std::string& backend_kind) {
    if (index >= size()) throw py::index_error("tensor index out of range");
    const wq::TensorInfo t = info(index);
    const std::uint64_t bytes = wq::element_count(t.shape) * wq::dtype_size(t.dtype);
    py::buffer_info target = contiguous(out, bytes, "output for '" + t.name + "'", true);
    auto* data = static_cast<std::byte*>(target.ptr);
    if (container_) {
      SharedBackend& backend = backend_for(backend_kind);
      py::gil_scoped_release nogil;
      std::lock_guard<std::mutex> lock(backend.busy);
      container_->decode(index, *backend.backend, wq::MutableTensorView{t.name, t.dtype, t.shape, data});
      container_->release(index);
    } else {
      py::gil_scoped_release nogil;
      const wq::TensorView view = checkpoint_->tensor(index);
      if (bytes > 0) std::memcpy(data, view.data, bytes);
      checkpoint_->release(index);
    }
  }

 private:
  std::unique_ptr<wq::ContainerReader> container_;
  std::unique_ptr<wq::CheckpointReader> checkpoint_;
};

// ---- One array: quantize / dequantize -----------------------------------------------------------

py::dict quantize_array(const py::buffer& x, const std::string& dtype_name, const py::sequence& shape_seq,
                        const py::dict& spec_dict, const std::string& backend_kind) {
  const wq::DType dtype = dtype_of(dtype_name);
  const wq::Shape shape = shape_of(shape_seq);
  const wq::QuantSpec spec = spec_of(spec_dict);
  if (!spec.is_affine()) throw wq::Error(wq::ErrorCode::kUsage, "quantize() takes an affine method (minmax, mse, symmetric)");
  const py::buffer_info in = contiguous(x, wq::element_count(shape) * wq::dtype_size(dtype), "array", false);
  const wq::GroupGeometry g = wq::group_geometry(shape, spec);
  const std::size_t param_bytes = spec.scale_dtype == wq::ScaleDType::kF16 ? 2 : 4;
  const bool symmetric = spec.method == wq::Method::kSymmetric;
  // Uninitialised buffers of their sizes: the backend writes every byte.
  py::bytearray codes(nullptr, g.code_bytes), scales(nullptr, g.groups * param_bytes);
  py::bytearray mins(nullptr, symmetric ? 0 : g.groups * param_bytes);
  wq::AffineBuffers out{reinterpret_cast<std::uint8_t*>(PyByteArray_AsString(codes.ptr())),
                        reinterpret_cast<std::byte*>(PyByteArray_AsString(scales.ptr())),
                        symmetric ? nullptr : reinterpret_cast<std::byte*>(PyByteArray_AsString(mins.ptr()))};
  SharedBackend& backend = backend_for(backend_kind);
  wq::ErrorStats stats;
  {
    py::gil_scoped_release nogil;
    std::lock_guard<std::mutex> lock(backend.busy);
    stats = backend.backend->quantize(wq::TensorView{"array", dtype, shape, static_cast<const std::byte*>(in.ptr)},
                                      spec, out);
  }
  py::dict d = stats_dict(stats);
  d["codes"] = codes;
  d["scales"] = scales;
  d["mins"] = symmetric ? py::object(py::none()) : py::object(mins);
  d["groups"] = g.groups;
  d["stored_group_size"] = g.stored_group_size;
  return d;
}

void dequantize_array(const py::buffer& codes, const py::buffer& scales, const py::object& mins,
                      const py::dict& spec_dict, const std::string& dtype_name, const py::sequence& shape_seq,
                      const py::buffer& out, const std::string& backend_kind) {
  const wq::DType dtype = dtype_of(dtype_name);
  const wq::Shape shape = shape_of(shape_seq);
  const wq::QuantSpec spec = spec_of(spec_dict);
  const wq::GroupGeometry g = wq::group_geometry(shape, spec);
  const std::size_t param_bytes = spec.scale_dtype == wq::ScaleDType::kF16 ? 2 : 4;
  const py::buffer_info c = contiguous(codes, g.code_bytes, "codes", false);
  const py::buffer_info s = contiguous(scales, g.groups * param_bytes, "scales", false);
  std::optional<py::buffer_info> m;
  if (spec.method != wq::Method::kSymmetric) {
    if (mins.is_none()) throw wq::Error(wq::ErrorCode::kUsage, "mins: required for method " + std::string(wq::method_name(spec.method)));
    m = contiguous(mins.cast<py::buffer>(), g.groups * param_bytes, "mins", false);
  }
  const py::buffer_info o = contiguous(out, wq::element_count(shape) * wq::dtype_size(dtype), "output", true);
  const wq::AffineTensor tensor{static_cast<const std::uint8_t*>(c.ptr), static_cast<const std::byte*>(s.ptr),
                                m ? static_cast<const std::byte*>(m->ptr) : nullptr, spec.bits, g.stored_group_size,
                                spec.scale_dtype};
  SharedBackend& backend = backend_for(backend_kind);
  py::gil_scoped_release nogil;
  std::lock_guard<std::mutex> lock(backend.busy);
  backend.backend->dequantize(tensor, wq::MutableTensorView{"array", dtype, shape, static_cast<std::byte*>(o.ptr)});
}

}  // namespace

PYBIND11_MODULE(_wq, m) {
  m.doc() = "libwqcuda for Python; use the `wq` package, not this module.";
  m.attr("__version__") = wq::kVersion;
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const wq::Error& e) {
      raise_wq_error(e);
    }
  });
  m.def("set_error_types", &set_error_types);
  m.def("cuda_compiled", &wq::cuda_compiled);
  m.def("save", &save, py::arg("tensors"), py::arg("path"), py::arg("spec"), py::arg("rules"), py::arg("all"),
        py::arg("keep_nonfinite"), py::arg("source_format"), py::arg("backend"), py::arg("progress"),
        py::arg("durable"));
  m.def("quantize_file", &quantize_file, py::arg("input"), py::arg("output"), py::arg("spec"), py::arg("rules"),
        py::arg("all"), py::arg("keep_nonfinite"), py::arg("backend"), py::arg("progress"), py::arg("format"));
  m.def("decode_file", &decode_file, py::arg("input"), py::arg("output"), py::arg("format"), py::arg("backend"),
        py::arg("progress"));
  m.def("verify", &verify, py::arg("path"), py::arg("progress"));
  wqpy::bind_tree(m);
  m.def("quantize", &quantize_array);
  m.def("dequantize", &dequantize_array);
  py::class_<Reader>(m, "Reader")
      .def(py::init<const std::string&>())
      .def("tensors", &Reader::tensors)
      .def("metadata", &Reader::metadata)
      .def("read_into", &Reader::read_into);
}
