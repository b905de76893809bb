// Paddle .pdparams (paddle.save): a pickle of numpy arrays (formats.md §4).
//
// Protocols 2 to 5; the StructuredToParameterName@@ name table is kept aside (for writing a
// .pdparams back); UnpackBigParamInfor@@ slices are concatenated back into their tensor;
// nested saves' (name, ndarray) pairs are tensors. numpy has no bfloat16, so Paddle stores
// bf16 weights as uint16: every uint16 array is read as BF16.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "wq/checkpoint.h"

namespace wq::detail {

/// Reader of a pickle of numpy arrays; the name table, when present, is available from
/// paddle_name_table().
std::unique_ptr<CheckpointReader> open_paddle(const std::string& path);

/// The StructuredToParameterName@@ table of a reader made by open_paddle (empty otherwise).
std::vector<std::pair<std::string, std::string>> paddle_name_table(const CheckpointReader& reader);

/// True when the bytes start like a pickle (PROTO 2..5).
bool looks_like_pickle(const std::byte* data, std::size_t size);

}  // namespace wq::detail
