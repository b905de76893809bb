#include "wq/error.h"

namespace wq {

const char* error_code_name(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::kUsage: return "usage";
    case ErrorCode::kInputMissing: return "input-missing";
    case ErrorCode::kBadFormat: return "bad-format";
    case ErrorCode::kBadData: return "bad-data";
    case ErrorCode::kOutput: return "output";
    case ErrorCode::kIntegrity: return "integrity";
    case ErrorCode::kUnsupported: return "unsupported";
    case ErrorCode::kInterrupted: return "interrupted";
    case ErrorCode::kInternal: return "internal";
  }
  return "internal";
}

}  // namespace wq
