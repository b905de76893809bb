// The same cases on every backend present: byte-identical to a plain scalar loop over the
// codec (the definition), and close to a float64 reference (the intent). Backends that cannot
// run here are skipped with their reason.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "test_support.h"
#include "wq/backend.h"
#include "wq/codec/affine.h"
#include "wq/codec/half.h"
#include "wq/codec/mse.h"
#include "wq/codec/pack.h"
#include "wq/error.h"

namespace wq {
namespace {

struct BackendCase {
  const char* name;
  BackendKind kind;
  unsigned threads;
  std::uint64_t gpu_memory = 0;  ///< CUDA: a small budget forces tensors through many slots
};

struct Encoded {
  std::vector<std::uint8_t> codes;
  std::vector<std::byte> scales, mins;
};

std::size_t scale_size(const QuantSpec& s) { return s.scale_dtype == ScaleDType::kF32 ? 4 : 2; }

// The definition: the codec's functions in the plainest loop, group by group.
Encoded reference_quantize(const std::vector<float>& x, const Shape& shape, const QuantSpec& spec) {
  const GroupGeometry g = group_geometry(shape, spec);
  Encoded e;
  e.codes.assign(g.code_bytes, 0);
  e.scales.resize(g.groups * scale_size(spec));
  e.mins.resize(g.groups * scale_size(spec));
  std::vector<std::uint8_t> codes(x.size());
  for (std::uint64_t k = 0; k < g.groups; ++k) {
    const std::uint64_t begin = (k / g.groups_per_row) * g.cols + (k % g.groups_per_row) * g.group_size;
    const std::uint64_t end = begin + std::min(g.group_size, g.cols - (k % g.groups_per_row) * g.group_size);
    float lo = x[begin], hi = x[begin];
    for (std::uint64_t i = begin; i < end; ++i) {
      lo = x[i] < lo ? x[i] : lo;
      hi = x[i] > hi ? x[i] : hi;
    }
    codec::AffineParams p{};
    const bool f16 = spec.scale_dtype == ScaleDType::kF16;
    codec::ParamsStatus status = codec::ParamsStatus::kOk;
    switch (spec.method) {
      case Method::kSymmetric: status = codec::symmetric_params(lo, hi, spec.bits, f16, &p); break;
      case Method::kMse:
        status = codec::mse_params([&](std::uint64_t i) { return x[begin + i]; }, end - begin, lo, hi, spec.bits, f16, &p);
        break;
      default: status = codec::affine_params(lo, hi, spec.bits, f16, &p); break;
    }
    EXPECT_EQ(status, codec::ParamsStatus::kOk);
    if (spec.scale_dtype == ScaleDType::kF32) {
      std::memcpy(&e.scales[4 * k], &p.scale, 4);
      std::memcpy(&e.mins[4 * k], &p.min, 4);
    } else {
      const std::uint16_t s = codec::f32_to_f16_bits(p.scale), m = codec::f32_to_f16_bits(p.min);
      std::memcpy(&e.scales[2 * k], &s, 2);
      std::memcpy(&e.mins[2 * k], &m, 2);
    }
    for (std::uint64_t i = begin; i < end; ++i) {
      codes[i] = static_cast<std::uint8_t>(codec::affine_code(x[i], p, static_cast<float>(codec::max_code(spec.bits))));
    }
  }
  for (std::size_t i = 0; i < x.size(); ++i) {
    for (int j = 0; j < spec.bits; ++j) {
      const std::size_t bit = i * spec.bits + j;
      e.codes[bit / 8] |= static_cast<std::uint8_t>(((codes[i] >> j) & 1) << (bit % 8));
    }
  }
  return e;
}

class BackendSuite : public ::testing::TestWithParam<BackendCase> {
 protected:
  void SetUp() override {
    try {
      backend_ = make_backend({GetParam().kind, GetParam().threads, 0, GetParam().gpu_memory}).backend;
    } catch (const Error& e) {
      GTEST_SKIP() << GetParam().name << " backend not available here: " << e.what();
    }
  }

  Encoded quantize(const std::vector<float>& x, const Shape& shape, const QuantSpec& spec,
                   ErrorStats* stats = nullptr) {
    const GroupGeometry g = group_geometry(shape, spec);
    Encoded e;
    e.codes.assign(g.code_bytes, 0xa5);  // poisoned: every byte must be written
    e.scales.assign(g.groups * scale_size(spec), std::byte{0xa5});
    e.mins.assign(g.groups * scale_size(spec), std::byte{0xa5});
    const TensorView view{"t", DType::kF32, shape, reinterpret_cast<const std::byte*>(x.data())};
    const ErrorStats s = backend_->quantize(view, spec, AffineBuffers{e.codes.data(), e.scales.data(), e.mins.data()});
    if (stats != nullptr) *stats = s;
    return e;
  }

  std::vector<float> dequantize(const Encoded& e, const Shape& shape, const QuantSpec& spec) {
    const GroupGeometry g = group_geometry(shape, spec);
    std::vector<float> out(element_count(shape), std::numeric_limits<float>::quiet_NaN());
    const std::byte* mins = spec.method == Method::kSymmetric ? nullptr : e.mins.data();
    AffineTensor a{e.codes.data(), e.scales.data(), mins, spec.bits, g.stored_group_size, spec.scale_dtype};
    backend_->dequantize(a, MutableTensorView{"t", DType::kF32, shape, reinterpret_cast<std::byte*>(out.data())});
    return out;
  }

  void expect_matches_reference(const std::vector<float>& x, const Shape& shape, const QuantSpec& spec) {
    SCOPED_TRACE(::testing::Message() << "bits " << spec.bits << " " << granularity_name(spec.granularity)
                                      << " G " << spec.group_size << " n " << x.size());
    const Encoded got = quantize(x, shape, spec);
    const Encoded want = reference_quantize(x, shape, spec);
    ASSERT_EQ(got.codes, want.codes);
    ASSERT_EQ(got.scales, want.scales);
    const bool symmetric = spec.method == Method::kSymmetric;
    if (symmetric) {  // no mins are written: the poison is untouched
      ASSERT_EQ(got.mins, std::vector<std::byte>(got.mins.size(), std::byte{0xa5}));
    } else {
      ASSERT_EQ(got.mins, want.mins);
    }
    // Decode: exactly fma(scale, q, min) per element.
    const std::vector<float> decoded = dequantize(got, shape, spec);
    const GroupGeometry g = group_geometry(shape, spec);
    for (std::size_t i = 0; i < x.size(); i += 1 + x.size() / 4096) {
      const std::uint64_t row = i / g.cols, k = row * g.groups_per_row + (i - row * g.cols) / g.group_size;
      float scale, min;
      if (spec.scale_dtype == ScaleDType::kF32) {
        std::memcpy(&scale, &got.scales[4 * k], 4);
        std::memcpy(&min, &want.mins[4 * k], 4);
      } else {
        std::uint16_t s, m;
        std::memcpy(&s, &got.scales[2 * k], 2);
        std::memcpy(&m, &want.mins[2 * k], 2);
        scale = codec::f16_bits_to_f32(s);
        min = codec::f16_bits_to_f32(m);
      }
      if (symmetric) min = -static_cast<float>(1u << (spec.bits - 1)) * scale;
      std::uint32_t q = 0;
      for (int j = 0; j < spec.bits; ++j) {
        const std::size_t bit = i * spec.bits + j;
        q |= static_cast<std::uint32_t>((got.codes[bit / 8] >> (bit % 8)) & 1) << j;
      }
      ASSERT_EQ(std::bit_cast<std::uint32_t>(decoded[i]), std::bit_cast<std::uint32_t>(std::fma(scale, static_cast<float>(q), min))) << i;
      // float64 reference: the decoded value is within half a step (plus rounding) of x (min-max
      // ranges contain every element; the others may clip).
      if (spec.scale_dtype == ScaleDType::kF32 && spec.method == Method::kMinMax) {
        ASSERT_LE(std::fabs(static_cast<double>(decoded[i]) - x[i]), 0.5 * scale * (1 + 1e-5) + 1e-30 + std::fabs(x[i]) * 1e-6) << i;
      }
    }
  }

