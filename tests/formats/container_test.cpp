// The WQ container: written by quantize_file, read back, validated against its parts and
// checksums, decoded; and every disagreement between metadata and parts refused.
#include <gtest/gtest.h>

#include <sstream>

#include <cmath>

#include "container/checksum.h"
#include "formats/file_support.h"
#include "formats/safetensors_file.h"
#include "formats/safetensors_writer.h"
#include "pipeline/input_checksum.h"
#include "test_support.h"
#include "wq/container.h"
#include "wq/error.h"
#include "wq/pipeline.h"

namespace wq {
namespace {

using test::TempDir;

struct Fixture {
  std::vector<float> weight = test::random_normal(40 * 30, 1, 0.1f);
  std::vector<float> bias = test::random_normal(40, 2);
  std::int64_t steps = 7;
};

void write_checkpoint(const std::string& path, const Fixture& f) {
  detail::AtomicFile out(path);
  detail::SafetensorsWriter w(out, {{"layer.weight", DType::kF32, {40, 30}}, {"layer.bias", DType::kF32, {40}},
                                    {"steps", DType::kI64, {}}}, {{"format", "pt"}});
  w.append(f.weight.data(), f.weight.size() * 4);
  w.append(f.bias.data(), f.bias.size() * 4);
  w.append(&f.steps, 8);
  w.finish();
  out.commit();
}

class ContainerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    write_checkpoint(input_, fixture_);
    backend_ = make_backend({BackendKind::kCpu, 0, 0}).backend;
    options_.spec.bits = 4;
    options_.spec.granularity = Granularity::kGroup;
    options_.spec.group_size = 16;
  }

  void expect_rejected(const std::string& path, ErrorCode code, const std::string& needle) {
    try {
      std::unique_ptr<ContainerReader> c = ContainerReader::open(path);
      for (std::size_t i = 0; i < c->tensors().size(); ++i) c->verify(i);
      ADD_FAILURE() << "accepted; expected '" << needle << "'";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), code) << e.what();
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  }

  TempDir dir_;
  std::string input_ = dir_.file("model.safetensors");
  std::string output_ = dir_.file("model.wq.safetensors");
  Fixture fixture_;
  std::unique_ptr<Backend> backend_;
  QuantizeOptions options_;
};

TEST_F(ContainerTest, RoundTripFollowsThePolicyAndTheSpec) {
  const QuantizeReport report = quantize_file(input_, output_, *backend_, options_);
  EXPECT_EQ(report.tensors.size(), 3u);
  EXPECT_EQ(report.output_bytes, std::filesystem::file_size(output_));
  std::unique_ptr<ContainerReader> c = ContainerReader::open(output_);
  EXPECT_EQ(c->producer(), "wq-gpu 0.1.0");
  EXPECT_EQ(c->source().file, "model.safetensors");
  EXPECT_EQ(c->source().format, "safetensors");
  EXPECT_EQ(c->source().bytes, std::filesystem::file_size(input_));
  const std::vector<ContainerTensor>& t = c->tensors();
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t[0].name, "layer.weight");  // source order kept
  EXPECT_EQ(t[0].encoding, Encoding::kAffine);
  EXPECT_EQ(t[0].bits, 4);
  EXPECT_EQ(t[0].group_size, 16u);
  EXPECT_EQ(t[0].parts, (std::vector<std::string>{"layer.weight.__codes", "layer.weight.__scale", "layer.weight.__min"}));
  EXPECT_EQ(t[1].encoding, Encoding::kRaw);  // 1-d: kept by default
  EXPECT_EQ(t[2].encoding, Encoding::kRaw);
  // safetensors metadata: format pt, for loaders that insist on it.
  EXPECT_EQ(detail::SafetensorsFile(output_).metadata().at("format"), "pt");

  std::vector<float> decoded(fixture_.weight.size());
  c->decode(0, *backend_, MutableTensorView{"layer.weight", DType::kF32, {40, 30}, reinterpret_cast<std::byte*>(decoded.data())});
  double err = 0, sig = 0;
  for (std::size_t i = 0; i < decoded.size(); ++i) {
    err += std::pow(decoded[i] - fixture_.weight[i], 2);
    sig += std::pow(fixture_.weight[i], 2);
  }
  EXPECT_GT(10 * std::log10(sig / err), 15.0);
  std::vector<float> bias(40);
  c->decode(1, *backend_, MutableTensorView{"layer.bias", DType::kF32, {40}, reinterpret_cast<std::byte*>(bias.data())});
  EXPECT_EQ(bias, fixture_.bias);

  // decode_file gives a plain safetensors with the original names, dtypes and shapes.
  decode_file(output_, dir_.file("decoded.safetensors"), *backend_, {});
  detail::SafetensorsFile d(dir_.file("decoded.safetensors"));
  ASSERT_EQ(d.entries().size(), 3u);
  EXPECT_EQ(d.entries()[0].name, "layer.weight");
  EXPECT_EQ(d.entries()[2].dtype, DType::kI64);
  EXPECT_EQ(std::memcmp(d.data(d.entries()[0]), decoded.data(), decoded.size() * 4), 0);
}

