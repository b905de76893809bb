// compressed-tensors' pack-quantized weights through every backend present: the bytes of
// tests/data/compressed_tensors_vectors.json (compressed-tensors' round-to-nearest arithmetic
// emulated op for op in torch, in bf16, fp16 and fp32, by tools/make_ct_vectors.py; checked
// against compressed-tensors' own functions when they were made), the backends against each
// other on larger random weights split over threads, and the refusals.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <algorithm>
#include <cstdio>
#include <random>

#include "core/packed_jobs.h"
#include "cpu/cpu_features.h"
#include "cpu/packed_avx2.h"
#include "test_support.h"
#include "wq/backend.h"
#include "wq/codec/half.h"
#include "wq/codec/pack_quantized.h"
#include "wq/error.h"

namespace wq {
namespace {

namespace ct = codec::ct;

struct BackendCase {
  const char* name;
  BackendKind kind;
  unsigned threads;
};

nlohmann::json packed_vectors() {
  std::ifstream in(std::string(WQ_TEST_DATA_DIR) + "/compressed_tensors_vectors.json");
  return nlohmann::json::parse(in);
}

DType dtype_of(const std::string& name) {
  return name == "bf16" ? DType::kBF16 : name == "f16" ? DType::kF16 : DType::kF32;
}

// The outputs of one job, sized by its geometry.
struct PackedOutputs {
  std::vector<std::byte> packed, scales, zero_points;
};

PackedOutputs run(Backend& backend, const TensorView& input, int bits, bool symmetric, std::uint64_t group_size,
                  ErrorStats* stats = nullptr, bool search = false) {
  const bool two_d = input.shape.size() == 2;  // others are refused; the buffers need a size
  const detail::PackedGeometry g = detail::packed_geometry(two_d ? input.shape[0] : 1,
                                                           two_d ? input.shape[1] : input.numel(), bits, group_size);
  PackedOutputs out;
  // 0xA5 fill: a byte the kernels never wrote shows up as a mismatch.
  out.packed.assign(4 * g.rows * g.words_per_row, std::byte{0xa5});
  out.scales.assign(g.rows * g.groups_per_row * dtype_size(input.dtype), std::byte{0xa5});
  if (!symmetric) out.zero_points.assign(4 * g.zero_point_rows * g.groups_per_row, std::byte{0xa5});
  PackQuantizeJob job{input, bits, symmetric, group_size, out.packed.data(), out.scales.data(),
                      symmetric ? nullptr : out.zero_points.data(), search, {}};
  const ErrorStats s = backend.quantize_packed(job);
  if (stats != nullptr) *stats = s;
  return out;
}

class PackedBackendSuite : public ::testing::TestWithParam<BackendCase> {
 protected:
  void SetUp() override {
    try {
      backend_ = make_backend({GetParam().kind, GetParam().threads, 0, 0}).backend;
    } catch (const Error& e) {
      GTEST_SKIP() << GetParam().name << " backend not available here: " << e.what();
    }
  }
  std::unique_ptr<Backend> backend_;
};

// Every known-answer case, byte for byte. The "_overflow" cases hold fp16 groups that
// compressed-tensors decodes to NaN or infinity (a range beyond fp16, or -65504 in a symmetric
// group): wq refuses exactly those.
TEST_P(PackedBackendSuite, WritesCompressedTensorsBytesOfEveryKnownAnswerCase) {
  const nlohmann::json vectors = packed_vectors();
  ASSERT_GE(vectors["cases"].size(), 60u);
  for (const nlohmann::json& c : vectors["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    const DType dtype = dtype_of(c["dtype"]);
    const std::vector<std::uint8_t> input = test::from_hex(c["input"]);
    const std::string name = c["name"];  // TensorView::name views it
    const TensorView view{name, dtype, {c["rows"], c["cols"]}, reinterpret_cast<const std::byte*>(input.data())};
    const int bits = c["bits"];
    const bool symmetric = c["symmetric"];
    const std::uint64_t group_size = c["group_size"];
    // Does the reference decode any element beyond the dtype?
    const std::vector<std::uint8_t> decoded = test::from_hex(c["decoded"]);
    bool reference_overflows = false;
    for (std::size_t i = 0; i < decoded.size(); i += dtype_size(dtype)) {
      std::uint32_t bits32 = 0;
      std::memcpy(&bits32, decoded.data() + i, dtype_size(dtype));
      const float v = dtype == DType::kF32   ? codec::bits_float(bits32)
                      : dtype == DType::kF16 ? codec::f16_bits_to_f32(static_cast<std::uint16_t>(bits32))
                                             : codec::bf16_bits_to_f32(static_cast<std::uint16_t>(bits32));
      reference_overflows = reference_overflows || !codec::is_finite(v);
    }
    if (reference_overflows) {
      try {
        run(*backend_, view, bits, symmetric, group_size);
        ADD_FAILURE() << "an overflowing group was not refused";
      } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::kBadData);
        EXPECT_NE(std::string(e.what()).find(c["name"].get<std::string>()), std::string::npos) << e.what();
      }
      continue;
    }
    const PackedOutputs out = run(*backend_, view, bits, symmetric, group_size);
    EXPECT_EQ(test::to_hex(out.packed.data(), out.packed.size()), c["packed"].get<std::string>());
    EXPECT_EQ(test::to_hex(out.scales.data(), out.scales.size()), c["scale"].get<std::string>());
    if (!symmetric) {
      EXPECT_EQ(test::to_hex(out.zero_points.data(), out.zero_points.size()), c["zero_point"].get<std::string>());
    }
  }
}

// The codec's decode() is compressed-tensors' _dequantize: every known answer's decoded values
// from its own codes, scales and zero points.
TEST(PackedCodec, DecodesEveryKnownAnswerAsCompressedTensors) {
  const nlohmann::json vectors = packed_vectors();
  std::size_t checked = 0;
  for (const nlohmann::json& c : vectors["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    const DType dtype = dtype_of(c["dtype"]);
    const ct::Scalar scalar = detail::packed_scalar(dtype);
    const int bits = c["bits"];
    const std::uint64_t rows = c["rows"], cols = c["cols"], group_size = c["group_size"];
    const detail::PackedGeometry g = detail::packed_geometry(rows, cols, bits, group_size);
    const std::vector<std::uint32_t> packed = test::from_hex_as<std::uint32_t>(c["packed"]);
    const std::vector<std::uint8_t> scales = test::from_hex(c["scale"]), decoded = test::from_hex(c["decoded"]);
    std::vector<std::uint32_t> zeros;
    if (!c["symmetric"].get<bool>()) zeros = test::from_hex_as<std::uint32_t>(c["zero_point"]);
    const std::size_t size = dtype_size(dtype);
    const auto field = [&](std::uint64_t word_index, std::uint64_t bit, const std::vector<std::uint32_t>& words) {
      const std::uint64_t lo = words[word_index + bit / 32] >> (bit % 32);
      const std::uint64_t hi = bit % 32 + bits > 32 ? static_cast<std::uint64_t>(words[word_index + bit / 32 + 1])
                                                          << (32 - bit % 32)
                                                    : 0;
      return static_cast<std::uint32_t>((lo | hi) & ((1u << bits) - 1));
    };
    for (std::uint64_t r = 0; r < rows; ++r) {
      for (std::uint64_t col = 0; col < cols; ++col) {
        const std::uint64_t k = col / g.group_size, group = r * g.groups_per_row + k;
        std::uint32_t scale_bits = 0;
        std::memcpy(&scale_bits, scales.data() + group * size, size);
        ct::Params p;
        p.scale = dtype == DType::kF32   ? codec::bits_float(scale_bits)
                  : dtype == DType::kF16 ? codec::f16_bits_to_f32(static_cast<std::uint16_t>(scale_bits))
                                         : codec::bf16_bits_to_f32(static_cast<std::uint16_t>(scale_bits));
        p.zero = 0;
        if (!zeros.empty()) {
          // Zero points are packed down the rows: column k's stream, row r at bit r * bits.
          std::vector<std::uint32_t> column(g.zero_point_rows);
          for (std::uint64_t w = 0; w < g.zero_point_rows; ++w) column[w] = zeros[w * g.groups_per_row + k];
          p.zero = static_cast<int>(field(0, r * bits, column)) + ct::q_min(bits);
        }
        const std::uint32_t u = field(r * g.words_per_row, col * bits, packed);
        const float v = ct::decode(u, p, bits, scalar);
        std::uint32_t want = 0, got = 0;
        std::memcpy(&want, decoded.data() + (r * cols + col) * size, size);
        if (dtype == DType::kF32) {
          got = codec::float_bits(v);
        } else {
          got = dtype == DType::kF16 ? codec::f32_to_f16_bits(v) : codec::f32_to_bf16_bits(v);
        }
        if (!codec::is_finite(v)) continue;  // the _overflow cases: refused by the quantizer
        ASSERT_EQ(got, want) << "row " << r << " col " << col;
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 20000u);
}

// Weight-like values: normal, a few outliers, a constant run, an all-zero row.
std::vector<std::byte> weights(DType dtype, std::uint64_t rows, std::uint64_t cols, std::uint32_t seed) {
  std::vector<float> x = test::random_normal(rows * cols, seed, 0.02f);
  for (std::size_t i = 0; i < x.size(); i += 101) x[i] *= 40.0f;
  if (rows > 3) std::fill(x.begin() + 3 * cols, x.begin() + 4 * cols, 0.0f);
  if (x.size() > 300) std::fill(x.begin() + 200, x.begin() + 300, -0.125f);
  std::vector<std::byte> out(x.size() * dtype_size(dtype));
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (dtype == DType::kF32) {
      std::memcpy(out.data() + 4 * i, &x[i], 4);
    } else {
      const std::uint16_t h = dtype == DType::kF16 ? codec::f32_to_f16_bits(x[i]) : codec::f32_to_bf16_bits(x[i]);
      std::memcpy(out.data() + 2 * i, &h, 2);
    }
  }
  return out;
}

// Larger tensors (many 32-row runs on several threads; 3/5 rows of zero points, odd columns
// for per-channel) give the bytes of a single-threaded CPU backend, the reference schedule, and
// an error measurement that a wrong decode would change.
TEST_P(PackedBackendSuite, LargeTensorsGiveTheBytesOfOneCpuThread) {
  std::unique_ptr<Backend> reference = make_backend({BackendKind::kCpu, 1, 0, 0}).backend;
  struct Shape2 {
    std::uint64_t rows, cols, group;
  };
  for (DType dtype : {DType::kBF16, DType::kF16, DType::kF32}) {
    for (const Shape2 s : {Shape2{161, 512, 128}, Shape2{97, 1023, 0}, Shape2{64, 96, 32}, Shape2{1, 7, 0}}) {
      for (const int bits : {4, 8}) {
        for (const bool symmetric : {true, false}) {
          SCOPED_TRACE(std::string(dtype_name(dtype)) + " " + std::to_string(s.rows) + "x" + std::to_string(s.cols) +
                       " g" + std::to_string(s.group) + " b" + std::to_string(bits) + (symmetric ? " sym" : " asym"));
          const std::vector<std::byte> x = weights(dtype, s.rows, s.cols, static_cast<std::uint32_t>(s.rows + bits));
          const TensorView view{"w", dtype, {s.rows, s.cols}, x.data()};
          ErrorStats mine, theirs;
          const PackedOutputs a = run(*backend_, view, bits, symmetric, s.group, &mine);
          const PackedOutputs b = run(*reference, view, bits, symmetric, s.group, &theirs);
          EXPECT_EQ(a.packed, b.packed);
          EXPECT_EQ(a.scales, b.scales);
          EXPECT_EQ(a.zero_points, b.zero_points);
          // The mse search: the same bytes on every schedule too, and never a larger error.
          ErrorStats searched, searched_reference;
          const PackedOutputs c = run(*backend_, view, bits, symmetric, s.group, &searched, true);
          const PackedOutputs d = run(*reference, view, bits, symmetric, s.group, &searched_reference, true);
          EXPECT_EQ(c.packed, d.packed);
          EXPECT_EQ(c.scales, d.scales);
          EXPECT_EQ(c.zero_points, d.zero_points);
          EXPECT_LE(searched.error_energy, mine.error_energy * (1 + 1e-5));
          EXPECT_EQ(mine.count, s.rows * s.cols);
          // The CPU sums in binary32 lanes folded into binary64, the device in binary64.
          EXPECT_NEAR(mine.error_energy, theirs.error_energy, 1e-5 * theirs.error_energy);
          // A wrong decode gives about 0 dB or less; these weights (with x40 outliers that
          // widen their groups) measure 11.8-14 dB at 4 bits and 27-33 dB at 8.
          EXPECT_GT(mine.sqnr_db(), bits == 4 ? 10.0 : 25.0);
        }
      }
    }
  }
}

TEST_P(PackedBackendSuite, RefusesWhatCompressedTensorsCannotHold) {
  std::vector<float> x(4 * 64, 0.5f);
  const TensorView ok{"w", DType::kF32, {4, 64}, reinterpret_cast<const std::byte*>(x.data())};
  const auto code_of = [&](const TensorView& view, int bits, std::uint64_t group) {
    try {
      run(*backend_, view, bits, true, group);
    } catch (const Error& e) {
      return e.code();
    }
    return ErrorCode::kInternal;  // not refused
  };
  EXPECT_EQ(code_of(ok, 4, 48), ErrorCode::kUsage);  // 64 columns are not whole groups of 48
  EXPECT_EQ(code_of(ok, 9, 32), ErrorCode::kUsage);
  EXPECT_EQ(code_of(TensorView{"w", DType::kF32, {256}, ok.data}, 4, 0), ErrorCode::kUsage);  // 1-D
  EXPECT_EQ(code_of(TensorView{"w", DType::kF64, {4, 32}, ok.data}, 4, 0), ErrorCode::kUsage);
  x[77] = std::nanf("");
  try {
    run(*backend_, ok, 4, true, 32);
    ADD_FAILURE() << "NaN accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kBadData);
    EXPECT_NE(std::string(e.what()).find("element 77 is NaN"), std::string::npos) << e.what();
  }
  // An fp16 group whose range overflows fp16: compressed-tensors' scale would be infinite.
  std::vector<std::uint16_t> h(2 * 32, codec::f32_to_f16_bits(0.0f));
  h[40] = codec::f32_to_f16_bits(60000.0f);
  h[41] = codec::f32_to_f16_bits(-60000.0f);
  try {
    run(*backend_, TensorView{"h", DType::kF16, {2, 32}, reinterpret_cast<const std::byte*>(h.data())}, 4, false, 0);
    ADD_FAILURE() << "overflowing range accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kBadData);
    EXPECT_NE(std::string(e.what()).find("group 1"), std::string::npos) << e.what();
  }
}

// search_params() against compressed-tensors' parameters, group by group by its error
// (search_error()): never worse (the first candidate is compressed-tensors'), strictly better on
// most groups of weight-like data, and compressed-tensors' own where that is exact already.
TEST(PackedCodec, SearchIsNeverWorseThanCompressedTensorsOnAnyGroup) {
  std::mt19937 rng(11);
  std::student_t_distribution<float> heavy(4.0f);  // weight-like tails
  int better[9] = {}, groups[9] = {};
  for (const ct::Scalar scalar : {ct::Scalar::kBF16, ct::Scalar::kF16, ct::Scalar::kF32}) {
    for (const int bits : {4, 8}) {
      for (const bool symmetric : {true, false}) {
        for (int k = 0; k < 300; ++k) {
          std::vector<float> x(k % 3 == 0 ? 32 : 128);
          for (float& v : x) v = ct::round_to(scalar, 0.02f * heavy(rng) + (k % 5 == 0 ? 0.01f : 0.0f));
          if (k % 50 == 7) std::fill(x.begin(), x.end(), x[0]);  // constant
          if (k % 50 == 8) std::fill(x.begin(), x.end(), 0.0f);   // all zero: exact already
          const float lo = *std::min_element(x.begin(), x.end()), hi = *std::max_element(x.begin(), x.end());
          ct::Params rtn, found;
          ASSERT_EQ(ct::group_params(lo, hi, bits, symmetric, scalar, &rtn), ct::ParamsStatus::kOk);
          const auto load = [&](unsigned long long i) { return x[i]; };
          const auto search_error = [&](ct::Params p) { return ct::search_error(load, x.size(), p, bits, scalar); };
          ASSERT_EQ(ct::search_params(search_error, lo, hi, bits, symmetric, scalar, &found), ct::ParamsStatus::kOk);
          const auto error = search_error;  // the search's own measure (binary32 lanes)
          ASSERT_LE(error(found), error(rtn)) << "group " << k;
          if (error(found) < error(rtn)) ++better[bits];
          if (error(rtn) == 0.0) {  // nothing to gain: the first of equal errors, compressed-tensors' own
            EXPECT_TRUE(found.scale == rtn.scale && found.zero == rtn.zero);
          }
          ++groups[bits];
        }
      }
    }
  }
  // Most 4-bit groups gain (clipping the tails pays at 16 levels); at 8 bits fewer do.
  EXPECT_GT(better[4], groups[4] * 2 / 3) << better[4] << " of " << groups[4];
  EXPECT_GT(better[8], groups[8] / 10) << better[8] << " of " << groups[8];
  std::printf("search strictly better than compressed-tensors' own: 4 bits %d of %d groups, 8 bits %d of %d\n",
              better[4], groups[4], better[8], groups[8]);
}

// The AVX2 spelling of the search's error gives the codec's binary64, bit for bit, for every
// dtype, width and group length (tails of fewer than 8, several kMseBlock blocks).
TEST(PackedCodec, Avx2SearchErrorIsTheCodecs) {
  if (!detail::avx2_takes(DType::kF16)) GTEST_SKIP() << "no AVX2/F16C here (or WQ_CPU_BASELINE set)";
  std::mt19937 rng(5);
  std::student_t_distribution<float> heavy(3.0f);
  for (const DType dtype : {DType::kBF16, DType::kF16, DType::kF32}) {
    const ct::Scalar scalar = detail::packed_scalar(dtype);
    for (const std::uint64_t n : {1ull, 7ull, 8ull, 9ull, 128ull, 1023ull, 4099ull}) {
      std::vector<float> x(n);
      for (float& v : x) v = ct::round_to(scalar, 0.05f * heavy(rng));
      std::vector<std::byte> raw(n * dtype_size(dtype));
      for (std::uint64_t i = 0; i < n; ++i) {
        if (dtype == DType::kF32) {
          std::memcpy(raw.data() + 4 * i, &x[i], 4);
        } else {
          const std::uint16_t h = dtype == DType::kF16 ? codec::f32_to_f16_bits(x[i]) : codec::f32_to_bf16_bits(x[i]);
          std::memcpy(raw.data() + 2 * i, &h, 2);
        }
      }
      for (const int bits : {4, 8}) {
        for (const bool symmetric : {true, false}) {
          const float lo = *std::min_element(x.begin(), x.end()), hi = *std::max_element(x.begin(), x.end());
          ct::Params p;
          ASSERT_EQ(ct::group_params(lo * 0.8f, hi * 0.8f, bits, symmetric, scalar, &p), ct::ParamsStatus::kOk);
          const double want = ct::search_error([&](unsigned long long i) { return x[i]; }, n, p, bits, scalar);
          const double got = detail::packed_search_error_avx2(dtype, raw.data(), n, p, bits);
          ASSERT_EQ(want, got) << dtype_name(dtype) << " n=" << n << " bits=" << bits << " sym=" << symmetric;
        }
      }
    }
  }
}

// cpu/packed_avx2.cpp computes the codec's R(x / scale) for bf16 weights as R(x * (1 / scale)),
// by a proof that holds for bf16 operands only. The claim over every positive bf16 weight
// against every scale significand at five exponents, and a control: for binary32 weights the
// two differ, so this check would see a wrong proof.
TEST(PackedCodec, Bf16QuotientIsTheReciprocalProduct) {
  const auto differs = [](float x, float scale) {
    const float inverse = 1.0f / scale;
    if (std::fabs(x / scale) < std::numeric_limits<float>::min()) return false;  // codes as 0 either way
    return ct::round_to(ct::Scalar::kBF16, x / scale) != ct::round_to(ct::Scalar::kBF16, x * inverse);
  };
  std::uint64_t checked = 0;
  for (const float binade : {1.0f, 0x1p-20f, 0x1p20f, 0x1p-100f, 0x1p100f}) {
    for (std::uint32_t significand = 0; significand < 128; ++significand) {
      const float scale = codec::bf16_bits_to_f32(static_cast<std::uint16_t>(0x3f80 | significand)) * binade;
      for (std::uint32_t x_bits = 1; x_bits < 0x7f80; ++x_bits) {
        const float x = codec::bf16_bits_to_f32(static_cast<std::uint16_t>(x_bits));
        ASSERT_FALSE(differs(x, scale)) << "x " << x << " scale " << scale;
        ++checked;
      }
    }
  }
  EXPECT_EQ(checked, 5u * 128u * 0x7f7fu);
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> uniform(-8.0f, 8.0f);
  int binary32_differences = 0;
  for (int i = 0; i < 1000000; ++i) {
    const float scale = codec::bf16_bits_to_f32(static_cast<std::uint16_t>(0x3f80 | (i % 128)));
    binary32_differences += differs(uniform(rng) * scale, scale);
  }
  EXPECT_GT(binary32_differences, 0);
}

// The AVX2 codes of bf16 weights (through the reciprocal) are the codec's, element by element,
// for symmetric and asymmetric parameters over many scales.
TEST(PackedCodec, Avx2Bf16CodesAreTheCodecs) {
  if (!detail::avx2_takes(DType::kBF16)) GTEST_SKIP() << "no AVX2 here (or WQ_CPU_BASELINE set)";
  std::mt19937 rng(12);
  std::student_t_distribution<float> heavy(3.0f);
  std::uint64_t checked = 0;
  for (int group = 0; group < 2000; ++group) {
    const std::uint64_t n = 8 + 8 * (group % 17);
    const float spread = std::ldexp(1.0f, group % 40 - 20);
    std::vector<float> x(n);
    std::vector<std::byte> raw(2 * n);
    for (std::uint64_t i = 0; i < n; ++i) {
      const std::uint16_t h = codec::f32_to_bf16_bits(spread * heavy(rng));
      x[i] = codec::bf16_bits_to_f32(h);
      std::memcpy(raw.data() + 2 * i, &h, 2);
    }
    const float lo = *std::min_element(x.begin(), x.end()), hi = *std::max_element(x.begin(), x.end());
    for (const int bits : {4, 8}) {
      for (const bool symmetric : {true, false}) {
        ct::Params p;
        if (ct::group_params(lo, hi, bits, symmetric, ct::Scalar::kBF16, &p) != ct::ParamsStatus::kOk) continue;
        std::vector<std::uint8_t> codes(n);
        ErrorStats stats;
        ASSERT_TRUE(detail::packed_codes_avx2(DType::kBF16, raw.data(), n, p, bits, codes.data(), &stats));
        for (std::uint64_t i = 0; i < n; ++i) {
          ASSERT_EQ(codes[i], ct::code(x[i], p, bits, ct::Scalar::kBF16)) << "group " << group << " element " << i;
          ++checked;
        }
      }
    }
  }
  EXPECT_GT(checked, 500000u);
}

INSTANTIATE_TEST_SUITE_P(Backends, PackedBackendSuite,
                         ::testing::Values(BackendCase{"cpu_1thread", BackendKind::kCpu, 1},
                                           BackendCase{"cpu_2threads", BackendKind::kCpu, 2},
                                           BackendCase{"cuda", BackendKind::kCuda, 0}),
                         [](const auto& param_info) { return std::string(param_info.param.name); });

}  // namespace
}  // namespace wq
