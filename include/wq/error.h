// wq::Error — the one error type of libwqcuda.
//
// Every failure the library can report is thrown as wq::Error: a machine-readable code plus a
// message that names the file and, where there is one, the tensor. The library never prints and
// never exits the process; the CLI maps codes to exit statuses (see README, "Exit status").
#pragma once

#include <stdexcept>
#include <string>

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

/// Thrown by every libwqcuda function that fails. Thread-safe to copy; what() is the full
/// human-readable message.
class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const noexcept { return code_; }

 private:
  ErrorCode code_;
};

/// Short stable name of an error code ("usage", "bad-format", ...), for JSON reports.
const char* error_code_name(ErrorCode code) noexcept;

}  // namespace wq
