// make_checkpoint_writer(): the table of output formats.
#include <set>

#include "formats/format_writers.h"

namespace wq::detail {

std::unique_ptr<CheckpointWriter> make_checkpoint_writer(const std::string& format,
                                                         const std::string& path,
                                                         const std::vector<TensorInfo>& tensors,
                                                         const WriterExtras& extras) {
  // Every format keys tensors by name; a duplicate would silently drop one in most of them.
  std::set<std::string_view> names;
  for (const TensorInfo& t : tensors) {
    if (!names.insert(t.name).second) {
      throw Error(ErrorCode::kBadFormat, path + ": two tensors are named '" + t.name + "'");
    }
  }
  if (format == "safetensors") return make_safetensors_checkpoint_writer(path, tensors);
  if (format == "pt") return make_pt_writer(path, tensors);
  if (format == "pdparams") return make_pdparams_writer(path, tensors, extras);
  if (format == "npz") return make_npz_writer(path, tensors);
  throw Error(ErrorCode::kUsage, "unknown output format '" + format + "' (supported: safetensors, pt, pdparams, npz)");
}

}  // namespace wq::detail
