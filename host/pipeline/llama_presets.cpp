#include "pipeline/llama_presets.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <numeric>

#include "container/container_checkpoint.h"
#include "formats/gguf_checkpoint.h"
#include "wq/error.h"
#include "wq/pipeline.h"
#include "wq/quant_spec.h"

namespace wq::detail {
namespace {

namespace ggml = codec::ggml;
using ggml::Type;

// llama.cpp's LLAMA_FTYPE_MOSTLY_* values of the presets without an importance matrix.
enum class FileType : std::uint32_t {
  kQ4_0 = 2, kQ4_1 = 3, kQ8_0 = 7, kQ5_0 = 8, kQ5_1 = 9, kQ2_K = 10, kQ3_K_S = 11, kQ3_K_M = 12, kQ3_K_L = 13,
  kQ4_K_S = 14, kQ4_K_M = 15, kQ5_K_S = 16, kQ5_K_M = 17, kQ6_K = 18, kQ2_K_S = 21,
};

struct Preset {
  const char* name;
  FileType file_type;
  Type base;  // llama_ftype_get_default_type()
};

constexpr Preset kPresets[] = {
    {"Q2_K", FileType::kQ2_K, Type::kQ2_K},       {"Q2_K_S", FileType::kQ2_K_S, Type::kQ2_K},
    {"Q3_K_S", FileType::kQ3_K_S, Type::kQ3_K},   {"Q3_K_M", FileType::kQ3_K_M, Type::kQ3_K},
    {"Q3_K_L", FileType::kQ3_K_L, Type::kQ3_K},   {"Q4_0", FileType::kQ4_0, Type::kQ4_0},
    {"Q4_1", FileType::kQ4_1, Type::kQ4_1},       {"Q4_K_S", FileType::kQ4_K_S, Type::kQ4_K},
    {"Q4_K_M", FileType::kQ4_K_M, Type::kQ4_K},   {"Q5_0", FileType::kQ5_0, Type::kQ5_0},
    {"Q5_1", FileType::kQ5_1, Type::kQ5_1},       {"Q5_K_S", FileType::kQ5_K_S, Type::kQ5_K},
    {"Q5_K_M", FileType::kQ5_K_M, Type::kQ5_K},   {"Q6_K", FileType::kQ6_K, Type::kQ6_K},
    {"Q8_0", FileType::kQ8_0, Type::kQ8_0},
};

const Preset* find_preset(std::string_view name) {
  std::string upper(name);
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (const Preset& p : kPresets) {
    if (upper == p.name) return &p;
  }
  return nullptr;
}

enum class Category { kTokenEmbd, kAttnQ, kAttnV, kAttnK, kAttnOutput, kFfnUp, kFfnGate, kFfnDown, kOutput, kOther };

bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

// llama.cpp's tensor_get_category(); attn_qkv and attn_kv_b count as attn_v (category_is_attn_v).
Category category_of(const std::string& name) {
  if (name == "output.weight") return Category::kOutput;
  if (name == "token_embd.weight" || name == "per_layer_token_embd.weight") return Category::kTokenEmbd;
  if (contains(name, "attn_qkv.weight") || contains(name, "attn_kv_b.weight") || contains(name, "attn_v.weight")) {
    return Category::kAttnV;
  }
  if (contains(name, "attn_k.weight")) return Category::kAttnK;
  if (contains(name, "attn_q.weight")) return Category::kAttnQ;
  if (contains(name, "attn_output.weight")) return Category::kAttnOutput;
  if (contains(name, "ffn_up")) return Category::kFfnUp;
  if (contains(name, "ffn_gate")) return Category::kFfnGate;
  if (contains(name, "ffn_down")) return Category::kFfnDown;
  return Category::kOther;
}

// ggml_n_dims(): the dimensions up to the last ne that is not 1 (at least 1).
std::size_t ggml_dims(const Shape& shape) {
  std::size_t n = shape.size();  // ne is the shape reversed: its trailing 1s are leading here
  std::size_t leading_ones = 0;
  while (leading_ones < n && shape[leading_ones] == 1) ++leading_ones;
  return std::max<std::size_t>(1, n - leading_ones);
}

// llama.cpp's tensor_allows_quantization() for the names of the architectures wq meets.
bool allows_quantization(const TensorInfo& t) {
  if (!is_floating(t.dtype) || ggml_dims(t.shape) < 2) return false;
  const std::string& n = t.name;
  if (n.size() < 6 || n.compare(n.size() - 6, 6, "weight") != 0) return false;
  for (const char* kept : {"_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel",
                           "per_layer_model_proj", "ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight",
                           "indexer.q_proj.weight", "time_mix_", "attn_rel_b.weight", ".position_embd", "sam.pos_embd",
                           "sam.neck.", "sam.net_", ".rel_pos", ".patch_embd", ".patch_merger", "a.rvq.codebook",
                           "mm.a.code_embd"}) {
    if (contains(n, kept)) return false;
  }
  return n != "position_embd.weight" && n != "token_types.weight";
}

// The block index of "blk.N....", or -1 (llama.cpp's weight_name_comparer and layer_info).
int layer_of(const std::string& name) {
  if (name.rfind("blk.", 0) != 0) return -1;
  int layer = 0;
  std::size_t i = 4;
  if (i >= name.size() || !std::isdigit(static_cast<unsigned char>(name[i]))) return -1;
  while (i < name.size() && std::isdigit(static_cast<unsigned char>(name[i]))) layer = layer * 10 + (name[i++] - '0');
  return layer;
}

bool use_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

// A UINT32/INT32 value, or the first element of such an array (per-layer hyperparameters).
std::optional<std::uint32_t> u32_or_first(const GgufKvs& file, const std::string& key) {
  const GgufKv* kv = file.find(key);
  if (kv == nullptr) return std::nullopt;
  std::uint32_t v = 0;
  const bool scalar = kv->type == GgufValueType::kU32 || kv->type == GgufValueType::kI32;
  const bool array = kv->type == GgufValueType::kArray && kv->count > 0 &&
                     (kv->element_type == GgufValueType::kU32 || kv->element_type == GgufValueType::kI32);
  if (!scalar && !array) return std::nullopt;
  std::memcpy(&v, kv->value.data() + (array ? 12 : 0), 4);
  return v;
}

struct ModelFacts {
  std::string arch;
  int n_layer = 0;
  int n_gqa = 1;
  int n_expert = 1;
  bool is_70b = false;
};

ModelFacts facts_of(const CheckpointReader& reader, int ffn_down_count) {
  ModelFacts f;
  f.n_layer = ffn_down_count;
  const GgufKvs* gguf = gguf_kvs_of(reader);  // a GGUF's, or those a container made from one carries
  if (gguf == nullptr) return f;
  f.arch = gguf->string_value("general.architecture").value_or("");
  if (auto n = u32_or_first(*gguf, f.arch + ".block_count")) f.n_layer = static_cast<int>(*n);
  const auto heads = u32_or_first(*gguf, f.arch + ".attention.head_count");
  const auto kv_heads = u32_or_first(*gguf, f.arch + ".attention.head_count_kv");
  if (heads && kv_heads && *kv_heads != 0) f.n_gqa = static_cast<int>(*heads / *kv_heads);
  if (auto e = u32_or_first(*gguf, f.arch + ".expert_count")) f.n_expert = std::max(1, static_cast<int>(*e));
  // llama.cpp's load_hparams calls an 80-layer llama with grouped KV heads a 70B model.
  f.is_70b = f.arch == "llama" && f.n_layer == 80 && heads && kv_heads && *heads != *kv_heads;
  return f;
}

}  // namespace

std::string llama_preset_names() {
  std::string names;
  for (const Preset& p : kPresets) names += std::string(names.empty() ? "" : ", ") + p.name;
  return names;
}

bool is_llama_preset(std::string_view name) { return find_preset(name) != nullptr; }

LlamaPresetPlan plan_llama_preset(std::string_view name, const CheckpointReader& reader) {
  const Preset* preset = find_preset(name);
  if (preset == nullptr) {
    throw Error(ErrorCode::kUsage, "unknown llama-quantize preset '" + std::string(name) + "' (presets: " +
                                       llama_preset_names() + ")");
  }
  const FileType ftype = preset->file_type;
  const std::vector<TensorInfo>& tensors = reader.tensors();
  LlamaPresetPlan plan;
  plan.file_type = static_cast<std::uint32_t>(ftype);
  plan.types.assign(tensors.size(), std::nullopt);
  plan.reasons.assign(tensors.size(), "");

  int ffn_down_count = 0, attn_v_count = 0;
  bool tied_embeddings = true;
  for (const TensorInfo& t : tensors) {
    const Category c = category_of(t.name);
    ffn_down_count += c == Category::kFfnDown;
    attn_v_count += c == Category::kAttnV;
    if (c == Category::kOutput) tied_embeddings = false;
  }
  const ModelFacts model = facts_of(reader, ffn_down_count);
  const bool falcon = model.arch == "falcon";

  // llama-quantize walks the tensors sorted by layer, then by name; its counters follow that order.
  std::vector<std::size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    const int la = layer_of(tensors[a].name), lb = layer_of(tensors[b].name);
    return la != lb ? la < lb : tensors[a].name < tensors[b].name;
  });
  int i_attn_v = 0, i_ffn_down = 0;
  for (std::size_t index : order) {
    const TensorInfo& t = tensors[index];
    if (!allows_quantization(t)) continue;
    const Category c = category_of(t.name);
    Type type = preset->base;
    std::string why;
    if (c == Category::kOutput || (tied_embeddings && c == Category::kTokenEmbd)) {
      const std::uint64_t row = t.shape.back();
      if (falcon || row % ggml::layout_of(type).block_elements != 0) {
        type = Type::kQ8_0;
      } else if (type != Type::kQ8_0) {
        type = Type::kQ6_K;
      }
      why = "the output matrix";
    } else if (c == Category::kAttnV) {
      const bool more = use_more_bits(i_attn_v, attn_v_count);
      if (ftype == FileType::kQ2_K) {
        type = model.n_gqa >= 4 ? Type::kQ4_K : Type::kQ3_K;
      } else if (ftype == FileType::kQ2_K_S && model.n_gqa >= 4) {
        type = Type::kQ4_K;
      } else if (ftype == FileType::kQ3_K_M) {
        type = i_attn_v < 2 ? Type::kQ5_K : Type::kQ4_K;
      } else if (ftype == FileType::kQ3_K_L) {
        type = Type::kQ5_K;
      } else if ((ftype == FileType::kQ4_K_M || ftype == FileType::kQ5_K_M) && more) {
        type = Type::kQ6_K;
      } else if (ftype == FileType::kQ4_K_S && i_attn_v < 4) {
        type = Type::kQ5_K;
      }
      if (model.is_70b && (type == Type::kQ3_K || type == Type::kQ4_K)) type = Type::kQ5_K;
      if (model.n_expert == 8) type = Type::kQ8_0;
      why = "attn_v";
      ++i_attn_v;
    } else if (c == Category::kAttnK) {
      if (model.n_expert == 8) type = Type::kQ8_0;
      why = "attn_k of 8 experts";
    } else if (c == Category::kFfnDown) {
      const int i = model.n_expert > 1 ? layer_of(t.name) : i_ffn_down;
      const int n = model.n_layer;
      if (model.n_expert > 1 && (i < 0 || i >= n)) {
        throw Error(ErrorCode::kUsage, reader.path() + ": tensor '" + t.name + "' is not in a layer 0.." +
                                           std::to_string(n - 1) + ", which preset " + preset->name + " needs");
      }
      if (ftype == FileType::kQ2_K) {
        type = Type::kQ3_K;
      } else if (ftype == FileType::kQ2_K_S) {
        if (i < n / 8) type = Type::kQ4_K;
      } else if (ftype == FileType::kQ3_K_M) {
        type = i < n / 16 ? Type::kQ5_K : !falcon || use_more_bits(i, n) ? Type::kQ4_K : Type::kQ3_K;
      } else if (ftype == FileType::kQ3_K_L) {
        type = falcon ? Type::kQ4_K : Type::kQ5_K;
      } else if (ftype == FileType::kQ4_K_M) {
        if (falcon) {
          type = i < n / 16 ? Type::kQ6_K : use_more_bits(i, n) ? Type::kQ5_K : Type::kQ4_K;
        } else if (use_more_bits(i, n)) {
          type = Type::kQ6_K;
        }
      } else if (ftype == FileType::kQ5_K_M && use_more_bits(i, n)) {
        type = Type::kQ6_K;
      } else if (ftype == FileType::kQ4_K_S && !falcon && i < n / 8) {
        type = Type::kQ5_K;
      }
      why = "ffn_down of layer " + std::to_string(i);
      ++i_ffn_down;
    } else if (c == Category::kAttnOutput) {
      if (!falcon) {
        if (model.n_expert == 8) {
          if (ftype == FileType::kQ2_K || ftype == FileType::kQ3_K_S || ftype == FileType::kQ3_K_M ||
              ftype == FileType::kQ4_K_S || ftype == FileType::kQ4_K_M) {
            type = Type::kQ5_K;
          }
        } else if (ftype == FileType::kQ2_K) {
          type = Type::kQ3_K;
        } else if (ftype == FileType::kQ3_K_M) {
          type = Type::kQ4_K;
        } else if (ftype == FileType::kQ3_K_L) {
          type = Type::kQ5_K;
        }
      } else if (ftype == FileType::kQ3_K_L) {
        type = Type::kQ4_K;
      }
      why = "attn_output";
    }
    plan.types[index] = type;
    if (type != preset->base) plan.reasons[index] = std::string(ggml::type_name(type)) + " for " + why;
  }
  return plan;
}

}  // namespace wq::detail