  std::unique_ptr<Backend> backend_;
};

QuantSpec spec_of(int bits, Granularity g, std::uint64_t group = 64, ScaleDType s = ScaleDType::kF32) {
  QuantSpec spec;
  spec.bits = bits;
  spec.granularity = g;
  spec.group_size = group;
  spec.scale_dtype = s;
  return spec;
}

QuantSpec method_spec(Method m, int bits, Granularity g, std::uint64_t group = 64, ScaleDType s = ScaleDType::kF32) {
  QuantSpec spec = spec_of(bits, g, group, s);
  spec.method = m;
  return spec;
}

constexpr Granularity kAllGranularities[] = {Granularity::kTensor, Granularity::kChannel, Granularity::kGroup};

TEST_P(BackendSuite, OddLengthsEveryWidthEveryGranularity) {
  for (std::uint64_t n : {1ull, 7ull, 8ull, 9ull, 1023ull, (1ull << 20) + 3}) {
    const std::vector<float> x = test::random_normal(n, static_cast<std::uint32_t>(n));
    for (int bits = 1; bits <= 8; ++bits) {
      for (Granularity g : kAllGranularities) {
        if (n > 4096 && bits != 1 && bits != 3 && bits != 8) continue;  // keep the big size quick
        expect_matches_reference(x, {n}, spec_of(bits, g, 7));
      }
    }
  }
}

TEST_P(BackendSuite, MatricesWithShortLastGroups) {
  for (const Shape& shape : {Shape{13, 77}, Shape{1023, 9}, Shape{64, 128}, Shape{3, 5, 7}, Shape{257, 1000}}) {
    const std::vector<float> x = test::random_normal(element_count(shape), 42, 0.05f, 0.01f);
    for (int bits : {2, 4, 5, 8}) {
      for (Granularity g : kAllGranularities) {
        for (std::uint64_t group : {1ull, 8ull, 27ull, 64ull, 5000ull}) {
          if (g != Granularity::kGroup && group != 64) continue;
          expect_matches_reference(x, shape, spec_of(bits, g, group));
        }
      }
      expect_matches_reference(x, shape, spec_of(bits, Granularity::kGroup, 32, ScaleDType::kF16));
    }
  }
}

TEST_P(BackendSuite, ConstantTensorsHugeRangesAndSubnormals) {
  expect_matches_reference(std::vector<float>(1000, 3.25f), {10, 100}, spec_of(4, Granularity::kGroup, 16));
  expect_matches_reference(std::vector<float>(17, 0.0f), {17}, spec_of(8, Granularity::kTensor));
  std::vector<float> huge = test::random_normal(4099, 5, 1e37f);
  huge[0] = 1.6e38f;
  huge[1] = -1.6e38f;
  expect_matches_reference(huge, {4099}, spec_of(6, Granularity::kTensor));
  std::vector<float> tiny(2048);
  for (std::size_t i = 0; i < tiny.size(); ++i) tiny[i] = std::bit_cast<float>(static_cast<std::uint32_t>(i * 2654435761u % 0x7fffff));
  expect_matches_reference(tiny, {16, 128}, spec_of(4, Granularity::kChannel));  // all subnormal
  std::vector<float> zeros_signed{-0.0f, 0.0f, -0.0f, 1.0f, -0.0f, 0.0f, 0.0f, -0.0f};
  const Encoded e = quantize(zeros_signed, {8}, spec_of(8, Granularity::kGroup, 3));
  EXPECT_EQ(e.mins, reference_quantize(zeros_signed, {8}, spec_of(8, Granularity::kGroup, 3)).mins);
  float first_min;
  std::memcpy(&first_min, e.mins.data(), 4);
  EXPECT_FALSE(std::signbit(first_min)) << "-0.0 ranges are stored as +0.0";
}

TEST_P(BackendSuite, NonFiniteValuesAreErrorsNamingTheTensor) {
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()}) {
    for (Granularity g : kAllGranularities) {
      std::vector<float> x = test::random_normal(5000, 1);
      x[4321] = bad;
      try {
        quantize(x, {50, 100}, spec_of(4, g, 64));
        ADD_FAILURE() << "no error for " << bad;
      } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::kBadData);
        EXPECT_NE(std::string(e.what()).find("tensor 't'"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("4321"), std::string::npos) << e.what();
        // The library names no caller's flag; the hint says which option would store it raw.
        EXPECT_EQ(std::string(e.what()).find("--"), std::string::npos) << e.what();
        ASSERT_EQ(e.hints().size(), 1u);
        EXPECT_EQ(e.hints()[0].option, "keep_nonfinite");
      }
    }
  }
  std::vector<float> all_nan(9, std::numeric_limits<float>::quiet_NaN());
  EXPECT_THROW(quantize(all_nan, {9}, spec_of(8, Granularity::kTensor)), Error);
}

TEST_P(BackendSuite, RangeOverflowAndF16ScaleOverflowAreErrors) {
  std::vector<float> x = test::random_normal(64, 2);
  x[3] = 3e38f;
  x[9] = -3e38f;
  try {
    quantize(x, {64}, spec_of(8, Granularity::kTensor));
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kBadData);
    EXPECT_NE(std::string(e.what()).find("binary32"), std::string::npos) << e.what();
  }
  std::vector<float> big = test::random_normal(64, 2, 1.0f, 1e6f);
  try {
    quantize(big, {64}, spec_of(8, Granularity::kTensor, 64, ScaleDType::kF16));
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).find("--"), std::string::npos) << e.what();
    ASSERT_EQ(e.hints().size(), 1u);
    EXPECT_EQ(e.hints()[0].option, "scale_dtype_f32");
  }
}

TEST_P(BackendSuite, InvalidSpecsAreUsageErrors) {
  const std::vector<float> x = test::random_normal(16, 2);
  std::vector<std::uint8_t> codes(64);
  std::vector<std::byte> scales(64), mins(64);
  const TensorView view{"t", DType::kF32, {16}, reinterpret_cast<const std::byte*>(x.data())};
  const AffineBuffers out{codes.data(), scales.data(), mins.data()};
  for (const QuantSpec& spec : {spec_of(0, Granularity::kTensor), spec_of(9, Granularity::kTensor),
                                spec_of(-1, Granularity::kTensor), spec_of(4, Granularity::kGroup, 0)}) {
    try {
      backend_->quantize(view, spec, out);
      ADD_FAILURE() << "bits " << spec.bits << " group " << spec.group_size;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kUsage) << e.what();
    }
  }
  const std::vector<std::int32_t> ints(16, 3);
  EXPECT_THROW(backend_->quantize(TensorView{"i", DType::kI32, {16}, reinterpret_cast<const std::byte*>(ints.data())},
                                  spec_of(4, Granularity::kTensor), out),
               Error);
}