TEST_F(ContainerTest, AllQuantizesOneDimensionalTensorsAndCastsWork) {
  options_.all = true;
  quantize_file(input_, output_, *backend_, options_);
  EXPECT_EQ(ContainerReader::open(output_)->tensors()[1].encoding, Encoding::kAffine);
  options_.spec.method = Method::kBf16;
  quantize_file(input_, output_, *backend_, options_);
  const auto c = ContainerReader::open(output_);
  EXPECT_EQ(c->tensors()[0].encoding, Encoding::kCast);
  EXPECT_EQ(c->tensors()[0].data_dtype, DType::kBF16);
}

// open_checkpoint() reads a container as the tensors it encodes: codes decoded as decode() gives
// them (and marked as stored quantized), raw tensors and casts as stored, in the container's order.
TEST_F(ContainerTest, AContainerOpensAsTheCheckpointItEncodes) {
  quantize_file(input_, output_, *backend_, options_);
  std::unique_ptr<ContainerReader> c = ContainerReader::open(output_);
  std::unique_ptr<CheckpointReader> r = open_checkpoint(output_);
  EXPECT_EQ(r->format(), "wq");
  ASSERT_EQ(r->tensors().size(), 3u);
  EXPECT_EQ(r->tensors()[0].name, "layer.weight");
  EXPECT_EQ(r->tensors()[0].shape, (Shape{40, 30}));
  EXPECT_EQ(r->tensors()[2].dtype, DType::kI64);
  EXPECT_EQ(r->stored_quantized_as(0), "4-bit minmax codes");
  EXPECT_EQ(r->stored_quantized_as(1), "");
  std::vector<float> decoded(fixture_.weight.size());
  c->decode(0, *backend_, MutableTensorView{"layer.weight", DType::kF32, {40, 30}, reinterpret_cast<std::byte*>(decoded.data())});
  const TensorView w = r->tensor(0);
  EXPECT_EQ(std::memcmp(w.data, decoded.data(), decoded.size() * 4), 0);
  EXPECT_EQ(std::memcmp(r->tensor(1).data, fixture_.bias.data(), fixture_.bias.size() * 4), 0);
  EXPECT_EQ(*reinterpret_cast<const std::int64_t*>(r->tensor(2).data), fixture_.steps);
  r->release(0);
  // Casts read as the stored half precision values.
  options_.spec.method = Method::kFp16;
  quantize_file(input_, output_, *backend_, options_);
  r = open_checkpoint(output_);
  EXPECT_EQ(r->tensors()[0].dtype, DType::kF16);
  EXPECT_EQ(r->stored_quantized_as(0), "");
  // Re-encoding the codes needs allow_requantize; then it works, naming the tensor otherwise.
  options_.spec.method = Method::kMinMax;
  try {
    quantize_file(output_, dir_.file("again.wq.safetensors"), *backend_, options_);
  } catch (const Error& e) {
    ADD_FAILURE() << "cast values are plain F16 values: " << e.what();
  }
  quantize_file(input_, output_, *backend_, options_);
  EXPECT_THROW(quantize_file(output_, dir_.file("again.wq.safetensors"), *backend_, options_), Error);
  options_.allow_requantize = true;
  EXPECT_NO_THROW(quantize_file(output_, dir_.file("again.wq.safetensors"), *backend_, options_));
}

