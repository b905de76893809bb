// Element types of checkpoint tensors, named as safetensors names them.
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>
#include "wq/export.h"

namespace wq {

/// Element type of a tensor. Values are stable.
enum class DType : int {
  kF64, kF32, kF16, kBF16,
  kI64, kI32, kI16, kI8, kU8, kBool,
};

/// Size of one element in bytes (BOOL: 1).
WQ_API std::size_t dtype_size(DType dtype) noexcept;

/// safetensors name of the dtype ("F32", "BF16", "BOOL", ...).
WQ_API std::string_view dtype_name(DType dtype) noexcept;

/// Parses a safetensors dtype name; std::nullopt for names wq does not handle.
WQ_API std::optional<DType> parse_dtype(std::string_view name) noexcept;

/// True for F64, F32, F16 and BF16: the types wq can quantize or cast.
WQ_API bool is_floating(DType dtype) noexcept;

}  // namespace wq