TEST_P(BackendSuite, HalfAndDoubleInputsQuantizeThroughBinary32) {
  const Shape shape{37, 50};
  const std::vector<float> x = test::random_normal(element_count(shape), 9, 2.0f);
  std::vector<std::uint16_t> f16(x.size()), bf16(x.size());
  std::vector<double> f64(x.size());
  std::vector<float> via16(x.size()), viab16(x.size()), via64(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    f16[i] = codec::f32_to_f16_bits(x[i]);
    bf16[i] = codec::f32_to_bf16_bits(x[i]);
    f64[i] = static_cast<double>(x[i]) * (1 + 1e-12);
    via16[i] = codec::f16_bits_to_f32(f16[i]);
    viab16[i] = codec::bf16_bits_to_f32(bf16[i]);
    via64[i] = static_cast<float>(f64[i]);
  }
  struct Input { DType dtype; const void* data; const std::vector<float>* as_f32; };
  // mse too: its CPU search widens two groups at a time, each into a buffer of its own.
  for (const QuantSpec& spec : {spec_of(5, Granularity::kGroup, 16), spec_of(5, Granularity::kTensor),
                                method_spec(Method::kMse, 5, Granularity::kGroup, 16)}) {
    for (const Input& in : {Input{DType::kF16, f16.data(), &via16}, Input{DType::kBF16, bf16.data(), &viab16},
                            Input{DType::kF64, f64.data(), &via64}}) {
      const GroupGeometry g = group_geometry(shape, spec);
      Encoded e;
      e.codes.resize(g.code_bytes);
      e.scales.resize(g.groups * 4);
      e.mins.resize(g.groups * 4);
      backend_->quantize(TensorView{"t", in.dtype, shape, static_cast<const std::byte*>(in.data)}, spec,
                         AffineBuffers{e.codes.data(), e.scales.data(), e.mins.data()});
      const Encoded want = reference_quantize(*in.as_f32, shape, spec);
      EXPECT_EQ(e.codes, want.codes) << dtype_name(in.dtype);
      EXPECT_EQ(e.scales, want.scales) << dtype_name(in.dtype);
      // And decoding into the original dtype rounds the binary32 decode once.
      std::vector<std::byte> out(element_count(shape) * dtype_size(in.dtype));
      backend_->dequantize(AffineTensor{e.codes.data(), e.scales.data(), e.mins.data(), 5, g.stored_group_size, ScaleDType::kF32},
                           MutableTensorView{"t", in.dtype, shape, out.data()});
      const std::vector<float> as_f32 = dequantize(e, shape, spec);
      for (std::size_t i = 0; i < as_f32.size(); ++i) {
        if (in.dtype == DType::kF16) {
          std::uint16_t h;
          std::memcpy(&h, &out[2 * i], 2);
          ASSERT_EQ(h, codec::f32_to_f16_bits(as_f32[i]));
        } else if (in.dtype == DType::kBF16) {
          std::uint16_t h;
          std::memcpy(&h, &out[2 * i], 2);
          ASSERT_EQ(h, codec::f32_to_bf16_bits(as_f32[i]));
        } else if (in.dtype == DType::kF64) {
          double d;
          std::memcpy(&d, &out[8 * i], 8);
          ASSERT_EQ(d, static_cast<double>(as_f32[i]));
        }
      }
    }
  }
}

TEST_P(BackendSuite, CastsRoundToNearestEvenAndRefuseF16Overflow) {
  std::vector<float> x = test::random_normal(10007, 4, 1000.0f);
  x[5] = 1e-6f;  // an F16 subnormal
  std::vector<std::uint16_t> out(x.size());
  const TensorView in{"w", DType::kF32, {x.size()}, reinterpret_cast<const std::byte*>(x.data())};
  const ErrorStats stats = backend_->cast(in, MutableTensorView{"w", DType::kF16, {x.size()}, reinterpret_cast<std::byte*>(out.data())}, true);
  for (std::size_t i = 0; i < x.size(); ++i) {
    ASSERT_EQ(out[i], std::bit_cast<std::uint16_t>(static_cast<_Float16>(x[i]))) << i;
  }
  EXPECT_EQ(stats.count, x.size());
  EXPECT_GT(stats.sqnr_db(), 50.0);
  x[777] = 70000.0f;
  try {
    backend_->cast(in, MutableTensorView{"w", DType::kF16, {x.size()}, reinterpret_cast<std::byte*>(out.data())}, true);
    ADD_FAILURE() << "no overflow error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kBadData);
    EXPECT_NE(std::string(e.what()).find("777"), std::string::npos) << e.what();
    ASSERT_EQ(e.hints().size(), 1u);  // the caller says how: --method bf16, method='bf16'
    EXPECT_EQ(e.hints()[0].option, "method_bf16");
  }
  // BF16 takes it.
  backend_->cast(in, MutableTensorView{"w", DType::kBF16, {x.size()}, reinterpret_cast<std::byte*>(out.data())}, true);
  EXPECT_EQ(out[777], codec::f32_to_bf16_bits(70000.0f));
}

TEST_P(BackendSuite, F16CastsEqualTheCodecOnRandomBitPatterns) {
  // Every finite binary32 that fits F16 (subnormal results, ties, values just below 65520):
  // whatever instruction a backend uses, the bits must be the codec's.
  std::mt19937 rng(21);
  std::uniform_int_distribution<std::uint32_t> bits;
  std::vector<float> x;
  while (x.size() < (1u << 20) + 3) {
    std::uint32_t u = bits(rng);
    u = (u & 0x807fffffu) | ((96u + (u >> 23) % 48u) << 23);  // exponents around F16's range
    const float f = std::bit_cast<float>(u);
    if (std::fabs(f) < 65504.0f) x.push_back(f);
  }
  x[0] = 65504.0f;
  x[1] = -65519.99f;
  x[2] = std::bit_cast<float>(0x33000001u);  // just above half the smallest subnormal
  std::vector<std::uint16_t> out(x.size());
  backend_->cast(TensorView{"w", DType::kF32, {x.size()}, reinterpret_cast<const std::byte*>(x.data())},
                 MutableTensorView{"w", DType::kF16, {x.size()}, reinterpret_cast<std::byte*>(out.data())}, true);
  for (std::size_t i = 0; i < x.size(); ++i) {
    ASSERT_EQ(out[i], codec::f32_to_f16_bits(x[i])) << i << " " << std::hexfloat << x[i];
  }
}

TEST_P(BackendSuite, BatchesGiveTheSameBytesAndTheFirstErrorInOrder) {
  std::vector<std::vector<float>> inputs;
  std::vector<Shape> shapes{{3, 7}, {100, 33}, {1}, {16, 16}, {2000, 3}};
  for (std::size_t i = 0; i < shapes.size(); ++i) inputs.push_back(test::random_normal(element_count(shapes[i]), static_cast<std::uint32_t>(100 + i)));
  const QuantSpec spec = spec_of(3, Granularity::kGroup, 10);
  std::vector<Encoded> outs(shapes.size());
  std::vector<QuantizeJob> jobs;
  for (std::size_t i = 0; i < shapes.size(); ++i) {
    const GroupGeometry g = group_geometry(shapes[i], spec);
    outs[i].codes.resize(g.code_bytes);
    outs[i].scales.resize(g.groups * 4);
    outs[i].mins.resize(g.groups * 4);
    jobs.push_back(QuantizeJob{TensorView{"t", DType::kF32, shapes[i], reinterpret_cast<const std::byte*>(inputs[i].data())},
                               spec, AffineBuffers{outs[i].codes.data(), outs[i].scales.data(), outs[i].mins.data()}, {}});
  }
  backend_->quantize(std::span<QuantizeJob>(jobs));
  for (std::size_t i = 0; i < shapes.size(); ++i) {
    EXPECT_EQ(outs[i].codes, reference_quantize(inputs[i], shapes[i], spec).codes) << i;
    EXPECT_EQ(jobs[i].stats.count, element_count(shapes[i]));
  }
  inputs[1][5] = std::numeric_limits<float>::quiet_NaN();
  inputs[3][5] = std::numeric_limits<float>::quiet_NaN();
  jobs[1].input.name = "second";
  jobs[3].input.name = "fourth";
  try {
    backend_->quantize(std::span<QuantizeJob>(jobs));
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'second'"), std::string::npos) << e.what();
  }
}