TEST_F(ContainerTest, OutputIsDeterministic) {
  quantize_file(input_, output_, *backend_, options_);
  const std::string first = test::read_bytes(output_);
  std::unique_ptr<Backend> one_thread = make_backend({BackendKind::kCpu, 1, 0}).backend;
  quantize_file(input_, output_, *one_thread, options_);
  EXPECT_EQ(test::read_bytes(output_), first);
}

TEST_F(ContainerTest, AFlippedByteIsCaughtAndNamed) {
  quantize_file(input_, output_, *backend_, options_);
  std::string bytes = test::read_bytes(output_);
  bytes[bytes.size() - 200] ^= 0x10;  // inside some tensor's data
  test::write_bytes(output_, bytes);
  expect_rejected(output_, ErrorCode::kIntegrity, "is corrupt");
  std::unique_ptr<ContainerReader> c = ContainerReader::open(output_);
  std::vector<float> out(1200);
  EXPECT_THROW(c->decode(0, *backend_, MutableTensorView{"layer.weight", DType::kF32, {40, 30}, reinterpret_cast<std::byte*>(out.data())}), Error);
}

TEST_F(ContainerTest, MetadataThatDisagreesWithPartsIsRefused) {
  quantize_file(input_, output_, *backend_, options_);
  const std::string good = test::read_bytes(output_);
  const auto with_wq = [&](auto&& edit) {
    test::write_bytes(output_, good);
    test::edit_header(output_, [&](nlohmann::ordered_json& h) {
      nlohmann::ordered_json wq = nlohmann::ordered_json::parse(h["__metadata__"]["wq"].get<std::string>());
      edit(wq);
      h["__metadata__"]["wq"] = wq.dump();
    });
  };
  with_wq([](auto& wq) { wq["tensors"]["layer.weight"]["codes"] = "nope"; });
  expect_rejected(output_, ErrorCode::kBadFormat, "'nope' is missing");
  with_wq([](auto& wq) { wq["tensors"]["layer.weight"]["bits"] = 9; });
  expect_rejected(output_, ErrorCode::kBadFormat, "outside 1..8");
  with_wq([](auto& wq) { wq["tensors"]["layer.weight"]["bits"] = 5; });
  expect_rejected(output_, ErrorCode::kBadFormat, "expected U8");
  with_wq([](auto& wq) { wq["tensors"]["layer.weight"]["group_size"] = 8; });
  expect_rejected(output_, ErrorCode::kBadFormat, "layer.weight.__scale");
  with_wq([](auto& wq) { wq["tensors"]["layer.weight"]["encoding"] = "zstd"; });
  expect_rejected(output_, ErrorCode::kBadFormat, "unknown encoding 'zstd'");
  with_wq([](auto& wq) { wq["tensors"].erase("steps"); });
  expect_rejected(output_, ErrorCode::kBadFormat, "'steps' belongs to no tensor");
  with_wq([](auto& wq) { wq["version"] = 3; });
  expect_rejected(output_, ErrorCode::kBadFormat, "version 3");
  with_wq([](auto& wq) { wq["tensors"]["steps"]["xxh3"] = "xyz"; });
  expect_rejected(output_, ErrorCode::kBadFormat, "xxh3");
  with_wq([](auto& wq) { wq["tensors"]["steps"]["xxh3"] = "0123456789abcdef"; });
  expect_rejected(output_, ErrorCode::kIntegrity, "'steps' is corrupt");
  // The metadata's own structure (parsed as a stream: container/metadata_parser.cpp).
  with_wq([](auto& wq) { wq["tensors"]["steps"] = nlohmann::ordered_json::array({1}); });
  expect_rejected(output_, ErrorCode::kBadFormat, "'steps' is not an object");
  with_wq([](auto& wq) { wq["tensors"]["layer.weight"]["shape"] = {40, 30.5}; });
  expect_rejected(output_, ErrorCode::kBadFormat, "not non-negative integers");
  with_wq([](auto& wq) { wq["tensors"]["layer.weight"]["shape"] = 1200; });
  expect_rejected(output_, ErrorCode::kBadFormat, "has no shape");
  with_wq([](auto& wq) { wq["tensors"]["layer.weight"]["bits"] = -4; });
  expect_rejected(output_, ErrorCode::kBadFormat, "bits -4 outside 1..8");
  with_wq([](auto& wq) { wq["tensors"]["layer.weight"]["bits"] = "4"; });
  expect_rejected(output_, ErrorCode::kBadFormat, "has no bits");
  with_wq([](auto& wq) { wq["tensors"]["layer.weight"]["codes"] = {{"nested", true}}; });
  expect_rejected(output_, ErrorCode::kBadFormat, "has no 'codes' part");
  with_wq([](auto& wq) { wq["source"] = "x"; });
  expect_rejected(output_, ErrorCode::kBadFormat, "source is not an object");
  with_wq([](auto& wq) { wq["version"] = 1.0; });
  expect_rejected(output_, ErrorCode::kBadFormat, "no version");
  with_wq([](auto& wq) { wq.erase("tensors"); });
  expect_rejected(output_, ErrorCode::kBadFormat, "no tensors object");
  // Fields the reader does not know, however nested, are skipped; field order does not matter.
  with_wq([](auto& wq) {
    wq["future"] = {{"a", {1, {{"b", nullptr}}}}};
    wq["tensors"]["layer.weight"]["note"] = {{"x", {1, 2, {3}}}};
    nlohmann::ordered_json reversed = nlohmann::ordered_json::object();
    const nlohmann::ordered_json& t = wq["tensors"]["layer.weight"];
    for (auto it = t.rbegin(); it != t.rend(); ++it) reversed[it.key()] = it.value();
    wq["tensors"]["layer.weight"] = reversed;
  });
  EXPECT_EQ(ContainerReader::open(output_)->tensors().size(), 3u);
  // A tensor named twice in the metadata (a DOM parse kept one of them silently).
  test::write_bytes(output_, good);
  test::edit_header(output_, [](nlohmann::ordered_json& h) {
    std::string wq = h["__metadata__"]["wq"].get<std::string>();  // ...,"tensors":{...}} (no name table)
    const std::size_t at = wq.find("\"steps\":");
    const std::size_t end = wq.find('}', at) + 1;
    ASSERT_EQ(wq.substr(wq.size() - 2), "}}");
    wq.insert(wq.size() - 2, "," + wq.substr(at, end - at));  // the same entry again, last in "tensors"
    h["__metadata__"]["wq"] = wq;
  });
  expect_rejected(output_, ErrorCode::kBadFormat, "'steps' appears more than once");
  test::write_bytes(output_, good);
  test::edit_header(output_, [](auto& h) { h["__metadata__"].erase("wq"); });
  expect_rejected(output_, ErrorCode::kBadFormat, "without WQ metadata");
}

