// The codec against the known-answer vectors of an independent implementation
// (tests/data/codec_vectors.json, from design.md §3-4): every bit width, rounding ties, short
// last groups, constant groups, F16 scales, huge ranges and subnormals.
#include <gtest/gtest.h>

#include "test_support.h"
#include "wq/codec/affine.h"
#include "wq/codec/mse.h"
#include "wq/codec/pack.h"
#include "wq/quant_spec.h"

namespace wq {
namespace {

using test::from_hex_as;
using test::to_hex;

struct VectorResult {
  std::vector<std::uint8_t> codes;
  std::vector<float> scales, mins, decoded;
};

// Quantizes a vector case with nothing but the codec's functions, group by group.
VectorResult run_codec(const nlohmann::json& c) {
  const std::vector<float> x = from_hex_as<float>(c["input_f32_hex"]);
  const Shape shape = c["shape"].get<Shape>();
  const int bits = c["bits"];
  const bool f16 = c["scale_dtype"] == "F16";
  const GroupGeometry g = stored_group_geometry(shape, c["group_size"].get<std::uint64_t>(), bits);
  VectorResult r;
  std::vector<std::uint8_t> codes(x.size());
  r.decoded.resize(x.size());
  for (std::uint64_t k = 0; k < g.groups; ++k) {
    const std::uint64_t begin = (k / g.groups_per_row) * g.cols + (k % g.groups_per_row) * g.group_size;
    const std::uint64_t end = begin + std::min(g.group_size, g.cols - (k % g.groups_per_row) * g.group_size);
    float lo = x[begin], hi = x[begin];
    for (std::uint64_t i = begin; i < end; ++i) {
      lo = std::min(lo, x[i]);
      hi = std::max(hi, x[i]);
    }
    codec::AffineParams p{};
    const std::string method = c.value("method", "minmax");
    codec::ParamsStatus status = codec::ParamsStatus::kOk;
    if (method == "symmetric") {
      status = codec::symmetric_params(lo, hi, bits, f16, &p);
    } else if (method == "mse") {
      status = codec::mse_params([&](std::uint64_t i) { return x[begin + i]; }, end - begin, lo, hi, bits, f16, &p);
    } else {
      status = codec::affine_params(lo, hi, bits, f16, &p);
    }
    EXPECT_EQ(status, codec::ParamsStatus::kOk);
    r.scales.push_back(p.scale);
    r.mins.push_back(p.min);
    for (std::uint64_t i = begin; i < end; ++i) {
      codes[i] = static_cast<std::uint8_t>(codec::affine_code(x[i], p, static_cast<float>(codec::max_code(bits))));
      r.decoded[i] = codec::affine_value(codes[i], p);
    }
  }
  r.codes.resize(codec::packed_bytes(x.size(), bits));
  std::size_t i = 0;
  for (; i + 8 <= x.size(); i += 8) codec::pack8(&codes[i], bits, &r.codes[i / 8 * bits]);
  if (i < x.size()) codec::pack_tail(&codes[i], static_cast<int>(x.size() - i), bits, &r.codes[i / 8 * bits]);
  return r;
}

TEST(CodecVectors, EveryCaseMatchesTheIndependentImplementation) {
  const nlohmann::json vectors = test::codec_vectors();
  ASSERT_GE(vectors["cases"].size(), 48u);  // 18 minmax, 30 or more symmetric and mse
  for (const nlohmann::json& c : vectors["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    const VectorResult r = run_codec(c);
    EXPECT_EQ(to_hex(r.codes.data(), r.codes.size()), c["codes_hex"].get<std::string>());
    EXPECT_EQ(to_hex(r.scales.data(), r.scales.size() * 4), c["scale_f32_hex"].get<std::string>());
    if (c.value("method", "minmax") != "symmetric") {  // a symmetric tensor stores no mins
      EXPECT_EQ(to_hex(r.mins.data(), r.mins.size() * 4), c["min_f32_hex"].get<std::string>());
    }
    EXPECT_EQ(to_hex(r.decoded.data(), r.decoded.size() * 4), c["decoded_f32_hex"].get<std::string>());
  }
}

TEST(CodecVectors, UnpackGivesBackTheListedCodes) {
  for (const nlohmann::json& c : test::codec_vectors()["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    const std::vector<std::uint8_t> packed = test::from_hex(c["codes_hex"]);
    const std::vector<int> listed = c["codes"].get<std::vector<int>>();  // first 64 codes
    const int bits = c["bits"];
    std::vector<std::uint8_t> codes(packed.size() * 8 / bits + 8);
    std::size_t i = 0;
    for (; (i + 8) * bits <= packed.size() * 8; i += 8) codec::unpack8(&packed[i / 8 * bits], bits, &codes[i]);
    for (std::size_t k = 0; k < listed.size() && k < i; ++k) EXPECT_EQ(codes[k], listed[k]) << "code " << k;
  }
}

}  // namespace
}  // namespace wq