namespace wq {

namespace {

// The method the user gave, which a ggml type replaces: its own arithmetic, or mse's search.
void refuse_method_without_ggml_form(Method method) {
  if (method != Method::kMinMax && method != Method::kMse) {
    throw Error(ErrorCode::kUsage, "method " + std::string(method_name(method)) +
                                       " does not apply to a ggml type, which fixes its own arithmetic (method mse "
                                       "searches within the layouts of Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0)");
  }
}

void apply_llama_preset(std::string_view preset, QuantizeOptions* options) {
  if (options->spec.method == Method::kMse) {
    throw Error(ErrorCode::kUsage, "method mse does not apply to a llama-quantize mix: mostly k-quants, whose "
                                   "reference quantizers already search; give the type Q4_0, Q4_1, Q5_0, Q5_1 or "
                                   "Q8_0 with it");
  }
  options->llama_preset = preset;
  for (char& c : options->llama_preset) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  // The report's header names the preset's base type; each tensor's own type is in the table.
  options->spec = *ggml_type_spec(options->llama_preset.substr(0, 4), options->spec);
}

}  // namespace

void choose_ggml_types(std::string_view type_or_preset, QuantizeOptions* options) {
  refuse_method_without_ggml_form(options->spec.method);
  if (const std::optional<QuantSpec> spec = ggml_type_spec(type_or_preset, options->spec)) {
    if (options->spec.method == Method::kMse && spec->method != Method::kGgml) {
      throw Error(ErrorCode::kUsage, "method mse does not apply to a float type: it searches within block types");
    }
    options->spec = *spec;
    options->llama_preset.clear();
    return;
  }
  if (!detail::is_llama_preset(type_or_preset)) {
    throw Error(ErrorCode::kUsage, "neither a ggml type wq writes (" + ggml_type_names() +
                                       ") nor a llama-quantize preset (" + detail::llama_preset_names() + ")");
  }
  apply_llama_preset(type_or_preset, options);
}

void choose_llama_preset(std::string_view preset, QuantizeOptions* options) {
  refuse_method_without_ggml_form(options->spec.method);
  if (!detail::is_llama_preset(preset)) {
    throw Error(ErrorCode::kUsage, "not a llama-quantize preset (" + detail::llama_preset_names() + ")");
  }
  apply_llama_preset(preset, options);
}

std::string llama_preset_names() { return detail::llama_preset_names(); }

bool is_llama_preset(std::string_view name) { return detail::is_llama_preset(name); }

}  // namespace wq