TEST_P(BackendSuite, ManySmallTensorsAndOneLargeInOneBatch) {
  // Hundreds of tensors share a device round trip; the large one spans several on small slots.
  std::vector<Shape> shapes;
  for (std::uint64_t i = 0; i < 300; ++i) shapes.push_back({1 + i % 7, 1 + (i * 37) % 129});
  shapes.push_back({512, 1031});
  const QuantSpec specs[] = {spec_of(4, Granularity::kGroup, 64), spec_of(5, Granularity::kChannel),
                             spec_of(8, Granularity::kTensor), spec_of(2, Granularity::kGroup, 32, ScaleDType::kF16)};
  for (const QuantSpec& spec : specs) {
    std::vector<std::vector<float>> inputs;
    std::vector<Encoded> outs(shapes.size());
    std::vector<QuantizeJob> jobs;
    for (std::size_t i = 0; i < shapes.size(); ++i) {
      inputs.push_back(test::random_normal(element_count(shapes[i]), static_cast<std::uint32_t>(7 * i + 1)));
      const GroupGeometry g = group_geometry(shapes[i], spec);
      outs[i].codes.assign(g.code_bytes, 0xa5);
      outs[i].scales.assign(g.groups * scale_size(spec), std::byte{0xa5});
      outs[i].mins.assign(g.groups * scale_size(spec), std::byte{0xa5});
    }
    for (std::size_t i = 0; i < shapes.size(); ++i) {
      jobs.push_back(QuantizeJob{TensorView{"t", DType::kF32, shapes[i], reinterpret_cast<const std::byte*>(inputs[i].data())},
                                 spec, AffineBuffers{outs[i].codes.data(), outs[i].scales.data(), outs[i].mins.data()}, {}});
    }
    backend_->quantize(std::span<QuantizeJob>(jobs));
    for (std::size_t i = 0; i < shapes.size(); ++i) {
      const Encoded want = reference_quantize(inputs[i], shapes[i], spec);
      ASSERT_EQ(outs[i].codes, want.codes) << i;
      ASSERT_EQ(outs[i].scales, want.scales) << i;
      ASSERT_EQ(outs[i].mins, want.mins) << i;
      ASSERT_EQ(jobs[i].stats.count, element_count(shapes[i]));
    }
  }
}

// Shapes and specs that take each of the CUDA backend's schedules (small groups in a warp's
// lanes, a warp or a block per group, the general two-pass path, per-tensor ranges); the CPU
// runs them too.
TEST_P(BackendSuite, EveryKernelScheduleMatchesTheReference) {
  struct Case {
    Shape shape;
    QuantSpec spec;
  };
  const Case cases[] = {
      {{64, 256}, spec_of(4, Granularity::kGroup, 32, ScaleDType::kF16)},  // small groups
      {{64, 2048}, spec_of(4, Granularity::kGroup, 512)},                   // a warp per group
      {{50, 240}, spec_of(3, Granularity::kGroup, 24)},                     // 3 octets per warp
      {{257, 1000}, spec_of(7, Granularity::kChannel)},                     // 125 octets per warp
      {{64, 4096}, spec_of(8, Granularity::kChannel)},                      // a block per group
      {{32, 16384}, spec_of(5, Granularity::kChannel)},                     // 2048 octets per block
      {{8, 40000}, spec_of(6, Granularity::kChannel)},                      // 5000 octets per block
      {{3, 65536}, spec_of(4, Granularity::kChannel)},                      // the longest block group
      {{4, 80000}, spec_of(6, Granularity::kChannel)},                      // tiles, then codes
      {{33, 1000}, spec_of(2, Granularity::kGroup, 100)},                   // short last groups
      {{1000, 1001}, spec_of(8, Granularity::kTensor)},                     // one range
  };
  for (const Case& c : cases) {
    expect_matches_reference(test::random_normal(element_count(c.shape), 11, 0.02f, 0.001f), c.shape, c.spec);
  }
}

// Quotients (x - min) / scale on, and a few ulps either side of, every half-integer k + 1/2:
// where a backend that divides through a reciprocal must fall back to the division (see
// host/cpu/reciprocal_code.h). Scales from subnormal-range to near the largest the binary32
// range allows, F32 and F16 parameters, every width.
TEST_P(BackendSuite, QuotientsNearHalfIntegersRoundLikeTheDivision) {
  // Bytes only: values on a tie may legitimately land a hair beyond half a step from the
  // decoded value (x - min is rounded first), which the float64 check of
  // expect_same_bytes() does not allow for.
  const auto expect_same_bytes = [&](const std::vector<float>& x, const Shape& shape, const QuantSpec& spec) {
    SCOPED_TRACE(::testing::Message() << "bits " << spec.bits << " G " << spec.group_size << " f16 "
                                      << (spec.scale_dtype == ScaleDType::kF16));
    const Encoded got = quantize(x, shape, spec), want = reference_quantize(x, shape, spec);
    ASSERT_EQ(got.codes, want.codes);
    ASSERT_EQ(got.scales, want.scales);
    ASSERT_EQ(got.mins, want.mins);
  };
  std::mt19937 rng(77);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  const float magnitudes[] = {1e-42f, 3e-39f, 1.2e-38f, 1.1754944e-38f * 255.0f, 1e-30f, 1e-7f, 0.01f, 1.0f,
                              3.0f, 1000.0f, 1e20f, 8.5e37f, 1.6e38f};
  for (int bits : {1, 2, 3, 4, 8}) {
    for (ScaleDType sd : {ScaleDType::kF32, ScaleDType::kF16}) {
      const float max_code = static_cast<float>(codec::max_code(bits));
      std::vector<float> x;
      for (float mag : magnitudes) {
        if (sd == ScaleDType::kF16 && (mag > 6e4f || mag < 1e-7f)) continue;  // F16 parameter range
        for (int rep = 0; rep < 4; ++rep) {
          // One group of 64: lo and hi first (they fix the parameters), then 62 crafted values.
          const float lo = (rep % 2 == 0 ? -mag : 0.25f * mag) * (0.5f + unit(rng));
          const float hi = rep == 3 ? lo + mag : std::max(lo, mag * (0.5f + unit(rng)));
          codec::AffineParams p{};
          if (codec::affine_params(lo, hi, bits, sd == ScaleDType::kF16, &p) != codec::ParamsStatus::kOk) continue;
          x.push_back(lo);
          x.push_back(hi);
          for (int j = 0; j < 62; ++j) {
            const int k = static_cast<int>(unit(rng) * max_code);  // a half-integer k + 1/2 < M
            float v = static_cast<float>(static_cast<double>(p.min) + (k + 0.5) * static_cast<double>(p.scale));
            for (int step = j % 9 - 4; step != 0; step += step < 0 ? 1 : -1) {
              v = std::nextafter(v, step < 0 ? -INFINITY : INFINITY);
            }
            x.push_back(std::min(hi, std::max(lo, v)));
          }
        }
      }
      expect_same_bytes(x, {static_cast<std::uint64_t>(x.size() / 64), 64}, spec_of(bits, Granularity::kGroup, 64, sd));
      expect_same_bytes(x, {static_cast<std::uint64_t>(x.size() / 64), 64}, spec_of(bits, Granularity::kGroup, 32, sd));
    }
  }
  // Per-tensor, where one scale serves long runs: every value on a boundary or next to one.
  std::vector<float> y;
  for (int k = 0; k < 255; ++k) {
    float v = (static_cast<float>(k) + 0.5f) * (2.0f / 255.0f) - 1.0f;
    y.push_back(v);
    y.push_back(std::nextafter(v, INFINITY));
    y.push_back(std::nextafter(v, -INFINITY));
  }
  y.push_back(-1.0f);
  y.push_back(1.0f);
  while (y.size() % 8 != 3) y.push_back(0.0f);
  expect_same_bytes(y, {y.size()}, spec_of(8, Granularity::kTensor));
}

