// Writing a whole small file so that it is never seen half-written, as the library writes its
// own outputs: for the reports and configs that a caller writes beside them.
#pragma once

#include <string>
#include <string_view>
#include "wq/export.h"

namespace wq {

/// Writes `bytes` to a temporary file beside `path`, fsyncs it, renames it to `path` and fsyncs
/// the folder. Throws Error(kOutput) naming `path` (folder missing or unwritable, disk full);
/// then `path` is as it was.
WQ_API void write_file_atomically(const std::string& path, std::string_view bytes);

}  // namespace wq
