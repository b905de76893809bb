#include "core/packed_jobs.h"

#include <cmath>
#include <string>

#include "wq/error.h"

namespace wq::detail {

namespace {

std::string label(std::string_view tensor) { return "tensor '" + std::string(tensor) + "'"; }


}  // namespace

PackedGeometry packed_geometry(std::uint64_t rows, std::uint64_t cols, int bits, std::uint64_t group_size) {
  PackedGeometry g;
  g.rows = rows;
  g.cols = cols;
  g.group_size = group_size == 0 ? cols : group_size;
  g.groups_per_row = g.group_size == 0 ? 0 : cols / g.group_size;
  g.words_per_row = codec::ct::packed_words(cols, bits);
  g.zero_point_rows = codec::ct::packed_words(rows, bits);
  return g;
}

PackedGeometry check_pack_quantize_job(const PackQuantizeJob& job) {
  const TensorView& in = job.input;
  if (in.dtype != DType::kF32 && in.dtype != DType::kF16 && in.dtype != DType::kBF16) {
    throw Error(ErrorCode::kUsage, label(in.name) + ": compressed-tensors quantizes F32, F16 and BF16 weights, not " +
                                       std::string(dtype_name(in.dtype)));
  }
  if (in.shape.size() != 2) {
    throw Error(ErrorCode::kUsage, label(in.name) + ": compressed-tensors packs 2-D weights [out, in], not " +
                                       std::to_string(in.shape.size()) + "-D tensors");
  }
  if (job.bits < 1 || job.bits > 8) {
    throw Error(ErrorCode::kUsage, label(in.name) + ": " + std::to_string(job.bits) + " bits; 1 to 8 are possible");
  }
  const std::uint64_t cols = in.shape[1];
  if (job.group_size != 0 && (cols % job.group_size != 0)) {
    throw Error(ErrorCode::kUsage, label(in.name) + ": its " + std::to_string(cols) +
                                       " columns are not whole groups of " + std::to_string(job.group_size) +
                                       " (compressed-tensors refuses a ragged last group)");
  }
  if (job.packed == nullptr || job.scales == nullptr || (!job.symmetric && job.zero_points == nullptr)) {
    throw Error(ErrorCode::kUsage, label(in.name) + ": an output buffer of the pack-quantized job is missing");
  }
  return packed_geometry(in.shape[0], cols, job.bits, job.group_size);
}

std::string weight_module(std::string_view name) {
  constexpr std::string_view kSuffix = ".weight";
  return std::string(name.ends_with(kSuffix) ? name.substr(0, name.size() - kSuffix.size()) : name);
}

codec::ct::Scalar packed_scalar(DType dtype) {
  return dtype == DType::kF16 ? codec::ct::Scalar::kF16 : dtype == DType::kBF16 ? codec::ct::Scalar::kBF16
                                                                              : codec::ct::Scalar::kF32;
}

void refuse_packed_nonfinite(std::string_view tensor, std::uint64_t index, float x) {
  throw Error(ErrorCode::kBadData, label(tensor) + ": element " + std::to_string(index) + " is " +
                                       (std::isnan(x) ? "NaN" : x > 0 ? "+infinity" : "-infinity") +
                                       " (compressed-tensors weights must be finite)");
}

void refuse_packed_range(std::string_view tensor, std::uint64_t group, DType dtype) {
  throw Error(ErrorCode::kBadData, label(tensor) + ": group " + std::to_string(group) + "'s range (max - min) is beyond " +
                                       std::string(dtype_name(dtype)) +
                                       ", so compressed-tensors' scale would be infinite; keep the module out or "
                                       "convert the model to bf16 first",
              {{"ignore", weight_module(tensor)}});
}

void refuse_packed_decode(std::string_view tensor, std::uint64_t index, float x, DType dtype) {
  throw Error(ErrorCode::kBadData, label(tensor) + ": element " + std::to_string(index) + " (" + std::to_string(x) +
                                       ") would decode beyond " + std::string(dtype_name(dtype)) +
                                       " in compressed-tensors' arithmetic (its code times the group's scale "
                                       "overflows); keep the module out or convert the model to bf16 first",
              {{"ignore", weight_module(tensor)}});
}

}  // namespace wq::detail
