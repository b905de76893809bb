// Tiny checkpoints written by the real frameworks and committed (tests/data/fixtures, made by
// tools/make_test_fixtures.py), so every reader is tested even without torch or numpy here.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>

#include <nlohmann/json.hpp>

#include "wq/checkpoint.h"
#include "wq/codec/half.h"

namespace wq {
namespace {

std::vector<double> as_doubles(const TensorView& v) {
  std::vector<double> out(v.numel());
  for (std::size_t i = 0; i < out.size(); ++i) {
    switch (v.dtype) {
      case DType::kF32: { float x; std::memcpy(&x, v.data + 4 * i, 4); out[i] = x; break; }
      case DType::kF16: { std::uint16_t h; std::memcpy(&h, v.data + 2 * i, 2); out[i] = codec::f16_bits_to_f32(h); break; }
      case DType::kI64: { std::int64_t x; std::memcpy(&x, v.data + 8 * i, 8); out[i] = static_cast<double>(x); break; }
      default: ADD_FAILURE() << "unexpected dtype";
    }
  }
  return out;
}

void expect_file(const std::string& file, const std::string& prefix, const std::vector<std::string>& names) {
  SCOPED_TRACE(file);
  std::ifstream in(std::string(WQ_TEST_DATA_DIR) + "/fixtures/expected.json");
  const nlohmann::json expected = nlohmann::json::parse(in);
  std::unique_ptr<CheckpointReader> r = open_checkpoint(std::string(WQ_TEST_DATA_DIR) + "/fixtures/" + file);
  ASSERT_EQ(r->tensors().size(), names.size());
  for (std::size_t i = 0; i < names.size(); ++i) {
    const TensorInfo& t = r->tensors()[i];
    EXPECT_EQ(t.name, names[i]);
    const nlohmann::json& e = expected.at(prefix + names[i]);
    EXPECT_EQ(t.shape, e[1].get<Shape>()) << t.name;
    EXPECT_EQ(as_doubles(r->tensor(i)), e[2].get<std::vector<double>>()) << t.name;
    r->release(i);
  }
}

TEST(CommittedFixtures, TorchZipAndLegacy) {
  expect_file("tiny_zip.pt", "pt:", {"w", "h", "n", "t"});
  expect_file("tiny_legacy.pt", "pt:", {"w", "h", "n", "t"});
}

TEST(CommittedFixtures, PaddleProtocols2And4) {
  expect_file("tiny_p2.pdparams", "np:", {"w", "b"});
  expect_file("tiny_p4.pdparams", "np:", {"w", "b"});
}

TEST(CommittedFixtures, NumpyNpzStoredAndDeflatedAndFortranNpy) {
  expect_file("tiny.npz", "np:", {"w", "b"});
  expect_file("tiny_deflated.npz", "np:", {"w", "b"});
  std::unique_ptr<CheckpointReader> r = open_checkpoint(std::string(WQ_TEST_DATA_DIR) + "/fixtures/tiny.npy");
  ASSERT_EQ(r->tensors().size(), 1u);
  const std::vector<double> v = as_doubles(r->tensor(0));
  for (std::size_t i = 0; i < v.size(); ++i) EXPECT_EQ(v[i], static_cast<double>(i) / 8) << i;  // Fortran made row-major
}

}  // namespace
}  // namespace wq
