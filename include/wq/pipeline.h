// Whole-file operations: quantize a checkpoint into a WQ container, decode one back.
//
// Outputs appear only complete: they are written to a temporary file beside the output,
// flushed with fsync and renamed into place; on any error nothing is left behind and the
// input is never modified.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "wq/export.h"
#include "wq/backend.h"
#include "wq/checkpoint.h"
#include "wq/container.h"
#include "wq/quant_spec.h"

namespace wq {

/// Progress of a long operation, reported between tensors and chunks.
struct Progress {
  std::uint64_t bytes_done = 0;   ///< input bytes processed
  std::uint64_t bytes_total = 0;
  std::string current_tensor;
};

/// A per-tensor override: tensors whose name matches `pattern` (fnmatch(3) glob, no flags:
/// `*` also matches dots) are kept raw (`keep`) or encoded with `spec` instead of the default.
/// Rules choose how an eligible tensor is encoded, not whether: integer tensors, and 0-d/1-d
/// ones without QuantizeOptions::all, stay raw whatever the rules say.
struct TensorRule {
  std::string pattern;
  bool keep = false;
  QuantSpec spec;     ///< complete (the defaults with the rule's changes); ignored when keep
  std::string text;   ///< how the user wrote it, for reports ("*.mlp.*=bits:4,group:64")
};

/// What quantize_file() writes.
enum class OutputFormat {
  kContainer,  ///< a WQ container (docs/container-format.md)
  kGguf,       ///< a GGUF file (docs/gguf.md): every tensor a ggml type, a float cast or raw
  /// A safetensors file of compressed-tensors' `pack-quantized` weights, as vLLM loads them
  /// (docs/compressed-tensors.md): Linear weights quantized per QuantizeOptions::pack_quantized,
  /// every other tensor unchanged.
  kCompressedTensors,
};

/// How OutputFormat::kCompressedTensors quantizes: one of compressed-tensors' W4A16 / W8A16
/// schemes, symmetric or with a zero point, in groups along the input dimension or one group
/// per output row.
struct WQ_API PackQuantizedScheme {
  int bits = 4;               ///< 4 or 8: the widths vLLM's kernels take, packed alike by every compressed-tensors version
  bool symmetric = true;      ///< false: an integer zero point per group (the _ASYM schemes)
  std::uint64_t group_size = 128;  ///< 0: one group per output row (strategy "channel")
  /// false: compressed-tensors' own round-to-nearest parameters (its bytes); true: wq's
  /// least-error search within the format (PackQuantizeJob::search), never worse per group.
  bool mse = false;
  /// Module names (a weight's name without ".weight"; fnmatch(3) globs, `*` also matches dots)
  /// left unquantized besides the non-Linear weights, which never are (embeddings, norms,
  /// convolutions: see is_linear_weight()). Written to quantization_config.ignore.
  std::vector<std::string> ignore = {"lm_head", "*.mlp.gate", "*.shared_expert_gate"};