// Decoded outputs of 24 MiB and more take the CPU's non-temporal store path: every element
// checked against fma(scale, q, min), with the output 32-, 16- and 4-byte aligned.
TEST_P(BackendSuite, LargeDecodesEqualTheCodecAtEveryAlignment) {
  const Shape shape{1600, 4000};  // 6.4M elements, 25.6 MB of float32
  const std::vector<float> x = test::random_normal(element_count(shape), 31);
  for (const QuantSpec& spec : {spec_of(4, Granularity::kGroup, 64), spec_of(3, Granularity::kChannel)}) {
    const Encoded e = quantize(x, shape, spec);
    const GroupGeometry g = group_geometry(shape, spec);
    std::vector<float> want(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) {
      const std::uint64_t row = i / g.cols, k = row * g.groups_per_row + (i - row * g.cols) / g.group_size;
      float scale, min;
      std::memcpy(&scale, &e.scales[4 * k], 4);
      std::memcpy(&min, &e.mins[4 * k], 4);
      std::uint32_t q = 0;
      for (int j = 0; j < spec.bits; ++j) {
        const std::size_t bit = i * spec.bits + j;
        q |= static_cast<std::uint32_t>((e.codes[bit / 8] >> (bit % 8)) & 1) << j;
      }
      want[i] = std::fma(scale, static_cast<float>(q), min);
    }
    std::vector<float> storage(x.size() + 16);
    for (std::size_t shift : {0u, 4u, 1u}) {  // floats: the buffer's own alignment, +16 bytes, +4 bytes
      float* out = storage.data() + ((32 - reinterpret_cast<std::uintptr_t>(storage.data()) % 32) % 32) / 4 + shift;
      std::fill(out, out + x.size(), std::numeric_limits<float>::quiet_NaN());
      AffineTensor a{e.codes.data(), e.scales.data(), e.mins.data(), spec.bits, g.stored_group_size, spec.scale_dtype};
      backend_->dequantize(a, MutableTensorView{"t", DType::kF32, shape, reinterpret_cast<std::byte*>(out)});
      ASSERT_EQ(0, std::memcmp(out, want.data(), want.size() * sizeof(float)))
          << "bits " << spec.bits << " shift " << shift;
    }
  }
}

// Decoding into bfloat16 and float16 rounds each binary32 decode once, exactly as the codec's
// conversions do: a large tensor (an output over 24 MiB, the non-temporal path) at two output
// alignments, and crafted parameters whose decodes are ties, subnormal in float16, beyond the
// float16 range, infinite or NaN (with a payload), over a length that ends mid-octet.
TEST_P(BackendSuite, DecodesIntoHalfDtypesRoundLikeTheCodec) {
  const auto expect_half_decode = [&](const AffineTensor& a, const Shape& shape, const std::vector<float>& want_f32,
                                      const char* what) {
    for (DType dtype : {DType::kBF16, DType::kF16}) {
      std::vector<std::uint16_t> want(want_f32.size());
      for (std::size_t i = 0; i < want.size(); ++i) {
        want[i] = dtype == DType::kBF16 ? codec::f32_to_bf16_bits(want_f32[i]) : codec::f32_to_f16_bits(want_f32[i]);
      }
      std::vector<std::uint16_t> storage(want.size() + 16);
      for (std::size_t shift : {0u, 1u}) {  // the buffer's own alignment, +2 bytes
        std::uint16_t* out = storage.data() + shift;
        std::fill(out, out + want.size(), 0xdead);
        backend_->dequantize(a, MutableTensorView{"t", dtype, shape, reinterpret_cast<std::byte*>(out)});
        for (std::size_t i = 0; i < want.size(); ++i) {
          ASSERT_EQ(out[i], want[i]) << what << " " << dtype_name(dtype) << " shift " << shift << " element " << i
                                     << " decoded " << want_f32[i];
        }
      }
    }
  };
  {
    const Shape shape{3200, 4000};  // 12.8M elements: 25.6 MB in a half dtype
    const std::vector<float> x = test::random_normal(element_count(shape), 41, 3.0f);
    const QuantSpec spec = spec_of(4, Granularity::kGroup, 64);
    const Encoded e = quantize(x, shape, spec);
    const GroupGeometry g = group_geometry(shape, spec);
    const std::vector<float> decoded = dequantize(e, shape, spec);  // checked against fma above
    expect_half_decode(AffineTensor{e.codes.data(), e.scales.data(), e.mins.data(), 4, g.stored_group_size,
                                    ScaleDType::kF32},
                       shape, decoded, "random");
  }
  // Eight groups of 8 codes (8 bits, codes 0..7 in every group), 61 elements.
  // (NaN and infinite parameters are refused: DamagedParametersAreRefusedNamingTheTensor.)
  const float scales[8] = {1.0f, 0x1p-20f, 20000.0f, 0x1p-149f, 3e38f, -0x1p-130f, 0.0078125f, 1.5e38f};
  const float mins[8] = {0.5f, 0x1p-14f, 1.0f, 0.0f, 0.0f, 1.0f, -0.00390625f, 1.6e38f};
  const Shape shape{61};
  std::vector<std::uint8_t> codes(61);
  std::vector<float> want(61);
  for (std::size_t i = 0; i < codes.size(); ++i) {
    codes[i] = static_cast<std::uint8_t>(i % 8 == 7 ? 255 : i % 8);
    want[i] = std::fma(scales[i / 8], static_cast<float>(codes[i]), mins[i / 8]);
  }
  expect_half_decode(AffineTensor{codes.data(), reinterpret_cast<const std::byte*>(scales),
                                  reinterpret_cast<const std::byte*>(mins), 8, 8, ScaleDType::kF32},
                     shape, want, "crafted");
}

// A NaN or infinite stored scale or min (a damaged container; the quantizer never writes one)
// is an error naming the tensor and the group, for F32 and F16 parameters, on every backend.
TEST_P(BackendSuite, DamagedParametersAreRefusedNamingTheTensor) {
  const Shape shape{4, 64};
  const std::vector<std::uint8_t> codes(4 * 64 / 2, 0x5a);  // 4 bits, groups of 64
  for (ScaleDType sd : {ScaleDType::kF32, ScaleDType::kF16}) {
    for (int which = 0; which < 4; ++which) {  // scale NaN, scale -inf, min NaN, min +inf
      std::vector<std::byte> scales(4 * scale_size(spec_of(4, Granularity::kGroup, 64, sd)));
      std::vector<std::byte> mins(scales.size());
      const std::size_t size = scales.size() / 4;
      for (std::size_t k = 0; k < 4; ++k) {
        const std::uint32_t one32 = 0x3f800000u;
        const std::uint16_t one16 = 0x3c00u;
        std::memcpy(scales.data() + k * size, size == 4 ? static_cast<const void*>(&one32) : &one16, size);
        std::memcpy(mins.data() + k * size, size == 4 ? static_cast<const void*>(&one32) : &one16, size);
      }
      const std::uint32_t bad32[4] = {0x7fc00001u, 0xff800000u, 0xffc00000u, 0x7f800000u};
      const std::uint16_t bad16[4] = {0x7e01u, 0xfc00u, 0xfe00u, 0x7c00u};
      std::byte* target = (which < 2 ? scales.data() : mins.data()) + 2 * size;  // group 2
      std::memcpy(target, size == 4 ? static_cast<const void*>(&bad32[which]) : &bad16[which], size);
      std::vector<float> out(4 * 64);
      try {
        backend_->dequantize(AffineTensor{codes.data(), scales.data(), mins.data(), 4, 64, sd},
                             MutableTensorView{"damaged.weight", DType::kF32, shape, reinterpret_cast<std::byte*>(out.data())});
        ADD_FAILURE() << "no error for case " << which;
      } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::kBadFormat);
        EXPECT_NE(std::string(e.what()).find("'damaged.weight'"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("group 2 "), std::string::npos) << e.what();
      }
    }
  }
}

TEST_P(BackendSuite, ErrorStatisticsAreMeaningful) {
  const std::vector<float> x = test::random_normal(4096, 8);
  ErrorStats s8, s4;
  quantize(x, {64, 64}, spec_of(8, Granularity::kChannel), &s8);
  quantize(x, {64, 64}, spec_of(4, Granularity::kChannel), &s4);
  EXPECT_EQ(s8.count, 4096u);
  EXPECT_GT(s8.sqnr_db(), 35.0);
  EXPECT_NEAR(s8.sqnr_db() - s4.sqnr_db(), 4 * 6.02, 3.0);  // ~6 dB per bit
  EXPECT_GT(s8.max_abs_error, 0.0);
}

