// wq::Error — the one error type of libwqcuda.
//
// Every failure the library can report is thrown as wq::Error: a machine-readable code plus a
// message that names the file and, where there is one, the tensor. The library never prints and
// never exits the process; the CLI maps codes to exit statuses (see README, "Exit status").
#pragma once

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>
#include "wq/export.h"

namespace wq {

/// What kind of failure an Error reports. Values are stable: wq-gpu derives its exit status
/// from them.
enum class ErrorCode : int {
  kUsage = 2,        ///< invalid argument or option (bits outside 1..8, group size 0, ...)
  kInputMissing = 3, ///< an input file does not exist or cannot be opened/read
  kBadFormat = 4,    ///< an input is not a valid checkpoint/container (truncated, overlapping, ...)
  kBadData = 5,      ///< tensor values cannot be encoded (NaN/Inf, range overflow, F16 overflow)
  kOutput = 6,       ///< the output cannot be written (unwritable folder, disk full, same as input)
  kIntegrity = 7,    ///< a container's checksum or metadata does not match its data
  kUnsupported = 8,  ///< valid input, but a feature this build does not have (e.g. no CUDA)
  kInterrupted = 130,///< the operation was cancelled (SIGINT/SIGTERM)
  kInternal = 1,     ///< a bug in wq
};

/// A setting of the library's API that would avoid an error, for the caller to name in its own
/// terms (wq-gpu as a flag, the Python package as a keyword argument): the message itself names
/// no caller's option. `option` is one of these stable ids:
/// - "keep_nonfinite": QuantizeOptions::keep_nonfinite = true
/// - "allow_requantize": QuantizeOptions::allow_requantize = true
/// - "keep": a TensorRule that keeps the tensor as it is
/// - "scale_dtype_f32": QuantSpec::scale_dtype = ScaleDType::kF32
/// - "method_bf16": QuantSpec::method = Method::kBf16
/// - "ggml_type": a ggml type for the tensor (choose_ggml_types())
/// - "ignore": PackQuantizedScheme::ignore (`value`: the module's glob)
/// - "group_size": a PackQuantizedScheme::group_size that divides the columns
/// - "channel": PackQuantizedScheme::group_size = 0 (one group per row)
/// - "max_expanded_view_bytes": a larger ReadOptions::max_expanded_view_bytes
/// - "gguf_long_names": QuantizeOptions::gguf_long_names = true
/// - "gpu_memory": a larger BackendOptions GPU memory budget
/// - "backend_cpu": the CPU backend
/// - "copy_unreadable": TreeOptions::copy_unreadable = true
struct ErrorHint {
  std::string option;  ///< one of the ids above
  std::string value;   ///< the option's value where it takes one ("ignore": the glob), else empty
};

/// Thrown by every libwqcuda function that fails. Thread-safe to copy; what() is the
/// human-readable message, hints() the settings that would avoid it (in the message's order).
class WQ_API Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message, std::vector<ErrorHint> hints = {})
      : std::runtime_error(message), code_(code), hints_(std::move(hints)) {}
  ErrorCode code() const noexcept { return code_; }
  const std::vector<ErrorHint>& hints() const noexcept { return hints_; }

 private:
  ErrorCode code_;
  std::vector<ErrorHint> hints_;
};

/// Short stable name of an error code ("usage", "bad-format", ...), for JSON reports.
WQ_API const char* error_code_name(ErrorCode code) noexcept;

}  // namespace wq