  /// compressed-tensors' preset name: "W4A16", "W4A16_ASYM", "W8A16", "W8A16_ASYM"; with a
  /// group size other than 128 the name is that of the preset the arithmetic follows.
  std::string name() const;
  /// Throws Error(kUsage) for bits other than 4 and 8.
  void validate() const;
  /// The scheme of a preset name (case-insensitive; see name()): its bits and symmetry, the
  /// rest at their defaults. Throws Error(kUsage) naming the four presets for any other name.
  static PackQuantizedScheme named(std::string_view name);
};

/// The `quantization_config` object that vLLM and transformers read from config.json for
/// `scheme` (docs/compressed-tensors.md §4), as JSON text: only the fields every
/// compressed-tensors release since 0.11 accepts (its QuantizationArgs forbids unknown keys).
WQ_API std::string pack_quantized_config_json(const PackQuantizedScheme& scheme);

/// Throws Error(kBadFormat) unless `config` is a readable JSON object (a model's config.json),
/// Error(kUsage) when it has a quantization_config already (the model is quantized).
WQ_API void check_model_config(const std::string& config);

/// Writes the model config `input` (config.json) to `output`, atomically, with
/// "quantization_config" added at its end; every other member is kept in its order. Checks as
/// check_model_config().
WQ_API void write_quantized_model_config(const std::string& input, const std::string& output,
                                  const PackQuantizedScheme& scheme);

/// Whether OutputFormat::kCompressedTensors quantizes `tensor`: a 2-D floating weight named
/// MODULE.weight whose module is not an embedding (its last name component contains "embed",
/// or is "wte" or "wpe") and matches no glob of scheme.ignore.
WQ_API bool is_linear_weight(const TensorInfo& tensor, const PackQuantizedScheme& scheme);

struct QuantizeOptions {
  QuantSpec spec;
  OutputFormat output_format = OutputFormat::kContainer;
  /// Tried in order for each tensor; the first whose pattern matches decides. Empty: every
  /// tensor gets `spec` (the output is then byte-identical to a run without rules).
  std::vector<TensorRule> rules;
  /// false (default): quantize floating tensors with >= 2 dimensions; keep 0-d and 1-d ones
  /// (biases, norms, scalars) raw. true: quantize every floating tensor of >= 2 elements.
  bool all = false;
  /// Keep tensors that contain NaN/Inf raw (with a note) instead of failing.
  bool keep_nonfinite = false;
  /// Called from the calling thread; may be empty.
  std::function<void(const Progress&)> on_progress;
  /// When set and it becomes true, the operation stops with Error(kInterrupted).
  const std::atomic<bool>* cancel = nullptr;
  /// quantize_file() or quantize_checkpoint() writing one file: empty (default), the output is fsynced and renamed into
  /// place before the call returns. Set, the call returns once every byte is written and hands
  /// this function the commit (fsync, rename, fsync of the folder), which it may run later on
  /// any thread; the output exists only as its temporary file until then, and a commit that is
  /// destroyed without running removes it. The commit throws wq::Error(kOutput) if the disk
  /// does. For callers with more files to write: the disk flushes one while the next is
  /// quantized (a flush took ~0.5 s on a cloud VM; bench/RESULTS.md, issue 17).
  std::function<void(std::function<void()> commit)> defer_commit;
  /// The output is fsynced (with its folder) before quantize_file() returns, so that it
  /// survives a crash of the machine. false: renamed into place without fsync, never seen
  /// half-written but not durable, as torch.save and pickle.dump write (faster by the disk's
  /// write time). Tree mode always writes durably: its journal records outputs on disk.
  bool durable = true;
  /// Also compute QuantizeReport::input_xxh3, the input file's checksum, as the file is read
  /// (cheaper than a pass of its own: the pages are read once).
  bool checksum_input = false;
  /// Limits on reading the input (open_checkpoint()).
  ReadOptions read;
  /// Quantize tensors that the input already stores quantized (a GGUF's Q4_K, ...) from their
  /// decoded values; without it such a tensor is an error (a second rounding, as
  /// llama-quantize's --allow-requantize warns).
  bool allow_requantize = false;
  /// OutputFormat::kCompressedTensors: the scheme.
  PackQuantizedScheme pack_quantized;
  /// GGUF output: write tensor names of 64 bytes or more, which stable-diffusion.cpp reads but
  /// ggml and llama.cpp refuse.
  bool gguf_long_names = false;
  /// llama-quantize's file type ("Q4_K_M", "Q5_K_S", "Q8_0", ...; docs/gguf.md §3.1): every
  /// weight that no rule matches gets the ggml type llama-quantize picks for it from its name,
  /// its layer and the GGUF metadata, and general.file_type records the preset. Empty: none.
  std::string llama_preset;
  /// GGUF output: general.file_type to record (llama.cpp's LLAMA_FTYPE, as a preset such as
  /// Q4_K_M sets it); unset: derived from the most common weight type.
  std::optional<std::uint32_t> gguf_file_type;
};

/// GGUF output's types by name, for `options`: a ggml type wq writes ("Q4_K", "q8_0", "F16",
/// ...; ggml_type_spec()) for every weight, or a llama-quantize preset ("Q4_K_M", "Q5_K_S",
/// ...; QuantizeOptions::llama_preset) whose types follow each weight's name and layer. Sets
/// options->spec (and llama_preset).
///
/// options->spec.method is the method the user asked for: minmax (the types' own arithmetic)
/// or mse (wq's search within the legacy types' layouts); any other is refused, and so is mse
/// with a preset or a float type. Throws Error(kUsage), without the name of the front end's
/// argument, which the caller puts first ("--type Q4_0: ...", "type='Q4_0': ...").
WQ_API void choose_ggml_types(std::string_view type_or_preset, QuantizeOptions* options);

/// As choose_ggml_types(), for a name that must be a llama-quantize preset: "Q8_0" here is
/// llama-quantize's file type (its mix), never the type for every weight.
WQ_API void choose_llama_preset(std::string_view preset, QuantizeOptions* options);

/// The llama-quantize presets that choose_ggml_types() knows, for messages ("Q2_K, Q2_K_S,
/// ..."), and whether `name` (any case) is one of them.
WQ_API std::string llama_preset_names();
WQ_API bool is_llama_preset(std::string_view name);

/// What happened to one tensor.
struct TensorReport {
  std::string name;
  DType dtype = DType::kF32;
  Shape shape;
  Encoding encoding = Encoding::kRaw;
  int bits = 0;
  std::uint64_t group_size = 0;
  std::uint64_t groups = 0;
  std::string range;     ///< has_codes(): how its ranges were chosen ("minmax", "symmetric", "mse"); ggml: its type, then " mse" where wq's search chose the blocks ("Q4_K", "Q4_0 mse")
  std::uint64_t input_bytes = 0;
  std::uint64_t output_bytes = 0;
  ErrorStats error;      ///< empty (count 0) for raw tensors
  std::string note;      ///< why a tensor was kept raw, when it was not by policy
  std::string rule;      ///< TensorRule::text of the rule that chose the encoding; empty: default
};

struct QuantizeReport {
  std::string input;
  std::string output;
  std::string format;
  std::uint64_t input_bytes = 0;   ///< size of the input file
  std::uint64_t output_bytes = 0;  ///< size of the output file
  std::string input_xxh3;          ///< XXH3-64 of the input file (16 hex digits) with checksum_input
  double seconds = 0.0;
  std::string backend;
  std::vector<TensorReport> tensors;
};

/// The error of a report's encoded tensors in a few numbers, as wq-gpu's tables show them.
struct ErrorSummary {
  std::size_t encoded = 0;  ///< tensors with an error measurement
  double sqnr_min_db = 0, sqnr_median_db = 0;  ///< over those; +inf where exact, 0 when none
  double max_abs_error = 0;
};
WQ_API ErrorSummary summarise_errors(const QuantizeReport& report);

/// Quantizes the checkpoint at `input` into a WQ container (or, with OutputFormat::kGguf, a
/// GGUF file) at `output`. Throws wq::Error; on error no output exists. `output` must differ
/// from `input`.
WQ_API QuantizeReport quantize_file(const std::string& input, const std::string& output,
                             Backend& backend, const QuantizeOptions& options);

/// quantize_file() for a checkpoint that is already open, from any CheckpointReader (one over
/// tensors in memory, say): its path() names it in messages and as the container's source file,
/// its format() as the source format. Not for sharded indexes or containers (Error(kUsage)).
WQ_API QuantizeReport quantize_checkpoint(CheckpointReader& reader, const std::string& output, Backend& backend,
                                   const QuantizeOptions& options);

/// Quantizes a sharded safetensors checkpoint (its *.index.json) into one container per shard,
/// named NAME.wq.safetensors beside `output`, and a new index at `output` (which must end in
/// .index.json). quantize_file() calls this for index inputs. All or nothing: containers
/// already written are removed when a later shard fails.
WQ_API QuantizeReport quantize_sharded(const std::string& index, const std::string& output, Backend& backend,
                                const QuantizeOptions& options);

struct DecodeOptions {
  /// "safetensors", "pt", "pdparams" or "npz"; empty: the source's own format, as the
  /// container records it (safetensors when it was safetensors or unknown).
  std::string format;
  std::function<void(const Progress&)> on_progress;
  const std::atomic<bool>* cancel = nullptr;
};

/// Decodes the WQ container at `input` into a checkpoint at `output` holding every tensor with
/// its original name, dtype and shape, in options.format. Checksums are verified first.
WQ_API void decode_file(const std::string& input, const std::string& output, Backend& backend,
                 const DecodeOptions& options);

/// The decode format that gives back the source's kind of file ("pt" for "torch", ...).
WQ_API std::string output_format_of_source(const std::string& source_format);

/// The encoding the default policy chooses for a tensor (see QuantizeOptions::all), rules
/// included.
WQ_API Encoding planned_encoding(const TensorInfo& tensor, const QuantizeOptions& options);

/// What quantize_file() will do with one tensor: its encoding, the spec used when it is
/// encoded, and the rule that decided (nullptr: the default policy).
struct TensorChoice {
  Encoding encoding = Encoding::kRaw;
  QuantSpec spec;
  const TensorRule* rule = nullptr;  ///< points into QuantizeOptions::rules
};
WQ_API TensorChoice choose_encoding(const TensorInfo& tensor, const QuantizeOptions& options);

/// The plan of quantize_file() without writing anything: the report it would give, with each
/// tensor's encoding, rule and stored bytes; output_bytes is the sum of stored tensor bytes
/// (the container's JSON header, typically a few KiB, is not counted) and there are no error
/// statistics. Tensors with NaN/Inf are not looked for (keep_nonfinite is not applied).
/// Throws wq::Error like quantize_file() for inputs that cannot be read.
WQ_API QuantizeReport plan_quantize(const std::string& input, const QuantizeOptions& options);

}  // namespace wq