// Rows of whole groups whose size is a multiple of 16, and whole tensors, F32 and F16 scales:
// the CPU's one-pass kernel and its per-tensor codes pass (float32, bfloat16 and float16 loads; codes
// packed in registers; the error measured in code units). Every width, among random groups: a constant group, one whose range is subnormal
// (scale below 2^-126: the division path), signed zeros. The codes must equal the reference on
// the input's binary32 values, and the statistics float64 sums over the decoded values.
TEST_P(BackendSuite, WholeGroupsOfEveryFloatEveryWidthAndTheirErrorStatistics) {
  const Shape shape{48, 1024};
  std::vector<float> x = test::random_normal(element_count(shape), 21, 0.05f, 0.01f);
  for (int i = 0; i < 16; ++i) {
    x[3 * 16 + i] = 0.5f;                                                  // constant
    x[5 * 16 + i] = std::bit_cast<float>(static_cast<std::uint32_t>(3 * i + 1));  // subnormal range
    x[7 * 16 + i] = i % 3 == 0 ? -0.0f : 0.0f;                             // signed zeros
    // A narrow range far from zero: F16 parameters (min 100.0, scale rounded) leave most of it
    // beyond min + M * scale, where the codes must clamp to M.
    x[9 * 16 + i] = 100.01f + 0.001f * static_cast<float>(i);
  }
  // The same below: F16 parameters round min 100.04 up to 100.0625, so whole groups of 16, 32
  // and 64 clip at code 0, by up to hundreds of codes, and their error statistics must count it.
  for (int i = 0; i < 64; ++i) x[16 * 16 + i] = 100.04f + 0.0002f * static_cast<float>(i);
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
    // The input in its dtype, and the binary32 values it stands for.
    std::vector<std::byte> bytes(x.size() * dtype_size(dtype));
    std::vector<float> as_f32(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) {
      if (dtype == DType::kF32) {
        as_f32[i] = x[i];
        std::memcpy(&bytes[4 * i], &x[i], 4);
      } else {
        const std::uint16_t h = dtype == DType::kBF16 ? codec::f32_to_bf16_bits(x[i]) : codec::f32_to_f16_bits(x[i]);
        as_f32[i] = dtype == DType::kBF16 ? codec::bf16_bits_to_f32(h) : codec::f16_bits_to_f32(h);
        std::memcpy(&bytes[2 * i], &h, 2);
      }
    }
    // Symmetric groups clip at their far end by up to one code, more than any rounding error:
    // the largest error is a clipped element's.
    for (int bits = 1; bits <= 8; ++bits) {
      for (std::uint64_t group : {0u, 16u, 32u, 48u, 64u, 128u, 1024u}) {  // 0: per-tensor
        for (const auto& [method, sd] : {std::pair{Method::kMinMax, ScaleDType::kF32}, std::pair{Method::kMinMax, ScaleDType::kF16},
                                         std::pair{Method::kSymmetric, ScaleDType::kF32}}) {
          SCOPED_TRACE(::testing::Message() << dtype_name(dtype) << " bits " << bits << " G " << group << " "
                                            << scale_dtype_name(sd) << " scales, " << method_name(method));
          const QuantSpec spec = group == 0      ? method_spec(method, bits, Granularity::kTensor, 64, sd)
                                 : group == 1024 ? method_spec(method, bits, Granularity::kChannel, 64, sd)
                                                 : method_spec(method, bits, Granularity::kGroup, group, sd);
          const GroupGeometry g = group_geometry(shape, spec);
          Encoded e;
          e.codes.assign(g.code_bytes, 0xa5);
          e.scales.assign(g.groups * scale_size(spec), std::byte{0xa5});
          e.mins.assign(g.groups * scale_size(spec), std::byte{0xa5});
          const ErrorStats stats = backend_->quantize(TensorView{"t", dtype, shape, bytes.data()}, spec,
                                                      AffineBuffers{e.codes.data(), e.scales.data(), e.mins.data()});
          const Encoded want = reference_quantize(as_f32, shape, spec);
          ASSERT_EQ(e.codes, want.codes);
          ASSERT_EQ(e.scales, want.scales);
          if (method == Method::kSymmetric) {  // no mins are written: the poison is untouched
            ASSERT_EQ(e.mins, std::vector<std::byte>(e.mins.size(), std::byte{0xa5}));
          } else {
            ASSERT_EQ(e.mins, want.mins);
          }
          const std::vector<float> decoded = dequantize(e, shape, spec);
          double signal = 0, error = 0, max_error = 0;
          for (std::size_t i = 0; i < x.size(); ++i) {
            const double d = static_cast<double>(as_f32[i]) - decoded[i];
            signal += static_cast<double>(as_f32[i]) * as_f32[i];
            error += d * d;
            max_error = std::max(max_error, std::fabs(d));
          }
          EXPECT_EQ(stats.count, x.size());
          EXPECT_NEAR(stats.signal_energy, signal, signal * 1e-5);
          EXPECT_NEAR(stats.error_energy, error, error * 1e-3);
          EXPECT_NEAR(stats.max_abs_error, max_error, max_error * 1e-3);
        }
      }
    }
  }
}

// A group whose range overflows binary32, and NaN, in the middle of a tensor of whole groups:
// the error names the tensor and the group or element, whatever schedule met it.
TEST_P(BackendSuite, BadGroupsAmongWholeGroupsAreErrorsNamingThem) {
  std::vector<float> x = test::random_normal(64 * 1024, 3);
  x[37 * 64 + 5] = 3e38f;
  x[37 * 64 + 9] = -3e38f;
  try {
    quantize(x, {64, 1024}, spec_of(4, Granularity::kGroup, 64));
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kBadData);
    EXPECT_NE(std::string(e.what()).find("group 37 "), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("binary32"), std::string::npos) << e.what();
  }
  x[37 * 64 + 5] = x[37 * 64 + 9] = 0.0f;
  // A group with no finite F16 scale (range 1e6 / 15 > 65504).
  x[37 * 64 + 5] = 1e6f;
  try {
    quantize(x, {64, 1024}, spec_of(4, Granularity::kGroup, 64, ScaleDType::kF16));
    ADD_FAILURE() << "no error for an F16 scale overflow";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kBadData);
    EXPECT_NE(std::string(e.what()).find("group 37 "), std::string::npos) << e.what();
  }
  x[37 * 64 + 5] = 0.0f;
  x[40000] = std::numeric_limits<float>::quiet_NaN();
  {  // the same NaN in a bfloat16 tensor
    std::vector<std::uint16_t> bf16(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) bf16[i] = codec::f32_to_bf16_bits(x[i]);
    std::vector<std::uint8_t> codes(x.size() / 2);
    std::vector<std::byte> scales(1024 * 4), mins(1024 * 4);
    try {
      backend_->quantize(TensorView{"t", DType::kBF16, {64, 1024}, reinterpret_cast<const std::byte*>(bf16.data())},
                         spec_of(4, Granularity::kGroup, 64), AffineBuffers{codes.data(), scales.data(), mins.data()});
      ADD_FAILURE() << "no error for a bfloat16 NaN";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("element 40000 is NaN"), std::string::npos) << e.what();
    }
  }
  for (int bits : {2, 3, 4, 8}) {
    try {
      quantize(x, {64, 1024}, spec_of(bits, Granularity::kGroup, 64));
      ADD_FAILURE() << "no error at " << bits << " bits";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kBadData);
      EXPECT_NE(std::string(e.what()).find("element 40000 is NaN"), std::string::npos) << e.what();
    }
  }
}

// --- symmetric and mse (docs/container-format.md §4.1-4.2) -------------------------------------

// Groups that stress a range rule: constant (zero and not), all of one sign, a tie hi == -lo,
// a tiny range, an outlier, subnormals, then plain noise.
std::vector<float> hard_groups(std::size_t n, std::uint32_t seed) {
  std::vector<float> x = test::random_normal(n, seed, 0.02f);
  std::mt19937 rng(seed);
  for (std::size_t g = 0; g * 16 < n; ++g) {
    const std::size_t b = g * 16, e = std::min(n, b + 16);
    switch (g % 9) {
      case 0: std::fill(x.begin() + b, x.begin() + e, 0.0f); break;
      case 1: std::fill(x.begin() + b, x.begin() + e, -1.75f); break;
      case 2: for (std::size_t i = b; i < e; ++i) x[i] = std::fabs(x[i]) + 0.5f; break;
      case 3: for (std::size_t i = b; i < e; ++i) x[i] = -std::fabs(x[i]); break;
      case 4: x[b] = 0.25f; if (b + 1 < e) x[b + 1] = -0.25f; break;
      case 5: for (std::size_t i = b; i < e; ++i) x[i] = 1.0f + 1e-6f * static_cast<float>(i - b); break;
      case 6: x[b + (rng() % (e - b))] = 3.0f; break;
      case 7: for (std::size_t i = b; i < e; ++i) x[i] = std::bit_cast<float>(static_cast<std::uint32_t>(rng() % 0x7fffff)); break;
      default: break;
    }
  }
  return x;
}

