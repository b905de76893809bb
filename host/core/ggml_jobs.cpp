#include "core/ggml_jobs.h"

#include <string>

#include "wq/codec/ggml_legacy_search.h"
#include "wq/error.h"

namespace wq::detail {

namespace ggml = codec::ggml;

namespace {

std::string label(std::string_view tensor) { return "tensor '" + std::string(tensor) + "'"; }

}  // namespace

ggml::TypeLayout ggml_block_layout(ggml::Type type, std::string_view tensor) {
  const ggml::TypeLayout layout = ggml::layout_of(type);
  if (!layout.quantized) {
    const char* name = ggml::type_name(type);
    throw Error(ErrorCode::kUsage, label(tensor) + ": " +
                                       (*name ? std::string(name) : "type id " + std::to_string(static_cast<unsigned>(type))) +
                                       " is not a ggml block type (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K ... Q6_K)");
  }
  return layout;
}

ggml::TypeLayout check_ggml_quantize_job(const GgmlQuantizeJob& job) {
  const ggml::TypeLayout layout = ggml_block_layout(job.type, job.input.name);
  if (!is_floating(job.input.dtype)) {
    throw Error(ErrorCode::kUsage, label(job.input.name) + ": ggml block types hold floating tensors, not " +
                                       std::string(dtype_name(job.input.dtype)));
  }
  if (job.search && !ggml::has_mse_search(job.type)) {
    throw Error(ErrorCode::kUsage, label(job.input.name) + ": wq's mse search has no " + ggml::type_name(job.type) +
                                       " form: it searches the legacy types Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 (a "
                                       "k-quant's reference quantizer already fits each sub-block by least squares)");
  }
  const std::uint64_t row = job.input.shape.empty() ? 1 : job.input.shape.back();
  if (row % layout.block_elements != 0) {
    throw Error(ErrorCode::kUsage, label(job.input.name) + ": its innermost dimension (" + std::to_string(row) +
                                       ") is not a multiple of " + ggml::type_name(job.type) + "'s block of " +
                                       std::to_string(layout.block_elements) +
                                       " (ggml blocks never cross a row)");
  }
  return layout;
}

ggml::TypeLayout check_ggml_decode_job(const GgmlDecodeJob& job) {
  const ggml::TypeLayout layout = ggml_block_layout(job.type, job.out.name);
  if (!is_floating(job.out.dtype)) {
    throw Error(ErrorCode::kUsage, label(job.out.name) + ": ggml blocks decode to a floating dtype, not " +
                                       std::string(dtype_name(job.out.dtype)));
  }
  if (job.out.numel() % layout.block_elements != 0) {
    throw Error(ErrorCode::kUsage, label(job.out.name) + ": " + std::to_string(job.out.numel()) +
                                       " elements are not whole " + ggml::type_name(job.type) + " blocks");
  }
  return layout;
}

std::uint64_t ggml_bytes(const ggml::TypeLayout& layout, std::uint64_t elements) {
  return elements / layout.block_elements * layout.block_bytes;
}

}  // namespace wq::detail
