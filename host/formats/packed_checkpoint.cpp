#include "formats/packed_checkpoint.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cpu/element_io.h"
#include "wq/codec/pack_quantized.h"
#include "wq/error.h"

namespace wq::detail {
namespace {

namespace ct = codec::ct;
namespace fs = std::filesystem;

const std::string kPacked = ".weight_packed";

// num_bits of the quantization_config in the config.json beside `path`; nullopt without one.
std::optional<int> configured_bits(const std::string& path) {
  const fs::path config = fs::path(path).parent_path() / "config.json";
  std::ifstream in(config, std::ios::binary);
  if (!in) return std::nullopt;
  std::stringstream text;
  text << in.rdbuf();
  const nlohmann::json j = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("quantization_config")) return std::nullopt;
  const nlohmann::json& q = j["quantization_config"];
  std::optional<int> bits;
  if (q.is_object() && q.contains("config_groups") && q["config_groups"].is_object()) {
    for (const auto& [name, group] : q["config_groups"].items()) {
      const nlohmann::json* w = group.is_object() && group.contains("weights") ? &group["weights"] : nullptr;
      if (w == nullptr || !w->is_object() || !w->contains("num_bits") || !(*w)["num_bits"].is_number_integer()) continue;
      const int b = (*w)["num_bits"];
      if (bits && *bits != b) {
        throw Error(ErrorCode::kUnsupported, config.string() + ": config groups of " + std::to_string(*bits) + " and " +
                                                 std::to_string(b) + " bits; wq decodes one width per checkpoint");
      }
      bits = b;
    }
  }
  if (bits && (*bits < 1 || *bits > 8)) {
    throw Error(ErrorCode::kBadFormat, config.string() + ": num_bits " + std::to_string(*bits) + " is not 1..8");
  }
  return bits;
}

}  // namespace