TEST_P(BackendSuite, SymmetricAndMseMatchTheReferenceEverywhere) {
  for (Method m : {Method::kSymmetric, Method::kMse}) {
    SCOPED_TRACE(std::string(method_name(m)));
    for (std::uint64_t n : {1ull, 7ull, 8ull, 9ull, 1023ull, 100003ull}) {
      const std::vector<float> x = hard_groups(n, static_cast<std::uint32_t>(n) + 11);
      for (int bits = 1; bits <= 8; ++bits) {
        for (Granularity g : kAllGranularities) {
          if (n > 4096 && bits != 2 && bits != 4 && bits != 8) continue;
          expect_matches_reference(x, {n}, method_spec(m, bits, g, 7));
          expect_matches_reference(x, {n}, method_spec(m, bits, g, 16, ScaleDType::kF16));
        }
      }
    }
    for (const Shape& shape : {Shape{13, 77}, Shape{64, 128}, Shape{3, 5, 7}, Shape{257, 1000}}) {
      const std::vector<float> x = hard_groups(element_count(shape), 5);
      for (int bits : {1, 2, 3, 4, 6, 8}) {
        for (Granularity g : kAllGranularities) {
          for (std::uint64_t group : {8ull, 27ull, 64ull}) {
            if (g != Granularity::kGroup && group != 64) continue;
            expect_matches_reference(x, shape, method_spec(m, bits, g, group));
          }
        }
        expect_matches_reference(x, shape, method_spec(m, bits, Granularity::kGroup, 32, ScaleDType::kF16));
      }
    }
    std::vector<float> huge = test::random_normal(4099, 5, 1e37f);
    huge[0] = 1.6e38f;
    huge[1] = -1.6e38f;
    expect_matches_reference(huge, {4099}, method_spec(m, 6, Granularity::kTensor));
    expect_matches_reference(huge, {4099}, method_spec(m, 3, Granularity::kGroup, 64));
  }
}

// Ranges that may clip (symmetric; F16 parameters) skip the clamp in groups whose ends code
// inside [-1/2, M + 1/2] (codec::reciprocal_coverage): groups whose far end sits exactly on,
// just inside and just outside that bound, and F16-rounded ends that fall just below code 0,
// must code as the codec does, on the whole-group kernels (groups of 16) and per tensor.
TEST_P(BackendSuite, RangesThatMayClipCodeAsTheCodecAtTheirBounds) {
  std::mt19937 rng(31);
  std::uniform_real_distribution<float> inside(0.0f, 1.0f);
  for (int bits = 1; bits <= 8; ++bits) {
    const float k = static_cast<float>(1 << (bits - 1)), top = 2.0f * k - 1.0f;
    std::vector<float> x;
    // hi = k: symmetric scale -1 and min k exactly (F32), so lo = k - (M + 1/2) is on the bound.
    const float on_bound = k - (top + 0.5f);
    for (float lo : {on_bound, std::nextafter(on_bound, 0.0f), std::nextafter(on_bound, -1e9f), on_bound + 0x1p-12f,
                     on_bound - 0x1p-12f, on_bound + 0.25f, -k, -k + 0.75f}) {
      std::vector<float> row(16);
      row[0] = k;
      row[1] = lo;
      for (int i = 2; i < 16; ++i) row[i] = lo + (k - lo) * inside(rng);
      row[15] = std::nextafter(lo, k);
      x.insert(x.end(), row.begin(), row.end());
    }
    for (int j = 1; j <= 8; ++j) {  // ends that F16 parameters do not represent
      std::vector<float> row(16);
      const float hi = 1.0f + static_cast<float>(j) * 0x1p-19f, lo = -hi * (1.0f - 0.3f / k);
      row[0] = hi;
      row[1] = lo;
      for (int i = 2; i < 16; ++i) row[i] = lo + (hi - lo) * inside(rng);
      x.insert(x.end(), row.begin(), row.end());
    }
    const Shape shape{x.size() / 16, 16};
    for (Method m : {Method::kMinMax, Method::kSymmetric}) {
      for (ScaleDType sd : {ScaleDType::kF32, ScaleDType::kF16}) {
        SCOPED_TRACE(::testing::Message() << method_name(m) << " " << scale_dtype_name(sd));
        expect_matches_reference(x, shape, method_spec(m, bits, Granularity::kGroup, 16, sd));
        expect_matches_reference(x, shape, method_spec(m, bits, Granularity::kChannel, 64, sd));
        for (std::size_t row : {0, 1, 2, 8, 12}) {  // one row as a whole tensor: the per-tensor coder
          const std::vector<float> one(x.begin() + 16 * row, x.begin() + 16 * row + 16);
          expect_matches_reference(one, {16}, method_spec(m, bits, Granularity::kTensor, 64, sd));
        }
      }
    }
  }
}

// The error of each group of `x` decoded as `d`, in binary64 (any order: its rounding is far
// below the margin of the search's binary32 sums).
std::vector<double> group_errors(const std::vector<float>& x, const std::vector<float>& d, const GroupGeometry& g) {
  std::vector<double> err(g.groups, 0.0);
  for (std::size_t i = 0; i < x.size(); ++i) {
    const std::uint64_t row = i / g.cols, k = row * g.groups_per_row + (i - row * g.cols) / g.group_size;
    const double e = static_cast<double>(x[i]) - static_cast<double>(d[i]);
    err[k] += e * e;
  }
  return err;
}

TEST_P(BackendSuite, MseIsNeverWorseThanMinMaxOnAnyGroup) {
  const Shape shape{96, 300};
  std::vector<float> x = test::random_normal(element_count(shape), 77, 0.03f);
  std::mt19937 rng(78);
  for (int k = 0; k < 200; ++k) x[rng() % x.size()] *= 8.0f;  // outliers, as trained weights have
  for (int bits : {1, 2, 3, 4, 8}) {
    for (Granularity gran : kAllGranularities) {
      for (ScaleDType sd : {ScaleDType::kF32, ScaleDType::kF16}) {
        SCOPED_TRACE(::testing::Message() << bits << " bits " << granularity_name(gran) << " " << scale_dtype_name(sd));
        const QuantSpec minmax = spec_of(bits, gran, 64, sd), mse = method_spec(Method::kMse, bits, gran, 64, sd);
        const GroupGeometry g = group_geometry(shape, minmax);
        ErrorStats minmax_stats, mse_stats;
        const std::vector<double> before = group_errors(x, dequantize(quantize(x, shape, minmax, &minmax_stats), shape, minmax), g);
        const std::vector<double> after = group_errors(x, dequantize(quantize(x, shape, mse, &mse_stats), shape, mse), g);
        std::uint64_t better = 0;
        // The search compares errors summed in binary32 lanes: by the exact error its choice is
        // at most 2 * (k + 2) * 2^-24 worse than min-max, k <= 256 elements per lane and block
        // (docs/container-format.md §4.1 step 3).
        const double margin = 2.0 * (256 + 2) * 0x1p-24;
        for (std::uint64_t k = 0; k < g.groups; ++k) {
          ASSERT_LE(after[k], before[k] * (1 + margin)) << "group " << k;
          better += after[k] < before[k];
        }
        EXPECT_GT(better, 0u) << "the search never found anything better than min-max";
        EXPECT_GT(mse_stats.sqnr_db(), minmax_stats.sqnr_db());
      }
    }
  }
}