// A container of many tensors opens in linear time: the ordered DOM the metadata was parsed
// into found each key by a linear search (40,000 tensors: 7 s).
TEST_F(ContainerTest, AContainerOfFiftyThousandTensors) {
  constexpr int kCount = 50000;
  std::ostringstream header;
  header << "{";
  for (int i = 0; i < kCount; ++i) {
    header << (i ? "," : "") << "\"t" << i << R"(":{"dtype":"U8","shape":[1],"data_offsets":[)" << i << "," << i + 1
           << "]}";
  }
  header << "}";
  test::write_bytes(input_, test::safetensors_bytes(header.str(), std::string(kCount, 'x')));
  quantize_file(input_, output_, *backend_, options_);
  std::unique_ptr<ContainerReader> c = ContainerReader::open(output_);
  ASSERT_EQ(c->tensors().size(), static_cast<std::size_t>(kCount));
  EXPECT_EQ(c->tensors()[0].name, "t0");
  EXPECT_EQ(c->tensors()[kCount - 1].name, "t" + std::to_string(kCount - 1));
  c->verify(kCount - 1);
}

TEST_F(ContainerTest, BadInputsLeaveNoOutputAndAnUntouchedInput) {
  fixture_.weight[123] = std::nanf("");
  write_checkpoint(input_, fixture_);
  const std::string before = test::read_bytes(input_);
  try {
    quantize_file(input_, output_, *backend_, options_);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kBadData);
    EXPECT_NE(std::string(e.what()).find(input_), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("layer.weight"), std::string::npos) << e.what();
  }
  EXPECT_EQ(dir_.listing(), std::vector<std::string>{"model.safetensors"});
  EXPECT_EQ(test::read_bytes(input_), before);
  options_.keep_nonfinite = true;
  const QuantizeReport r = quantize_file(input_, output_, *backend_, options_);
  EXPECT_EQ(r.tensors[0].encoding, Encoding::kRaw);
  EXPECT_FALSE(r.tensors[0].note.empty());

  try {
    quantize_file(input_, input_, *backend_, options_);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kOutput);
  }
  EXPECT_EQ(test::read_bytes(input_), before);
  std::atomic<bool> cancel{true};
  options_.cancel = &cancel;
  try {
    quantize_file(input_, dir_.file("cancelled.safetensors"), *backend_, options_);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInterrupted);
  }
  EXPECT_FALSE(std::filesystem::exists(dir_.file("cancelled.safetensors")));
  EXPECT_EQ(dir_.listing().size(), 2u);  // input and the one good output, no temporaries
}