std::vector<PackedTensor> packed_tensors(CheckpointReader& reader, const std::string& path) {
  const std::vector<TensorInfo>& infos = reader.tensors();
  std::map<std::string, std::size_t> index;
  bool any = false;
  for (std::size_t i = 0; i < infos.size(); ++i) {
    index.emplace(infos[i].name, i);
    any = any || (infos[i].name.size() > kPacked.size() && infos[i].name.ends_with(kPacked));
  }
  if (!any) return {};
  const std::optional<int> config_bits = configured_bits(path);
  const auto bad = [&](const std::string& module, const std::string& why) {
    return Error(ErrorCode::kBadFormat, path + ": compressed-tensors module '" + module + "': " + why);
  };
  // Which tensors are parts of a weight (listed once, where weight_packed is).
  std::map<std::size_t, std::string> part_of;
  for (std::size_t i = 0; i < infos.size(); ++i) {
    const std::string& name = infos[i].name;
    if (name.size() <= kPacked.size() || !name.ends_with(kPacked)) continue;
    const std::string module = name.substr(0, name.size() - kPacked.size());
    for (const char* suffix : {".weight_scale", ".weight_zero_point", ".weight_shape", ".weight_g_idx"}) {
      const auto it = index.find(module + suffix);
      if (it != index.end()) part_of[it->second] = module;
    }
    if (index.count(module + ".weight") != 0) throw bad(module, "has both weight and weight_packed");
  }
  std::vector<PackedTensor> out;
  for (std::size_t i = 0; i < infos.size(); ++i) {
    if (part_of.count(i) != 0) continue;
    const TensorInfo& info = infos[i];
    PackedTensor t;
    t.data = i;
    if (info.name.size() <= kPacked.size() || !info.name.ends_with(kPacked)) {
      t.info = info;
      out.push_back(std::move(t));
      continue;
    }
    const std::string module = info.name.substr(0, info.name.size() - kPacked.size());
    const auto part = [&](const char* suffix) -> std::optional<std::size_t> {
      const auto it = index.find(module + suffix);
      return it == index.end() ? std::nullopt : std::optional(it->second);
    };
    if (part(".weight_g_idx")) {
      throw Error(ErrorCode::kUnsupported, path + ": compressed-tensors module '" + module +
                                               "' has weight_g_idx (activation ordering), which wq does not decode");
    }
    t.scale = part(".weight_scale");
    t.zero_point = part(".weight_zero_point");
    const std::optional<std::size_t> shape_part = part(".weight_shape");
    if (!t.scale || !shape_part) throw bad(module, "weight_packed without weight_scale and weight_shape");
    const TensorInfo& packed = info;
    const TensorInfo& scale = infos[*t.scale];
    const TensorInfo& shape = infos[*shape_part];
    if (packed.dtype != DType::kI32 || packed.shape.size() != 2) throw bad(module, "weight_packed is not 2-D int32");
    if (shape.dtype != DType::kI64 || shape.shape != Shape{2}) throw bad(module, "weight_shape is not int64 [2]");
    if (scale.dtype != DType::kF32 && scale.dtype != DType::kF16 && scale.dtype != DType::kBF16) {
      throw bad(module, "weight_scale is " + std::string(dtype_name(scale.dtype)) + ", not a float");
    }
    std::int64_t dims[2];
    std::memcpy(dims, reader.tensor(*shape_part).data, sizeof dims);
    if (dims[0] <= 0 || dims[1] <= 0) throw bad(module, "weight_shape holds a dimension that is not positive");
    if (static_cast<std::uint64_t>(dims[0]) != packed.shape[0]) {
      throw bad(module, "weight_shape does not match weight_packed's rows");
    }
    const auto rows = static_cast<std::uint64_t>(dims[0]), cols = static_cast<std::uint64_t>(dims[1]);
    // At most 32 codes a word: bounds cols by the file's size before any product is formed.
    if (cols > 32 * packed.shape[1]) throw bad(module, "weight_shape's columns do not fit in weight_packed");
    if (scale.shape.size() != 2 || scale.shape[0] != rows || scale.shape[1] == 0 || cols % scale.shape[1] != 0) {
      throw bad(module, "weight_scale's shape does not divide the weight into groups of whole columns");
    }
    if (config_bits) {
      t.bits = *config_bits;
    } else {
      for (int b = 1; b <= 8; ++b) {
        if (ct::packed_words(cols, b) != packed.shape[1]) continue;
        if (t.bits != 0) throw bad(module, "its width is ambiguous without a config.json holding num_bits");
        t.bits = b;
      }
    }
    if (t.bits == 0 || ct::packed_words(cols, t.bits) != packed.shape[1]) {
      throw bad(module, "weight_packed's " + std::to_string(packed.shape[1]) + " words per row do not hold " +
                            std::to_string(cols) + " columns" + (t.bits ? " of " + std::to_string(t.bits) + " bits" : ""));
    }
    if (t.zero_point) {
      const TensorInfo& z = infos[*t.zero_point];
      if (z.dtype != DType::kI32 || z.shape != Shape{ct::packed_words(rows, t.bits), scale.shape[1]}) {
        throw bad(module, "weight_zero_point is not int32 [ceil(rows * bits / 32), groups]");
      }
    }
    t.info = TensorInfo{module + ".weight", scale.dtype, Shape{rows, cols}};
    out.push_back(std::move(t));
  }
  return out;
}

namespace {

// The `bits`-wide field at bit `bit` of a stream of little-endian int32 words `stride` words
// apart (1: a row of weight_packed; the groups: a column of weight_zero_point).
std::uint32_t field(const std::byte* words, std::uint64_t stride, std::uint64_t bit, int bits) {
  std::uint32_t lo = 0, hi = 0;
  std::memcpy(&lo, words + 4 * stride * (bit / 32), 4);
  std::uint64_t v = lo >> (bit % 32);
  if (bit % 32 + static_cast<std::uint64_t>(bits) > 32) {
    std::memcpy(&hi, words + 4 * stride * (bit / 32 + 1), 4);
    v |= static_cast<std::uint64_t>(hi) << (32 - bit % 32);
  }
  return static_cast<std::uint32_t>(v & ((1u << bits) - 1));
}

template <DType D>
void decode_as(CheckpointReader& reader, const PackedTensor& t, std::byte* out) {
  const ct::Scalar scalar = D == DType::kF16 ? ct::Scalar::kF16 : D == DType::kBF16 ? ct::Scalar::kBF16 : ct::Scalar::kF32;
  const std::uint64_t rows = t.info.shape[0], cols = t.info.shape[1];
  const TensorView scale = reader.tensor(*t.scale);
  const std::uint64_t groups = scale.shape[1], group = cols / groups;
  const std::uint64_t words = ct::packed_words(cols, t.bits);
  const std::byte* packed = reader.tensor(t.data).data;
  const std::byte* zeros = t.zero_point ? reader.tensor(*t.zero_point).data : nullptr;
  for (std::uint64_t r = 0; r < rows; ++r) {
    for (std::uint64_t k = 0; k < groups; ++k) {
      ct::Params p;
      p.scale = load_f32<D>(scale.data, r * groups + k);
      p.zero = 0;
      if (zeros != nullptr) {  // column k packs the rows' zero points: row r at bit r * bits
        p.zero = static_cast<int>(field(zeros + 4 * k, groups, r * static_cast<std::uint64_t>(t.bits), t.bits)) +
                 ct::q_min(t.bits);
      }
      for (std::uint64_t c = k * group; c < (k + 1) * group; ++c) {
        const std::uint32_t u = field(packed + 4 * r * words, 1, c * static_cast<std::uint64_t>(t.bits), t.bits);
        store_f32<D>(out, r * cols + c, ct::decode(u, p, t.bits, scalar));
      }
    }
  }
}

}  // namespace

