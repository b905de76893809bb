// Writers of full-precision checkpoints (decode --to safetensors|pt|pdparams|npz).
//
// Every writer streams: it is created with the whole list of tensors (names, dtypes, shapes)
// so that any header can be written first, then receives each tensor's data once, in order,
// and its output appears only at finish() (temporary file, fsync, rename).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "wq/checkpoint.h"

namespace wq::detail {

/// Things some formats need to round-trip and others ignore.
struct WriterExtras {
  /// Paddle's StructuredToParameterName@@ table (structured name -> parameter name), kept
  /// from the source so `paddle.load(..., keep_name_table=True)` sees it again.
  std::vector<std::pair<std::string, std::string>> paddle_name_table;
};

class CheckpointWriter {
 public:
  virtual ~CheckpointWriter() = default;
  /// Appends the data of the next tensor (dense, row-major, little-endian, its dtype's size
  /// times its element count). Tensors come in the order given at creation.
  virtual void add(const std::byte* data) = 0;
  /// Completes and atomically publishes the file. Throws Error(kOutput) on I/O failure.
  virtual void finish() = 0;
};

/// `format`: "safetensors", "pt", "pdparams" or "npz". Throws Error(kUsage) for others and
/// Error(kUnsupported) when a tensor's dtype cannot be stored in that format.
std::unique_ptr<CheckpointWriter> make_checkpoint_writer(const std::string& format,
                                                         const std::string& path,
                                                         const std::vector<TensorInfo>& tensors,
                                                         const WriterExtras& extras);

}  // namespace wq::detail
