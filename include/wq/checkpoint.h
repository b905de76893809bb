// Reading checkpoints: one tensor at a time, as views into a memory-mapped file.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "wq/export.h"
#include "wq/tensor.h"

namespace wq {

/// Name, dtype and shape of a tensor of a checkpoint.
struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  Shape shape;
};

/// One metadata pair of a file, for display (a GGUF's key-value pairs): its key, its type as
/// the format names it ("UINT32", "STRING", "ARRAY[STRING]"), and its value as text: numbers
/// and booleans as they are, strings quoted (bytes that are not UTF-8 or not printable as
/// \xNN, cut after 120 characters with "..."), arrays by their length alone.
struct MetadataEntry {
  std::string key;
  std::string type;
  std::string value;
};

/// A checkpoint opened for reading. Tensors are listed in the file's own order. Views stay
/// valid until release() of that tensor or destruction. Not thread-safe for release(); views
/// may be read from several threads at once.
class WQ_API CheckpointReader {
 public:
  virtual ~CheckpointReader() = default;

  virtual const std::string& path() const noexcept = 0;
  /// "safetensors", "wq" (a WQ container), ...
  virtual const std::string& format() const noexcept = 0;
  virtual std::uint64_t file_bytes() const noexcept = 0;
  virtual const std::vector<TensorInfo>& tensors() const noexcept = 0;

  /// A view of tensor `index`'s data (dense, row-major, possibly unaligned).
  virtual TensorView tensor(std::size_t index) = 0;
  /// Tells the reader tensor `index` will not be read again, so its pages can leave memory.
  virtual void release(std::size_t index) = 0;

  /// For a tensor the file stores in a ggml block type (a quantized GGUF tensor), that type's
  /// name ("Q4_K"): tensor() then gives its decoded float32 values, and quantizing it again
  /// adds a second rounding. Empty for every other tensor.
  virtual std::string_view stored_quantized_as(std::size_t index) const {
    (void)index;
    return {};
  }

  /// The file's own metadata pairs in its order, for display: a GGUF's, or those a WQ container
  /// made from a GGUF carries; empty for the other formats.
  virtual std::vector<MetadataEntry> metadata() const { return {}; }

  /// The whole file as the reader has it mapped, for a checksum of the input that shares the
  /// reader's pages; empty where the reader does not map the file whole (zip formats).
  virtual std::span<const std::byte> mapped_bytes() const noexcept { return {}; }
};

/// Limits on what reading a checkpoint may cost. Every reader keeps its memory within a small
/// multiple of the file's size plus fixed buffers; what a file may legitimately expand to
/// beyond that is bounded here.
struct ReadOptions {
  /// Default of max_expanded_view_bytes: 256 MiB.
  static constexpr std::uint64_t kDefaultMaxExpandedViewBytes = 256ull << 20;
  /// Largest dense copy of a PyTorch view that is larger than the storage bytes it reads (a
  /// broadcast: stride 0 or overlapping strides, as `expand()` makes). Opening a checkpoint
  /// with a larger one throws Error(kUnsupported) naming the tensor.
  std::uint64_t max_expanded_view_bytes = kDefaultMaxExpandedViewBytes;
};

/// Opens a checkpoint, recognising its format by content (never by name). Throws
/// Error(kInputMissing) when it cannot be opened, Error(kBadFormat) when it is not a valid
/// checkpoint of a supported format (the message lists the supported formats), and
/// Error(kUnsupported) when it exceeds a limit of `options`.
WQ_API std::unique_ptr<CheckpointReader> open_checkpoint(const std::string& path, const ReadOptions& options = {});

/// What a file is, judged by content with the tests open_checkpoint() makes, but without
/// parsing it: cheap enough to run on every file of a model folder.
enum class FileKind {
  kOther,       ///< not a checkpoint (config.json, tokenizer, README, a zip of something else)
  kCheckpoint,  ///< safetensors, .pt/.pth (zip with a data.pkl, or legacy), .pdparams, .npy/.npz, GGUF
  kShardIndex,  ///< a sharded safetensors checkpoint's *.index.json
  kContainer,   ///< a WQ container (already quantized)
};

/// Classifies the file at `path`. Throws Error(kInputMissing) when it cannot be read. A file
/// classified as a checkpoint may still fail open_checkpoint() (truncated, hostile, ...).
WQ_API FileKind classify_file(const std::string& path);

/// Whether the file at `path` starts with the GGUF magic (false when it cannot be read).
WQ_API bool is_gguf_file(const std::string& path);

/// The shard files that a sharded safetensors checkpoint's index (*.index.json) names, relative
/// to its folder, in the order of first use. Throws Error(kInputMissing) or Error(kBadFormat).
WQ_API std::vector<std::string> shard_files(const std::string& index);

}  // namespace wq