void decode_packed_weight(CheckpointReader& reader, const PackedTensor& t, std::byte* out) {
  switch (t.info.dtype) {
    case DType::kF16: decode_as<DType::kF16>(reader, t, out); return;
    case DType::kBF16: decode_as<DType::kBF16>(reader, t, out); return;
    default: decode_as<DType::kF32>(reader, t, out); return;
  }
}

namespace {

class PackedCheckpoint final : public CheckpointReader {
 public:
  PackedCheckpoint(std::unique_ptr<CheckpointReader> inner, std::vector<PackedTensor> tensors)
      : inner_(std::move(inner)), packed_(std::move(tensors)) {
    for (const PackedTensor& t : packed_) {
      infos_.push_back(t.info);
      stored_.push_back(t.bits == 0 ? std::string() : "int" + std::to_string(t.bits) + " pack-quantized");
    }
  }

  const std::string& path() const noexcept override { return inner_->path(); }
  const std::string& format() const noexcept override { return format_; }
  std::uint64_t file_bytes() const noexcept override { return inner_->file_bytes(); }
  const std::vector<TensorInfo>& tensors() const noexcept override { return infos_; }

  TensorView tensor(std::size_t index) override {
    const PackedTensor& t = packed_.at(index);
    if (t.bits == 0) {
      const TensorView stored = inner_->tensor(t.data);
      return TensorView{infos_[index].name, stored.dtype, stored.shape, stored.data};
    }
    auto it = decoded_.find(index);
    if (it == decoded_.end()) {
      std::vector<std::byte> values(element_count(t.info.shape) * dtype_size(t.info.dtype));
      decode_packed_weight(*inner_, t, values.data());
      it = decoded_.emplace(index, std::move(values)).first;
    }
    return TensorView{infos_[index].name, t.info.dtype, t.info.shape, it->second.data()};
  }

  void release(std::size_t index) override {
    const PackedTensor& t = packed_.at(index);
    decoded_.erase(index);
    inner_->release(t.data);
    if (t.scale) inner_->release(*t.scale);
    if (t.zero_point) inner_->release(*t.zero_point);
  }

  std::string_view stored_quantized_as(std::size_t index) const override { return stored_.at(index); }
  std::span<const std::byte> mapped_bytes() const noexcept override { return inner_->mapped_bytes(); }

 private:
  std::unique_ptr<CheckpointReader> inner_;
  std::vector<PackedTensor> packed_;
  std::vector<TensorInfo> infos_;
  std::vector<std::string> stored_;
  std::string format_ = "compressed-tensors";
  std::map<std::size_t, std::vector<std::byte>> decoded_;
};

}  // namespace

std::unique_ptr<CheckpointReader> wrap_packed_checkpoint(std::unique_ptr<CheckpointReader> reader) {
  std::vector<PackedTensor> tensors = packed_tensors(*reader, reader->path());
  if (tensors.empty()) return reader;
  return std::make_unique<PackedCheckpoint>(std::move(reader), std::move(tensors));
}

}  // namespace wq::detail