TEST_P(BackendSuite, SymmetricStoresNoMinAndDecodesZeroAndItsExtremeExactly) {
  const Shape shape{40, 64};
  std::vector<float> x = test::random_normal(element_count(shape), 9, 0.1f);
  for (std::size_t i = 0; i < x.size(); i += 5) x[i] = 0.0f;
  for (int bits = 1; bits <= 8; ++bits) {
    const QuantSpec spec = method_spec(Method::kSymmetric, bits, Granularity::kGroup, 32);
    const GroupGeometry g = group_geometry(shape, spec);
    const std::vector<float> d = dequantize(quantize(x, shape, spec), shape, spec);
    for (std::uint64_t k = 0; k < g.groups; ++k) {
      float extreme = 0.0f;
      for (std::uint64_t i = k * 32; i < k * 32 + 32; ++i) extreme = std::fabs(x[i]) > std::fabs(extreme) ? x[i] : extreme;
      for (std::uint64_t i = k * 32; i < k * 32 + 32; ++i) {
        if (x[i] == 0.0f) {
          ASSERT_EQ(std::bit_cast<std::uint32_t>(d[i]), 0u) << "bits " << bits << " element " << i;
        }
        if (x[i] == extreme) {
          ASSERT_EQ(d[i], extreme) << "bits " << bits << " element " << i;
        }
      }
    }
  }
}

TEST_P(BackendSuite, SymmetricAndMseRefuseWhatMinMaxRefuses) {
  for (Method m : {Method::kSymmetric, Method::kMse}) {
    for (Granularity gran : kAllGranularities) {
      for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
        std::vector<float> x = test::random_normal(5000, 1);
        x[4321] = bad;
        try {
          quantize(x, {50, 100}, method_spec(m, 4, gran, 64));
          ADD_FAILURE() << method_name(m) << ": no error for " << bad;
        } catch (const Error& e) {
          EXPECT_EQ(e.code(), ErrorCode::kBadData);
          EXPECT_NE(std::string(e.what()).find("4321"), std::string::npos) << e.what();
        }
      }
    }
    // A scale beyond binary16: symmetric's is m / 2^(b-1), mse starts from min-max's.
    std::vector<float> x = test::random_normal(64, 2);
    x[3] = 1e9f;
    try {
      quantize(x, {64}, method_spec(m, 4, Granularity::kTensor, 64, ScaleDType::kF16));
      ADD_FAILURE() << method_name(m) << ": no error for an F16 overflow";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kBadData);
      EXPECT_NE(std::string(e.what()).find("F16"), std::string::npos) << e.what();
    }
  }
}

// --- the coding stage on its own (Backend::encode) ---------------------------------------------

TEST_P(BackendSuite, EncodeWithAMethodsParametersWritesItsCodes) {
  for (const Shape& shape : {Shape{13, 77}, Shape{64, 128}, Shape{1023}}) {
    const std::vector<float> x = hard_groups(element_count(shape), 21);
    const TensorView view{"t", DType::kF32, shape, reinterpret_cast<const std::byte*>(x.data())};
    for (Method m : {Method::kMinMax, Method::kSymmetric, Method::kMse}) {
      for (int bits : {1, 3, 4, 8}) {
        for (Granularity gran : kAllGranularities) {
          for (ScaleDType sd : {ScaleDType::kF32, ScaleDType::kF16}) {
            const QuantSpec spec = method_spec(m, bits, gran, 32, sd);
            SCOPED_TRACE(::testing::Message() << method_name(m) << " " << bits << " bits " << granularity_name(gran)
                                              << " " << scale_dtype_name(sd) << " n " << x.size());
            ErrorStats quantized_stats;
            const Encoded e = quantize(x, shape, spec, &quantized_stats);
            std::vector<std::uint8_t> codes(e.codes.size(), 0x5a);
            const ErrorStats s = backend_->encode(view, spec, e.scales.data(),
                                                  m == Method::kSymmetric ? nullptr : e.mins.data(), codes.data());
            ASSERT_EQ(codes, e.codes);
            EXPECT_EQ(s.count, quantized_stats.count);
            EXPECT_NEAR(s.error_energy, quantized_stats.error_energy, 1e-5 * quantized_stats.error_energy + 1e-30);
          }
        }
      }
    }
  }
}

TEST_P(BackendSuite, EncodeWithAnyFiniteParametersClampsLikeTheCodec) {
  const Shape shape{37, 96};
  const std::vector<float> x = hard_groups(element_count(shape), 33);
  const TensorView view{"t", DType::kF32, shape, reinterpret_cast<const std::byte*>(x.data())};
  std::mt19937 rng(34);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (int bits : {2, 5, 8}) {
    const QuantSpec spec = spec_of(bits, Granularity::kGroup, 16);
    const GroupGeometry g = group_geometry(shape, spec);
    // Ranges that clip most elements, negative and zero scales, tiny and huge ones.
    std::vector<float> scales(g.groups), mins(g.groups);
    for (std::uint64_t k = 0; k < g.groups; ++k) {
      const float kinds[] = {u(rng) * 0.01f, -0.003f, 0.0f, 1e-30f, 1e20f, 0x1p-130f};
      scales[k] = kinds[k % 6];
      mins[k] = u(rng) * 0.05f;
    }
    std::vector<std::uint8_t> codes(g.code_bytes, 0x5a);
    backend_->encode(view, spec, reinterpret_cast<const std::byte*>(scales.data()),
                     reinterpret_cast<const std::byte*>(mins.data()), codes.data());
    for (std::size_t i = 0; i < x.size(); ++i) {
      const std::uint64_t row = i / g.cols, k = row * g.groups_per_row + (i - row * g.cols) / g.group_size;
      std::uint32_t q = 0;
      for (int j = 0; j < bits; ++j) {
        const std::size_t bit = i * bits + j;
        q |= static_cast<std::uint32_t>((codes[bit / 8] >> (bit % 8)) & 1) << j;
      }
      ASSERT_EQ(q, codec::affine_code(x[i], codec::AffineParams{scales[k], mins[k]}, static_cast<float>(codec::max_code(bits))))
          << "bits " << bits << " element " << i << " scale " << scales[k];
    }
  }
}

TEST_P(BackendSuite, EncodeRefusesNonFiniteParametersAndValues) {
  const Shape shape{4, 32};
  std::vector<float> x = test::random_normal(element_count(shape), 3);
  const QuantSpec spec = spec_of(4, Granularity::kGroup, 32);
  std::vector<float> scales(4, 0.1f), mins(4, -1.0f);
  std::vector<std::uint8_t> codes(group_geometry(shape, spec).code_bytes);
  const TensorView view{"t", DType::kF32, shape, reinterpret_cast<const std::byte*>(x.data())};
  scales[2] = std::numeric_limits<float>::infinity();
  try {
    backend_->encode(view, spec, reinterpret_cast<const std::byte*>(scales.data()),
                     reinterpret_cast<const std::byte*>(mins.data()), codes.data());
    ADD_FAILURE() << "no error for an infinite scale";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUsage);
    EXPECT_NE(std::string(e.what()).find("group 2"), std::string::npos) << e.what();
  }
  scales[2] = 0.1f;
  x[77] = std::numeric_limits<float>::quiet_NaN();
  try {
    backend_->encode(view, spec, reinterpret_cast<const std::byte*>(scales.data()),
                     reinterpret_cast<const std::byte*>(mins.data()), codes.data());
    ADD_FAILURE() << "no error for a NaN element";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kBadData);
    EXPECT_NE(std::string(e.what()).find("77"), std::string::npos) << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, BackendSuite,
                         ::testing::Values(BackendCase{"cpu_1thread", BackendKind::kCpu, 1},
                                           BackendCase{"cpu_all_threads", BackendKind::kCpu, 0},
                                           BackendCase{"cuda", BackendKind::kCuda, 0},
                                           // ~200 KiB slots: large tensors split into pieces and
                                           // per-tensor ranges take the first pass.
                                           BackendCase{"cuda_small_slots", BackendKind::kCuda, 0, 4u << 20}),
                         [](const auto& param_info) { return std::string(param_info.param.name); });

}  // namespace
}  // namespace wq