TEST_F(ContainerTest, TheInputChecksumIsTheFilesXxh3InEveryFormat) {
  // A file of several batches (16 MiB each at most), raw tensors between encoded ones.
  const std::string large = dir_.file("large.safetensors");
  {
    const std::vector<float> big = test::random_normal(1024 * 4096, 3, 0.05f);
    const std::vector<float> small = test::random_normal(4096, 4);
    detail::AtomicFile out(large);
    detail::SafetensorsWriter w(out, {{"a", DType::kF32, {1024, 4096}}, {"a.bias", DType::kF32, {4096}},
                                      {"b", DType::kF32, {1024, 4096}}, {"c", DType::kF32, {64, 64}}},
                                {{"format", "pt"}});
    w.append(big.data(), big.size() * 4);
    w.append(small.data(), small.size() * 4);
    w.append(big.data(), big.size() * 4);
    w.append(small.data(), small.size() * 4);
    w.finish();
    out.commit();
  }
  const std::string fixtures = std::string(WQ_TEST_DATA_DIR) + "/fixtures/";
  options_.checksum_input = true;
  for (const std::string& path : {input_, large, fixtures + "tiny.npy", fixtures + "tiny.npz",
                                  fixtures + "tiny_deflated.npz", fixtures + "tiny_legacy.pt", fixtures + "tiny_zip.pt",
                                  fixtures + "tiny_p2.pdparams"}) {
    SCOPED_TRACE(path);
    const QuantizeReport r = quantize_file(path, dir_.file("checksummed.wq.safetensors"), *backend_, options_);
    const std::string bytes = test::read_bytes(path);
    detail::Xxh3 one_shot;
    one_shot.update(bytes.data(), bytes.size());
    EXPECT_EQ(r.input_xxh3, one_shot.hex());
    EXPECT_EQ(detail::checksum_file(path, nullptr), one_shot.hex());
  }
  options_.checksum_input = false;
  EXPECT_EQ(quantize_file(input_, output_, *backend_, options_).input_xxh3, "");
}

}  // namespace
}  // namespace wq
