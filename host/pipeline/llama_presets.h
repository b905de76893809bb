// llama-quantize's file types ("Q4_K_M", "Q5_K_S", "Q8_0", ...): which ggml type each tensor of
// a model gets, chosen as llama.cpp's llama_tensor_get_type() chooses it from the tensor's name,
// its layer and the model's metadata (docs/gguf.md §3.1 lists the rules). Without an importance
// matrix, so the types that need one (IQ*) are not offered.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "wq/checkpoint.h"
#include "wq/codec/ggml_blocks.h"

namespace wq::detail {

struct LlamaPresetPlan {
  std::uint32_t file_type = 0;  ///< LLAMA_FTYPE_MOSTLY_*, for general.file_type
  /// Per tensor of the checkpoint, in its order: the type llama-quantize picks (before the
  /// row-size fallback), or nullopt for a tensor it keeps as it is (1-d, norms, ...).
  std::vector<std::optional<codec::ggml::Type>> types;
  /// Per tensor: why it got more bits than the preset's base type ("" when it did not).
  std::vector<std::string> reasons;
};

/// The preset names wq knows, for messages: "Q2_K, Q2_K_S, Q3_K_S, ...".
std::string llama_preset_names();

/// Whether `name` (any case) is a preset name.
bool is_llama_preset(std::string_view name);

/// The plan of preset `name` for the tensors of `reader` (names, shapes; the GGUF metadata
/// where the input is GGUF: general.architecture, its block_count, head counts and
/// expert_count). Throws Error(kUsage) for an unknown name.
LlamaPresetPlan plan_llama_preset(std::string_view name, const CheckpointReader& reader);

}  // namespace wq::detail
