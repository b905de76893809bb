#include "wq/quant_spec.h"

#include <array>
#include <cctype>
#include <limits>
#include <string>

#include "wq/codec/ggml_legacy_search.h"
#include "wq/codec/pack.h"
#include "wq/error.h"

namespace wq {
namespace {

template <typename Enum, std::size_t N>
using NameTable = std::array<std::pair<Enum, std::string_view>, N>;

constexpr NameTable<Method, 5> kMethods{{{Method::kMinMax, "minmax"},
                                         {Method::kSymmetric, "symmetric"},
                                         {Method::kMse, "mse"},
                                         {Method::kFp16, "fp16"},
                                         {Method::kBf16, "bf16"}}};  // kGgml is chosen by type
constexpr NameTable<Granularity, 3> kGranularities{{{Granularity::kTensor, "tensor"},
                                                    {Granularity::kChannel, "channel"},
                                                    {Granularity::kGroup, "group"}}};
constexpr NameTable<ScaleDType, 2> kScaleDTypes{{{ScaleDType::kF32, "f32"},
                                                 {ScaleDType::kF16, "f16"}}};

template <typename Enum, std::size_t N>
std::string_view name_of(const NameTable<Enum, N>& table, Enum value) noexcept {
  for (const auto& [v, name] : table) {
    if (v == value) return name;
  }
  return "?";
}

template <typename Enum, std::size_t N>
std::optional<Enum> parse_name(const NameTable<Enum, N>& table, std::string_view name) noexcept {
  for (const auto& [v, n] : table) {
    if (n == name) return v;
  }
  return std::nullopt;
}

std::uint64_t ceil_div(std::uint64_t a, std::uint64_t b) { return a / b + (a % b != 0); }

GroupGeometry geometry(const Shape& shape, std::uint64_t arithmetic_group,
                       std::uint64_t stored_group, int bits) {
  GroupGeometry g;
  const std::uint64_t n = element_count(shape);
  g.stored_group_size = stored_group;
  g.code_bytes = codec::packed_bytes(n, bits);
  if (n == 0) return g;
  g.rows = shape.size() >= 2 ? shape[0] : 1;
  g.cols = n / g.rows;
  g.group_size = arithmetic_group == 0 ? g.cols : arithmetic_group;
  if (stored_group == 0) {  // per-tensor: one group of every element, whatever the rows
    g.rows = 1;
    g.cols = n;
    g.group_size = n;
  }
  g.groups_per_row = ceil_div(g.cols, g.group_size);
  g.groups = g.rows * g.groups_per_row;
  return g;
}

}  // namespace

void QuantSpec::validate() const {
  if (method == Method::kGgml) {
    const codec::ggml::TypeLayout layout = codec::ggml::layout_of(ggml_type);
    if (!layout.quantized && ggml_type != codec::ggml::Type::kF32) {
      throw Error(ErrorCode::kUsage, "ggml type " + std::string(codec::ggml::type_name(ggml_type)) +
                                         " cannot be chosen for a tensor (choose one of " + ggml_type_names() + ")");
    }
    if (ggml_mse && !codec::ggml::has_mse_search(ggml_type)) {
      throw Error(ErrorCode::kUsage,
                  std::string("method mse has no ") + codec::ggml::type_name(ggml_type) +
                      " form: it searches the legacy types Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 (a k-quant's reference "
                      "quantizer already fits each sub-block by least squares; leave mse out for it)");
    }
    return;
  }
  if (!is_affine()) return;
  if (bits < 1 || bits > 8) {
    throw Error(ErrorCode::kUsage, "bits must be between 1 and 8, got " + std::to_string(bits));
  }
  if (granularity == Granularity::kGroup && group_size == 0) {
    throw Error(ErrorCode::kUsage, "group size must be at least 1, got 0");
  }
}

std::string_view method_name(Method m) noexcept { return m == Method::kGgml ? "ggml" : name_of(kMethods, m); }

std::optional<QuantSpec> ggml_type_spec(std::string_view name, const QuantSpec& base) {
  std::string upper(name);
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  QuantSpec spec = base;
  if (upper == "F16") {
    spec.method = Method::kFp16;
    return spec;
  }
  if (upper == "BF16") {
    spec.method = Method::kBf16;
    return spec;
  }
  for (codec::ggml::Type t : codec::ggml::kQuantizedTypes) {
    std::string type = codec::ggml::type_name(t);
    for (char& c : type) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (upper == type) {
      spec.ggml_mse = base.method == Method::kMse || (base.method == Method::kGgml && base.ggml_mse);
      spec.method = Method::kGgml;
      spec.ggml_type = t;
      return spec;
    }
  }
  if (upper == "F32") {
    spec.ggml_mse = false;
    spec.method = Method::kGgml;
    spec.ggml_type = codec::ggml::Type::kF32;
    return spec;
  }
  return std::nullopt;
}

std::string ggml_type_names() {
  std::string names = "F32, F16, BF16";
  for (codec::ggml::Type t : codec::ggml::kQuantizedTypes) names += std::string(", ") + codec::ggml::type_name(t);
  return names;
}
std::string_view granularity_name(Granularity g) noexcept { return name_of(kGranularities, g); }
std::string_view scale_dtype_name(ScaleDType s) noexcept { return name_of(kScaleDTypes, s); }
std::optional<Method> parse_method(std::string_view n) noexcept { return parse_name(kMethods, n); }
std::optional<Granularity> parse_granularity(std::string_view n) noexcept {
  return parse_name(kGranularities, n);
}
std::optional<ScaleDType> parse_scale_dtype(std::string_view n) noexcept {
  return parse_name(kScaleDTypes, n);
}

codec::Recipe QuantSpec::recipe() const {
  codec::Recipe r;
  r.rule = method == Method::kSymmetric ? codec::RangeRule::kSymmetric
           : method == Method::kMse     ? codec::RangeRule::kMse
                                        : codec::RangeRule::kMinMax;
  r.bits = bits;
  r.f16_params = scale_dtype == ScaleDType::kF16;
  return r;
}

GroupGeometry group_geometry(const Shape& shape, const QuantSpec& spec) {
  const std::uint64_t n = element_count(shape);
  const std::uint64_t rows = shape.size() >= 2 ? shape[0] : 1;
  const std::uint64_t cols = (n == 0 || rows == 0) ? 0 : n / rows;
  switch (spec.granularity) {
    case Granularity::kTensor: return geometry(shape, 0, 0, spec.bits);
    case Granularity::kChannel: return geometry(shape, cols, cols, spec.bits);
    case Granularity::kGroup: return geometry(shape, spec.group_size, spec.group_size, spec.bits);
  }
  return geometry(shape, 0, 0, spec.bits);
}

GroupGeometry stored_group_geometry(const Shape& shape, std::uint64_t stored_group_size,
                                    int bits) {
  return geometry(shape, stored_group_size, stored_group_size, bits);
}

std::uint64_t element_count(const Shape& shape) {
  std::uint64_t n = 1;
  for (std::uint64_t d : shape) {
    if (d != 0 && n > std::numeric_limits<std::uint64_t>::max() / d) {
      throw Error(ErrorCode::kBadFormat, "tensor shape overflows 64-bit element count");
    }
    n *= d;
  }
  return n;
}

}  // namespace wq
