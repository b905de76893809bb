// quantize_file(): a checkpoint in, a WQ container out, one bounded batch of tensors at a time.
#include <array>
#include <chrono>
#include <future>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>

#include "container/checksum.h"
#include "container/container_metadata.h"
#include "core/packed_jobs.h"
#include "formats/gguf_checkpoint.h"
#include "formats/gguf_writer.h"
#include "formats/paddle_reader.h"
#include "io/atomic_file.h"
#include "io/page_buffer.h"
#include "pipeline/input_checksum.h"
#include "container/container_checkpoint.h"
#include "pipeline/input_staging.h"
#include "pipeline/llama_presets.h"
#include "pipeline/output_path.h"
#include "pipeline/output_sink.h"
#include "wq/checkpoint.h"
#include "wq/codec/config.h"
#include "wq/error.h"
#include "wq/pipeline.h"
#include "wq/version.h"

namespace wq {
namespace {

using detail::PartLayout;

// Small tensors are encoded together (in parallel on the CPU, one launch on a GPU) up to this
// much input; a tensor at least this large runs alone, split inside the backend. Memory is
// then bounded by the largest tensor plus twice this budget (two batches in flight). Small
// batches keep encoding and writing overlapped: 16 MiB gave 0.24 s against 0.32 s with 64 MiB
// for a 420 MB file at 4 bits (bench/RESULTS.md).
constexpr std::uint64_t kBatchInputBytes = 16ull << 20;

bool has_nonfinite(const TensorView& view) {
  const std::uint64_t n = view.numel();
  for (std::uint64_t i = 0; i < n; ++i) {
    float x;
    switch (view.dtype) {
      case DType::kF64: {
        double d;
        std::memcpy(&d, view.data + 8 * i, 8);
        if (!std::isfinite(d)) return true;
        continue;
      }
      case DType::kF32: std::memcpy(&x, view.data + 4 * i, 4); break;
      default: {  // F16 and BF16: exponent all ones
        std::uint16_t h;
        std::memcpy(&h, view.data + 2 * i, 2);
        const bool f16 = view.dtype == DType::kF16;
        if (f16 ? (h & 0x7c00u) == 0x7c00u : (h & 0x7f80u) == 0x7f80u) return true;
        continue;
      }
    }
    if (!codec::is_finite(x)) return true;
  }
  return false;
}

// has_nonfinite() of tensor `index`, holding one view at a time: a view the reader had to
// build (a torch view's dense copy, an inflated .npz member) is given back at once, or
// planning would hold every one of them together (a broadcast view may take 256 MiB). A view
// into the file's mapping costs nothing held, and releasing it would fault its pages again.
bool has_nonfinite_once(CheckpointReader& reader, std::size_t index) {
  const TensorView view = reader.tensor(index);
  const bool found = has_nonfinite(view);
  const std::span<const std::byte> mapped = reader.mapped_bytes();
  const auto at = reinterpret_cast<std::uintptr_t>(view.data), begin = reinterpret_cast<std::uintptr_t>(mapped.data());
  if (at < begin || at - begin >= mapped.size()) reader.release(index);
  return found;
}

ContainerTensor plan_tensor(const TensorInfo& info, Encoding encoding, const QuantSpec& spec,
                            const PackQuantizedScheme& scheme) {
  ContainerTensor t;
  t.name = info.name;
  t.dtype = info.dtype;
  t.shape = info.shape;
  t.encoding = encoding;
  t.xxh3 = detail::kPendingChecksum;
  t.parts = encoding == Encoding::kPackQuantized ? detail::pack_quantized_part_names(info.name, scheme.symmetric)
                                                 : detail::part_names(info.name, encoding);
  if (encoding == Encoding::kPackQuantized) {  // parts_of() lays the parts out from these
    t.bits = scheme.bits;
    t.group_size = scheme.group_size;
    t.range = scheme.name() + (scheme.mse ? " mse" : "");
    t.data_dtype = info.dtype;
  } else if (has_codes(encoding)) {
    const GroupGeometry g = group_geometry(info.shape, spec);
    t.bits = spec.bits;
    t.group_size = g.stored_group_size;
    t.range = std::string(method_name(spec.method));
    t.scale_dtype = spec.scale_dtype;
  } else if (encoding == Encoding::kCast) {
    t.data_dtype = spec.method == Method::kBf16 ? DType::kBF16 : spec.method == Method::kGgml ? DType::kF32 : DType::kF16;
  } else if (encoding == Encoding::kGgml) {
    t.ggml_type = spec.ggml_type;
    t.data_dtype = DType::kU8;
    t.range = spec.ggml_mse ? "mse" : "";  // informational: the blocks decode the same either way
  } else {
    t.data_dtype = info.dtype;
  }
  for (const PartLayout& p : detail::parts_of(t)) {
    t.stored_bytes += element_count(p.shape) * dtype_size(p.dtype);
  }
  return t;
}

Error in_file(const std::string& path, const Error& e) {
  const std::string what = e.what();
  if (what.rfind(path, 0) == 0) return e;  // already names the file
  return Error(e.code(), path + ": " + what, e.hints());
}

// Small tensors are encoded together up to kBatchInputBytes of input; a larger tensor runs
// alone (and is split inside the backend).
std::size_t batch_end(const std::vector<TensorReport>& tensors, std::size_t first) {
  std::size_t end = first;
  std::uint64_t input = 0;
  while (end < tensors.size() && (end == first || input + tensors[end].input_bytes <= kBatchInputBytes)) {
    input += tensors[end].input_bytes;
    ++end;
  }
  return end;
}

// Whether tensor i is stored as the input holds it: raw tensors, and ggml blocks that a GGUF
// input or a WQ container stores in the same type (copied, not quantized again).
bool stored_as_in_input(const CheckpointReader& reader, const ContainerTensor& t, std::size_t i) {
  if (t.encoding == Encoding::kRaw) return true;
  return t.encoding == Encoding::kGgml && !detail::stored_ggml_blocks(reader, i, t.ggml_type).empty();
}

// The input's bytes of such a tensor.
const std::byte* input_bytes(CheckpointReader& reader, const ContainerTensor& t, std::size_t i) {
  if (t.encoding == Encoding::kRaw) return reader.tensor(i).data;
  return detail::stored_ggml_blocks(reader, i, t.ggml_type).data();
}

// The output buffer of a batch, left uninitialised: the encoders write every byte of their
// parts, and zeroing it first (std::vector's resize) took 6-9 % of a compressed-tensors export
// in perf (bench/RESULTS.md). In huge pages when large (io/page_buffer.h).
using Arena = detail::PageBuffer;

// Encodes tensors [first, end) into `arena` with one batched call per encoding; returns each
// tensor's stored bytes (in the arena, or the input itself, stored_as_in_input()) and fills in
// the reports' error statistics.

std::vector<const std::byte*> encode_batch(CheckpointReader& reader, Backend& backend,
                                           const std::vector<QuantSpec>& specs,
                                           const std::vector<ContainerTensor>& plan, std::vector<TensorReport>& reports,
                                           std::size_t first, std::size_t end, Arena* arena,
                                           detail::InputStaging* staging) {
  std::uint64_t bytes = 0, staged_bytes = 0;
  for (std::size_t i = first; i < end; ++i) {
    if (stored_as_in_input(reader, plan[i], i)) continue;
    bytes += plan[i].stored_bytes;
    if (staging != nullptr) staged_bytes += reports[i].input_bytes;
  }
  arena->reserve(bytes);
  if (staging != nullptr) staging->reserve(staged_bytes);
  std::uint64_t staged_at = 0;
  std::vector<QuantizeJob> quantize_jobs;
  std::vector<CastJob> cast_jobs;
  std::vector<GgmlQuantizeJob> ggml_jobs;
  std::vector<PackQuantizeJob> packed_jobs;
  std::vector<std::size_t> quantize_index, cast_index, ggml_index, packed_index;
  std::vector<const std::byte*> data(end - first, nullptr);
  std::uint64_t offset = 0;
  for (std::size_t i = first; i < end; ++i) {
    const ContainerTensor& t = plan[i];
    if (stored_as_in_input(reader, t, i)) {
      data[i - first] = input_bytes(reader, t, i);
      continue;
    }
    TensorView view = reader.tensor(i);
    if (staging != nullptr && staging->covers(view, staged_at)) {
      view = staging->stage(view, staged_at);
      staged_at += view.nbytes();
    }
    std::byte* base = arena->data() + offset;
    data[i - first] = base;
    offset += t.stored_bytes;
    if (has_codes(t.encoding)) {
      const QuantSpec& spec = specs[i];
      const GroupGeometry g = group_geometry(t.shape, spec);
      const std::size_t scale_bytes = spec.scale_dtype == ScaleDType::kF32 ? 4 : 2;
      AffineBuffers buffers{reinterpret_cast<std::uint8_t*>(base), base + g.code_bytes,
                            t.encoding == Encoding::kAffine ? base + g.code_bytes + g.groups * scale_bytes : nullptr};
      quantize_jobs.push_back(QuantizeJob{view, spec, buffers, {}});
      quantize_index.push_back(i);
    } else if (t.encoding == Encoding::kGgml) {
      ggml_jobs.push_back(GgmlQuantizeJob{view, t.ggml_type, reinterpret_cast<std::uint8_t*>(base), specs[i].ggml_mse, {}});
      ggml_index.push_back(i);
    } else if (t.encoding == Encoding::kPackQuantized) {
      // The parts in parts_of()'s order: packed, scale, [zero point,] shape.
      const std::vector<PartLayout> parts = detail::parts_of(t);
      std::vector<std::byte*> at;
      std::byte* p = base;
      for (const PartLayout& part : parts) {
        at.push_back(p);
        p += element_count(part.shape) * dtype_size(part.dtype);
      }
      const std::int64_t shape[2] = {static_cast<std::int64_t>(t.shape[0]), static_cast<std::int64_t>(t.shape[1])};
      std::memcpy(at.back(), shape, sizeof shape);  // weight_shape, little-endian int64
      packed_jobs.push_back(PackQuantizeJob{view, t.bits, parts.size() == 3, t.group_size, at[0], at[1],
                                            parts.size() == 4 ? at[2] : nullptr, specs[i].method == Method::kMse, {}});
      packed_index.push_back(i);
    } else {
      cast_jobs.push_back(CastJob{view, MutableTensorView{t.name, t.data_dtype, t.shape, base}, true, {}});
      cast_index.push_back(i);
    }
  }
  if (!quantize_jobs.empty()) backend.quantize(std::span<QuantizeJob>(quantize_jobs));
  if (!cast_jobs.empty()) backend.cast(std::span<CastJob>(cast_jobs));
  if (!ggml_jobs.empty()) backend.quantize_ggml(std::span<GgmlQuantizeJob>(ggml_jobs));
  if (!packed_jobs.empty()) backend.quantize_packed(std::span<PackQuantizeJob>(packed_jobs));
  for (std::size_t k = 0; k < packed_jobs.size(); ++k) reports[packed_index[k]].error = packed_jobs[k].stats;
  for (std::size_t k = 0; k < ggml_jobs.size(); ++k) reports[ggml_index[k]].error = ggml_jobs[k].stats;
  for (std::size_t k = 0; k < quantize_jobs.size(); ++k) reports[quantize_index[k]].error = quantize_jobs[k].stats;
  for (std::size_t k = 0; k < cast_jobs.size(); ++k) reports[cast_index[k]].error = cast_jobs[k].stats;
  return data;
}

// Every tensor's encoding, spec and container entry, decided before anything is written (the
// header, with placeholder checksums, is written up front).
struct TensorPlans {
  detail::ContainerMetadata metadata;
  std::vector<TensorReport> reports;
  std::vector<QuantSpec> specs;  ///< per tensor: the spec its encoding uses
  std::vector<PartLayout> parts;
  std::uint64_t total_input = 0;
  std::optional<std::uint32_t> preset_file_type;  ///< general.file_type of a llama-quantize preset
};

// llama-quantize's fallback for a tensor whose rows are not whole blocks of its type
// (tensor_type_fallback in llama.cpp's src/llama-quant.cpp): a k-quant becomes the legacy type
// of about its size, and rows that are not whole blocks of 32 either are stored as F16.
void fall_back_for_rows(const TensorInfo& info, QuantSpec* spec, Encoding* encoding, std::string* note) {
  namespace ggml = codec::ggml;
  const std::uint64_t row = info.shape.empty() ? 1 : info.shape.back();
  const ggml::Type wanted = spec->ggml_type;
  if (row % ggml::layout_of(wanted).block_elements == 0) return;
  ggml::Type fallback = wanted;
  switch (wanted) {
    case ggml::Type::kQ2_K:
    case ggml::Type::kQ3_K: fallback = ggml::Type::kQ4_0; break;
    case ggml::Type::kQ4_K: fallback = ggml::Type::kQ5_0; break;
    case ggml::Type::kQ5_K: fallback = ggml::Type::kQ5_1; break;
    case ggml::Type::kQ6_K: fallback = ggml::Type::kQ8_0; break;
    default: break;
  }
  const std::string why = "rows of " + std::to_string(row) + " are not whole " + ggml::type_name(wanted) +
                          " blocks of " + std::to_string(ggml::layout_of(wanted).block_elements);
  if (row % ggml::layout_of(fallback).block_elements == 0) {
    spec->ggml_type = fallback;
    *note = why + ": " + ggml::type_name(fallback) + " instead (as llama-quantize does)";
  } else {
    spec->method = Method::kFp16;
    *encoding = Encoding::kCast;
    *note = why + ": F16 instead (as llama-quantize does)";
  }
}

// What GGUF cannot hold, refused before anything is written (and in a dry run).
void check_gguf_tensor(const std::string& input, const ContainerTensor& t, const QuantizeOptions& options) {
  if (t.name.size() >= detail::GgufWriter::kMaxNameBytes && !options.gguf_long_names) {
    throw Error(ErrorCode::kUsage, input + ": " + detail::gguf_long_name_problem(t.name), {{"gguf_long_names", ""}});
  }
  if (has_codes(t.encoding)) {
    throw Error(ErrorCode::kUsage,
                input + ": tensor '" + t.name + "': GGUF files hold ggml types (" + ggml_type_names() +
                    "), not wq's " + std::string(encoding_name(t.encoding)) + " encoding",
                {{"ggml_type", ""}});
  }
  if (!detail::gguf_type_of(t)) {
    throw Error(ErrorCode::kUnsupported, input + ": tensor '" + t.name + "' is " + std::string(dtype_name(t.dtype)) +
                                             ", which GGUF has no type for (keep it out of the output, or "
                                             "write a WQ container)");
  }
  if (t.shape.size() > 4) {
    throw Error(ErrorCode::kUsage, input + ": tensor '" + t.name + "' has " + std::to_string(t.shape.size()) +
                                       " dimensions; GGUF holds at most 4");
  }
}

// What compressed-tensors cannot hold, refused before anything is written (and in a dry run).
void check_packed_tensor(const std::string& input, const TensorInfo& t, const PackQuantizedScheme& scheme) {
  const std::string module = detail::weight_module(t.name);
  if (t.dtype != DType::kF32 && t.dtype != DType::kF16 && t.dtype != DType::kBF16) {
    throw Error(ErrorCode::kUsage, input + ": tensor '" + t.name + "' is " + std::string(dtype_name(t.dtype)) +
                                       "; compressed-tensors quantizes bf16, fp16 and fp32 weights",
                {{"ignore", module}});
  }
  if (scheme.group_size != 0 && t.shape[1] % scheme.group_size != 0) {
    throw Error(ErrorCode::kUsage, input + ": tensor '" + t.name + "' has " + std::to_string(t.shape[1]) +
                                       " input columns, not whole groups of " + std::to_string(scheme.group_size) +
                                       ", which compressed-tensors refuses",
                {{"group_size", ""}, {"channel", ""}, {"ignore", module}});
  }
}

TensorPlans plan_tensors(CheckpointReader& reader, const QuantizeOptions& options, bool look_for_nonfinite) {
  TensorPlans plans;
  const std::vector<TensorInfo>& infos = reader.tensors();
  std::optional<detail::LlamaPresetPlan> preset;
  if (!options.llama_preset.empty()) {
    preset = detail::plan_llama_preset(options.llama_preset, reader);
    plans.preset_file_type = preset->file_type;
  }
  for (std::size_t i = 0; i < infos.size(); ++i) {
    TensorChoice choice = choose_encoding(infos[i], options);
    TensorReport r;
    // A preset decides every tensor that no rule does, as llama-quantize's mix does where no
    // --tensor-type override matches; which tensors it quantizes is its own rule too.
    if (preset && choice.rule == nullptr) {
      if (preset->types[i]) {
        choice.spec.method = Method::kGgml;
        choice.spec.ggml_type = *preset->types[i];
        choice.spec.ggml_mse = false;  // a preset is llama-quantize's mix, reference blocks throughout
        choice.encoding = Encoding::kGgml;
        if (!preset->reasons[i].empty()) r.note = preset->reasons[i] + " (preset " + options.llama_preset + ")";
      } else {
        choice.encoding = Encoding::kRaw;
      }
    }
    Encoding encoding = choice.encoding;
    if (choice.rule != nullptr) r.rule = choice.rule->text;
    if (encoding == Encoding::kGgml) {
      std::string fallback;
      fall_back_for_rows(infos[i], &choice.spec, &encoding, &fallback);
      if (!fallback.empty()) r.note = fallback;
    }
    const std::string_view stored = reader.stored_quantized_as(i);
    const bool same_blocks = encoding == Encoding::kGgml && stored == codec::ggml::type_name(choice.spec.ggml_type);
    if (same_blocks) r.note = "stored " + std::string(stored) + " blocks copied unchanged";
    if (encoding != Encoding::kRaw && !stored.empty() && !same_blocks && !options.allow_requantize) {
      throw Error(ErrorCode::kUsage, reader.path() + ": tensor '" + infos[i].name + "' is stored as " +
                                         std::string(stored) +
                                         " already; quantizing its decoded values again adds a second rounding",
                  {{"allow_requantize", ""}, {"keep", infos[i].name}});
    }
    if (encoding != Encoding::kRaw && look_for_nonfinite && options.keep_nonfinite && has_nonfinite_once(reader, i)) {
      encoding = Encoding::kRaw;
      r.note = "contains NaN or infinity: kept raw";
    }
    if (encoding == Encoding::kPackQuantized) check_packed_tensor(reader.path(), infos[i], options.pack_quantized);
    plans.metadata.tensors.push_back(plan_tensor(infos[i], encoding, choice.spec, options.pack_quantized));
    plans.specs.push_back(choice.spec);
    const ContainerTensor& t = plans.metadata.tensors.back();
    if (options.output_format == OutputFormat::kGguf) check_gguf_tensor(reader.path(), t, options);
    for (PartLayout& p : detail::parts_of(t)) plans.parts.push_back(std::move(p));
    r.name = t.name;
    r.dtype = t.dtype;
    r.shape = t.shape;
    r.encoding = encoding;
    r.bits = t.bits;
    r.group_size = t.group_size;
    if (has_codes(encoding)) {
      r.groups = group_geometry(t.shape, choice.spec).groups;
      r.range = t.range;
    } else if (encoding == Encoding::kPackQuantized) {
      r.groups = t.shape[0] * (t.group_size == 0 ? 1 : t.shape[1] / t.group_size);
      r.range = t.range;
    } else if (encoding == Encoding::kGgml) {
      r.groups = element_count(t.shape) / codec::ggml::layout_of(t.ggml_type).block_elements;
      r.range = std::string(codec::ggml::type_name(t.ggml_type)) + (t.range.empty() ? "" : " " + t.range);
    }
    r.input_bytes = element_count(t.shape) * dtype_size(t.dtype);
    r.output_bytes = t.stored_bytes;
    plans.total_input += r.input_bytes;
    plans.reports.push_back(std::move(r));
  }
  return plans;
}

}  // namespace

QuantizeReport plan_quantize(const std::string& input, const QuantizeOptions& options) {
  options.spec.validate();
  if (options.output_format == OutputFormat::kCompressedTensors) options.pack_quantized.validate();
  for (const TensorRule& rule : options.rules) {
    if (!rule.keep) rule.spec.validate();
  }
  std::unique_ptr<CheckpointReader> reader = open_checkpoint(input, options.read);
  TensorPlans plans = plan_tensors(*reader, options, /*look_for_nonfinite=*/false);
  QuantizeReport report;
  report.input = input;
  report.format = reader->format();
  report.input_bytes = reader->file_bytes();
  report.tensors = std::move(plans.reports);
  for (const TensorReport& t : report.tensors) report.output_bytes += t.output_bytes;
  return report;
}

namespace {

void validate_options(const QuantizeOptions& options) {
  options.spec.validate();
  if (options.output_format == OutputFormat::kCompressedTensors) options.pack_quantized.validate();
  for (const TensorRule& rule : options.rules) {
    if (!rule.keep) rule.spec.validate();
  }
}

// quantize_file() once its input is open (and neither sharded nor a container): `input` names
// it in messages and in the container's source.
QuantizeReport quantize_reader(CheckpointReader& reader_ref, const std::string& input, const std::string& output,
                               Backend& backend, const QuantizeOptions& options,
                               std::chrono::steady_clock::time_point started) {
  CheckpointReader* reader = &reader_ref;
  TensorPlans plans = plan_tensors(*reader, options, /*look_for_nonfinite=*/true);
  detail::ContainerMetadata& metadata = plans.metadata;
  metadata.producer = std::string("wq-gpu ") + kVersion;
  metadata.source = {std::filesystem::path(input).filename().string(), reader->format(), reader->file_bytes()};
  metadata.paddle_name_table = detail::paddle_name_table(*reader);
  if (const detail::GgufKvs* kvs = detail::gguf_kvs_of(*reader)) metadata.gguf_kv = detail::gguf_kv_records(*kvs);
  QuantizeReport report;
  report.input = input;
  report.output = output;
  report.format = reader->format();
  report.input_bytes = reader->file_bytes();
  report.backend = backend.description();
  report.tensors = std::move(plans.reports);
  const std::vector<PartLayout>& parts = plans.parts;
  const std::uint64_t total_input = plans.total_input;
  const std::size_t tensor_count = report.tensors.size();

  // A tensor named like another tensor's part ('w.__codes' next to a quantized 'w') cannot
  // share the container's namespace: say so before anything is written.
  const bool gguf = options.output_format == OutputFormat::kGguf;
  std::map<std::string, std::string> owner_of_part;
  for (const ContainerTensor& t : gguf ? std::vector<ContainerTensor>{} : metadata.tensors) {
    for (const std::string& part : t.parts) {
      const auto [it, inserted] = owner_of_part.emplace(part, t.name);
      if (!inserted) {
        throw Error(ErrorCode::kBadData, input + ": tensor '" + (part == t.name ? t.name : it->second) +
                                             "' has the name of a part of tensor '" +
                                             (part == t.name ? it->second : t.name) +
                                             "' in the container; rename one of them");
      }
    }
  }

  // A file that is one batch (most small files) has nothing to overlap and is unmapped as a
  // whole at the end: its pages are not released one by one, and it is written on this thread
  // rather than on one of its own (a thread and a madvise per tensor were a tenth of the time
  // of a 1 MiB file).
  const bool one_batch = batch_end(report.tensors, 0) == tensor_count;
  // A file of several batches reads what it quantizes with pread(), and hashes itself from the
  // same reads (input_staging.h); one batch (most small files) reads its mapping, as a
  // descriptor more per file would cost.
  std::optional<detail::InputStaging> staging;
  if (!one_batch) staging.emplace(*reader, options.checksum_input, options.cancel);
  if (staging && !staging->reads()) staging.reset();  // not mapped, or not openable again
  const bool staging_hashes = options.checksum_input && staging;
  std::optional<detail::InputChecksum> checksum;
  if (options.checksum_input && !staging_hashes) checksum.emplace(*reader, input, one_batch, options.cancel);

  // Shared with the commit handed to options.defer_commit, which may outlive this function.
  const auto out = std::make_shared<detail::AtomicFile>(output);
  std::unique_ptr<detail::OutputSink> sink;
  try {
    QuantizeOptions sink_options = options;
    if (plans.preset_file_type && !sink_options.gguf_file_type) sink_options.gguf_file_type = plans.preset_file_type;
    sink = gguf                                                        ? detail::make_gguf_sink(*out, metadata, *reader, sink_options)
           : options.output_format == OutputFormat::kCompressedTensors ? detail::make_safetensors_sink(*out, parts)
                                                                        : detail::make_container_sink(*out, metadata, parts);
  } catch (const Error& e) {
    throw in_file(input, e);
  }

  // Batches alternate between two arenas: while one batch is checksummed and written on a
  // second thread, the next one is encoded. Memory: two batches of outputs.
  std::array<Arena, 2> arenas;
  std::future<void> writing;
  std::pair<std::size_t, std::size_t> written{0, 0};  // the batch being written: [first, end)
  Progress progress;
  progress.bytes_total = total_input;
  // Waits for the batch being written (if on a thread) and accounts for it, once.
  const auto finish_writing = [&] {
    if (writing.valid()) writing.get();  // rethrows a write error
    if (written.first == written.second) return;
    for (std::size_t i = written.first; i < written.second; ++i) {
      // Raw tensors were written straight from the input; their pages can go now. (Releases
      // happen on this thread: readers need not be thread-safe.)
      if (stored_as_in_input(*reader, metadata.tensors[i], i)) reader->release(i);
      progress.bytes_done += report.tensors[i].input_bytes;
      progress.current_tensor = metadata.tensors[i].name;
    }
    if (options.durable) out->start_writeback();  // so that the final fsync has little left to wait for
    if (options.on_progress) options.on_progress(progress);
    written.first = written.second;
  };
  try {
    for (std::size_t next = 0, which = 0; next < tensor_count; which ^= 1) {
      detail::check_cancel(options.cancel);
      const std::size_t end = batch_end(report.tensors, next);
      std::vector<const std::byte*> data = encode_batch(*reader, backend, plans.specs, metadata.tensors, report.tensors,
                                                        next, end, &arenas[which], staging ? &*staging : nullptr);
      // An encoded tensor's input is not needed any more: drop its pages before the next batch.
      for (std::size_t i = next; i < end && !one_batch; ++i) {
        if (!stored_as_in_input(*reader, metadata.tensors[i], i)) reader->release(i);
      }
      finish_writing();
      written = {next, end};
      // Only a container records its parts' checksums (GGUF and compressed-tensors files have
      // none): hashing the output of an export cost 8 % of its time.
      auto write_batch = [&metadata, &sink, data = std::move(data), first = next, end,
                          checksums = options.output_format == OutputFormat::kContainer] {
        for (std::size_t i = first; i < end; ++i) {
          ContainerTensor& t = metadata.tensors[i];
          if (checksums) {
            detail::Xxh3 hash;
            hash.update(data[i - first], t.stored_bytes);
            t.xxh3 = hash.hex();
          }
          sink->append(i, data[i - first], t.stored_bytes);
        }
      };
      if (one_batch) {
        write_batch();
      } else {
        writing = std::async(std::launch::async, std::move(write_batch));
      }
      next = end;
    }
    finish_writing();
    if (checksum) report.input_xxh3 = checksum->finish();
    if (staging_hashes) report.input_xxh3 = staging->file_checksum();
    detail::check_cancel(options.cancel);
  } catch (const Error& e) {
    if (writing.valid()) writing.wait();  // never leave the writer running on freed buffers
    throw in_file(input, e);
  }

  sink->finish(metadata);
  report.output_bytes = sink->total_bytes();
  sink.reset();
  if (options.defer_commit) {
    options.defer_commit([out, durable = options.durable] { out->commit(durable); });
  } else {
    out->commit(options.durable);
  }
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return report;
}

}  // namespace

QuantizeReport quantize_file(const std::string& input, const std::string& output, Backend& backend,
                             const QuantizeOptions& options) {
  const auto started = std::chrono::steady_clock::now();
  validate_options(options);
  detail::check_output_path(input, output);
  std::unique_ptr<CheckpointReader> reader = open_checkpoint(input, options.read);
  // A sharded checkpoint becomes one output per shard and a new index, except GGUF: one file
  // holds every shard's tensors (as llama.cpp's converters merge them), read shard by shard.
  if (reader->format() == "safetensors-sharded" && options.output_format != OutputFormat::kGguf) {
    reader.reset();
    return quantize_sharded(input, output, backend, options);
  }
  return quantize_reader(*reader, input, output, backend, options, started);
}

QuantizeReport quantize_checkpoint(CheckpointReader& reader, const std::string& output, Backend& backend,
                                   const QuantizeOptions& options) {
  const auto started = std::chrono::steady_clock::now();
  validate_options(options);
  if (reader.format() == "safetensors-sharded" || reader.format() == "wq") {
    throw Error(ErrorCode::kUsage, reader.path() + ": quantize_checkpoint() takes one plain checkpoint (" +
                                       reader.format() + " given); use quantize_file()");
  }
  if (options.checksum_input && reader.mapped_bytes().empty()) {
    throw Error(ErrorCode::kUsage, reader.path() + ": an input checksum needs a file the reader maps whole");
  }
  return quantize_reader(reader, reader.path(), output, backend, options, started);
}

}  // namespace wq
