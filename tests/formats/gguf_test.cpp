// GGUF: the writer's files read back by the strict reader (and so by the checkpoint API), and
// every rule of the reader broken once: each malformed file is refused with Error(kBadFormat)
// (or kUnsupported for a valid file of a type wq does not read) naming the file and what is
// wrong, never a crash. ggml's own loader checks the writer's files in
// tests/reference/gguf_ggml_check.py.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "formats/gguf_checkpoint.h"
#include "formats/gguf_file.h"
#include "formats/gguf_writer.h"
#include "io/atomic_file.h"
#include "wq/checkpoint.h"
#include "wq/codec/ggml_legacy.h"
#include "wq/error.h"

namespace wq {
namespace {

namespace ggml = codec::ggml;
namespace fs = std::filesystem;
using detail::GgufFile;
using detail::GgufMetadata;
using detail::GgufTensorPlan;

class GgufTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("wq_gguf_test_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // A small valid file: two KVs (one string array), an F32 matrix, a Q8_0 row, an I64 scalar.
  std::string write_sample(const std::string& name) {
    GgufMetadata meta;
    meta.add_string("general.architecture", "llama");
    meta.add_u32("general.quantization_version", 2);
    std::vector<GgufTensorPlan> plans = {
        {"token_embd.weight", {32, 3}, ggml::Type::kF32, 32 * 3 * 4},
        {"blk.0.attn_q.weight", {64}, ggml::Type::kQ8_0, 2 * 34},
        {"step", {}, ggml::Type::kI64, 8},
    };
    matrix_.resize(96);
    for (std::size_t i = 0; i < matrix_.size(); ++i) matrix_[i] = static_cast<float>(i) * 0.25f - 3.0f;
    std::vector<float> row(64);
    for (std::size_t i = 0; i < row.size(); ++i) row[i] = std::sin(static_cast<float>(i));
    q8_.resize(2 * 34);
    ggml::BlockQ8_0 b[2];
    ggml::quantize_block(row.data(), &b[0]);
    ggml::quantize_block(row.data() + 32, &b[1]);
    std::memcpy(q8_.data(), b, sizeof b);
    const std::int64_t step = 12345;
    detail::AtomicFile out(path(name));
    detail::GgufWriter writer(out, meta, plans);
    writer.append(matrix_.data(), 4 * matrix_.size());
    writer.append(q8_.data(), 20);  // a tensor may arrive in pieces
    writer.append(q8_.data() + 20, q8_.size() - 20);
    writer.append(&step, 8);
    writer.finish();
    out.commit();
    return path(name);
  }

  std::vector<std::uint8_t> bytes_of(const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }

  std::string write_bytes(const std::string& name, const std::vector<std::uint8_t>& bytes) {
    std::ofstream out(path(name), std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    return path(name);
  }

  // Expects open_checkpoint() to refuse the bytes with `code`, naming the file and `words`.
  void expect_refused(const std::vector<std::uint8_t>& bytes, const std::string& words,
                      ErrorCode code = ErrorCode::kBadFormat) {
    const std::string p = write_bytes("bad.gguf", bytes);
    try {
      open_checkpoint(p);
      ADD_FAILURE() << "accepted; expected '" << words << "'";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), code) << e.what();
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
  }

  fs::path dir_;
  std::vector<float> matrix_;
  std::vector<std::uint8_t> q8_;
};

// Offsets of the sample's fields, found by searching for the bytes that follow them.
std::size_t find(const std::vector<std::uint8_t>& bytes, const std::string& needle, std::size_t from = 0) {
  for (std::size_t i = from; i + needle.size() <= bytes.size(); ++i) {
    if (std::memcmp(bytes.data() + i, needle.data(), needle.size()) == 0) return i;
  }
  ADD_FAILURE() << "'" << needle << "' not in the file";
  return 0;
}

template <typename T>
void poke(std::vector<std::uint8_t>& bytes, std::size_t at, T v) {
  std::memcpy(bytes.data() + at, &v, sizeof v);
}

TEST_F(GgufTest, WrittenFilesReadBackWithTheirMetadataShapesAndValues) {
  const std::string p = write_sample("ok.gguf");
  EXPECT_EQ(classify_file(p), FileKind::kCheckpoint);
  std::unique_ptr<CheckpointReader> reader = open_checkpoint(p);
  EXPECT_EQ(reader->format(), "gguf");
  ASSERT_EQ(reader->tensors().size(), 3u);
  EXPECT_EQ(reader->tensors()[0].name, "token_embd.weight");
  EXPECT_EQ(reader->tensors()[0].shape, (Shape{3, 32}));  // ne reversed
  EXPECT_EQ(reader->tensors()[0].dtype, DType::kF32);
  EXPECT_EQ(reader->tensors()[1].shape, (Shape{64}));
  EXPECT_EQ(reader->tensors()[2].shape, Shape{});
  EXPECT_EQ(reader->tensors()[2].dtype, DType::kI64);
  EXPECT_EQ(reader->stored_quantized_as(0), "");
  EXPECT_EQ(reader->stored_quantized_as(1), "Q8_0");
  const TensorView m = reader->tensor(0);
  EXPECT_EQ(0, std::memcmp(m.data, matrix_.data(), 4 * matrix_.size()));
  // A quantized tensor reads as ggml decodes it.
  const TensorView q = reader->tensor(1);
  EXPECT_EQ(q.dtype, DType::kF32);
  ggml::BlockQ8_0 b[2];
  std::memcpy(b, q8_.data(), sizeof b);
  float want[64];
  ggml::decode_block(b[0], want);
  ggml::decode_block(b[1], want + 32);
  EXPECT_EQ(0, std::memcmp(q.data, want, sizeof want));
  reader->release(1);
  EXPECT_EQ(0, std::memcmp(reader->tensor(1).data, want, sizeof want));  // decoded again
  std::int64_t step;
  std::memcpy(&step, reader->tensor(2).data, 8);
  EXPECT_EQ(step, 12345);

  const GgufFile* file = detail::gguf_file_of(*reader);
  ASSERT_NE(file, nullptr);
  EXPECT_EQ(file->version(), 3u);
  EXPECT_EQ(file->string_value("general.architecture"), "llama");
  EXPECT_EQ(file->u32_value("general.quantization_version"), 2u);
  EXPECT_EQ(file->data_start() % 32, 0u);
  EXPECT_EQ(file->tensors()[1].offset, 384u);  // 384 bytes of F32, already aligned
  EXPECT_EQ(file->tensors()[2].offset, 384u + 96u);  // 68 bytes padded to 96
  EXPECT_EQ(bytes_of(p).size(), file->data_start() + 384 + 96 + 32);  // the last tensor padded too
}

TEST_F(GgufTest, CopiedMetadataIsByteForByteTheSame) {
  const std::string p = write_sample("ok.gguf");
  detail::MappedFile mapped(p);
  const GgufFile file(std::move(mapped));
  GgufMetadata copy;
  for (const detail::GgufKv& kv : file.kvs()) copy.add_copied(kv);
  copy.set_u32("general.quantization_version", 2);  // replaced in place: same bytes
  std::vector<std::uint8_t> all = bytes_of(p);
  const std::string s = copy.serialised();
  EXPECT_EQ(0, std::memcmp(all.data() + 24, s.data(), s.size()));
}

TEST_F(GgufTest, EveryTruncationIsAClearError) {
  const std::vector<std::uint8_t> good = bytes_of(write_sample("ok.gguf"));
  // Up to the end of the last tensor's data; its padding may be missing (llama.cpp only checks
  // that the data itself is there).
  const std::size_t data_end = good.size() - 32 + 8;
  for (std::size_t n = 4; n < data_end; n += (n < 200 ? 1 : 13)) {
    SCOPED_TRACE(n);
    const std::string p = write_bytes("cut.gguf", {good.begin(), good.begin() + static_cast<long>(n)});
    EXPECT_THROW(open_checkpoint(p), Error);
  }
}

TEST_F(GgufTest, MalformedHeadersAreRefusedNamingWhatIsWrong) {
  const std::vector<std::uint8_t> good = bytes_of(write_sample("ok.gguf"));
  auto b = good;
  poke<std::uint32_t>(b, 4, 1);
  expect_refused(b, "version 1 is no longer supported");
  b = good;
  poke<std::uint32_t>(b, 4, 0x03000000);
  expect_refused(b, "big-endian");
  b = good;
  poke<std::uint32_t>(b, 4, 4);
  expect_refused(b, "unknown GGUF version 4");
  b = good;
  poke<std::uint64_t>(b, 8, 1ull << 40);
  expect_refused(b, "tensor count");
  b = good;
  poke<std::uint64_t>(b, 16, 1ull << 40);
  expect_refused(b, "metadata count");
  // An unknown value type.
  b = good;
  const std::size_t arch = find(b, "general.architecture");
  poke<std::uint32_t>(b, arch + 20, 13);
  expect_refused(b, "unknown type 13");
  // A string length past the end.
  b = good;
  poke<std::uint64_t>(b, arch + 24, 1ull << 31);
  expect_refused(b, "ggml's limit is 2^30");
}

TEST_F(GgufTest, MalformedTensorInfosAreRefused) {
  const std::vector<std::uint8_t> good = bytes_of(write_sample("ok.gguf"));
  const std::size_t name = find(good, "blk.0.attn_q.weight");
  const std::size_t dims = name + 19;
  auto b = good;
  poke<std::uint32_t>(b, dims, 5);
  expect_refused(b, "has 5 dimensions");
  b = good;
  poke<std::uint32_t>(b, dims + 4 + 8, 16);  // IQ2_XXS
  expect_refused(b, "ggml type 16, which wq does not read", ErrorCode::kUnsupported);
  b = good;
  poke<std::uint32_t>(b, dims + 4 + 8, 99);
  expect_refused(b, "ggml type 99", ErrorCode::kUnsupported);
  b = good;
  poke<std::uint64_t>(b, dims + 4, 48);  // 48 elements: not whole Q8_0 blocks
  expect_refused(b, "not whole Q8_0 blocks of 32");
  b = good;
  poke<std::uint64_t>(b, dims + 4 + 8 + 4, 416);  // an offset off the padded running sum
  expect_refused(b, "has data offset 416, expected 384");
  b = good;
  b[name] = 0xff;  // not UTF-8
  expect_refused(b, "is not valid UTF-8");
  b = good;
  poke<std::uint64_t>(b, name - 8, 0);
  expect_refused(b, "");  // an empty name, and the rest no longer parses: refused either way
}

// Metadata that only a hand-made file holds: duplicate keys, nested and unknown arrays.
TEST_F(GgufTest, MalformedMetadataValuesAreRefused) {
  const auto file_with = [&](const std::string& name, const std::vector<detail::GgufKv>& kvs) {
    GgufMetadata meta;
    for (const detail::GgufKv& kv : kvs) meta.add_copied(kv);
    detail::AtomicFile out(path(name));
    detail::GgufWriter writer(out, meta, {});
    writer.finish();
    out.commit();
    return bytes_of(path(name));
  };
  const auto array = [](detail::GgufValueType element, std::uint64_t count, std::vector<std::uint8_t> tail) {
    std::vector<std::uint8_t> v(12);
    const auto e = static_cast<std::uint32_t>(element);
    std::memcpy(v.data(), &e, 4);
    std::memcpy(v.data() + 4, &count, 8);
    for (std::uint8_t byte : tail) v.push_back(byte);  // (insert() of an empty range: a false GCC 12 warning)
    return v;
  };
  std::vector<std::vector<std::uint8_t>> keep;  // the values' bytes outlive the kvs
  const auto kv = [&](const std::string& key, detail::GgufValueType type, std::vector<std::uint8_t> value) {
    keep.push_back(std::move(value));
    detail::GgufKv k;
    k.key = key;
    k.type = type;
    k.value = {reinterpret_cast<const std::byte*>(keep.back().data()), keep.back().size()};
    return k;
  };
  keep.reserve(16);
  const std::vector<std::uint8_t> u32_one = {1, 0, 0, 0};
  expect_refused(file_with("dup.gguf", {kv("a.b", detail::GgufValueType::kU32, u32_one),
                                        kv("a.b", detail::GgufValueType::kU32, u32_one)}),
                 "metadata key 'a.b' appears twice");
  expect_refused(file_with("empty.gguf", {kv("", detail::GgufValueType::kU32, u32_one)}), "metadata key 0 is empty");
  expect_refused(file_with("nested.gguf", {kv("x", detail::GgufValueType::kArray,
                                              array(detail::GgufValueType::kArray, 0, {}))}),
                 "array of arrays");
  expect_refused(file_with("unknown.gguf", {kv("x", detail::GgufValueType::kArray,
                                               array(static_cast<detail::GgufValueType>(77), 0, {}))}),
                 "array of unknown type 77");
  expect_refused(file_with("long.gguf", {kv("x", detail::GgufValueType::kArray,
                                            array(detail::GgufValueType::kU64, 1000, {}))}),
                 "runs past the end");
  // A valid array of strings and one of floats read fine.
  std::vector<std::uint8_t> strings = array(detail::GgufValueType::kString, 2, {1, 0, 0, 0, 0, 0, 0, 0, 'a', 0, 0, 0, 0, 0, 0, 0, 0});
  std::vector<std::uint8_t> floats = array(detail::GgufValueType::kF32, 1, {0, 0, 128, 63});
  const std::string p = write_bytes("fine.gguf", file_with("fine0.gguf", {kv("s", detail::GgufValueType::kArray, strings),
                                                                          kv("f", detail::GgufValueType::kArray, floats)}));
  detail::MappedFile mapped(p);
  const GgufFile file(std::move(mapped));
  ASSERT_EQ(file.kvs().size(), 2u);
  EXPECT_EQ(file.kvs()[0].count, 2u);
  EXPECT_EQ(file.kvs()[0].element_type, detail::GgufValueType::kString);
  EXPECT_EQ(file.kvs()[1].count, 1u);
}

// The records a WQ container carries for a GGUF source: the file's metadata section to the
// byte, read back by the same rules as a file's, with the caller's words first in every error.
TEST_F(GgufTest, MetadataRecordsRoundTripAndAreCheckedAsAFilesAre) {
  const std::string p = write_sample("ok.gguf");
  const GgufFile file{detail::MappedFile(p)};
  const std::string records = detail::gguf_kv_records(file.metadata());
  const std::vector<std::uint8_t> all = bytes_of(p);
  ASSERT_LE(24 + records.size(), all.size());
  EXPECT_EQ(0, std::memcmp(all.data() + 24, records.data(), records.size()));
  const auto span_of = [](const std::string& bytes) { return std::as_bytes(std::span(bytes.data(), bytes.size())); };
  const detail::GgufKvs back = detail::parse_gguf_kv_records(span_of(records), "W: ");
  ASSERT_EQ(back.pairs().size(), file.kvs().size());
  for (std::size_t i = 0; i < back.pairs().size(); ++i) {
    EXPECT_EQ(back.pairs()[i].key, file.kvs()[i].key);
    EXPECT_EQ(back.pairs()[i].type, file.kvs()[i].type);
    EXPECT_TRUE(std::equal(back.pairs()[i].value.begin(), back.pairs()[i].value.end(), file.kvs()[i].value.begin(),
                           file.kvs()[i].value.end()));
  }
  EXPECT_EQ(back.string_value("general.architecture"), "llama");
  EXPECT_TRUE(detail::parse_gguf_kv_records({}, "W: ").empty());
  const auto expect_bad = [&](const std::string& bytes, const std::string& words) {
    try {
      detail::parse_gguf_kv_records(span_of(bytes), "W: ");
      ADD_FAILURE() << "accepted; expected '" << words << "'";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kBadFormat);
      EXPECT_EQ(std::string(e.what()).rfind("W: ", 0), 0u) << e.what();
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
  };
  expect_bad(records + records, "appears twice");
  expect_bad(records.substr(0, records.size() - 1), "truncated");
  expect_bad(records + std::string(3, '\0'), "truncated");
  std::string unknown = records;
  unknown[8 + std::string("general.architecture").size()] = 99;  // the first pair's type
  expect_bad(unknown, "unknown type 99");
}

TEST_F(GgufTest, DuplicateNamesTrailingBytesAndBadAlignmentAreRefused) {
  {
    GgufMetadata meta;
    std::vector<GgufTensorPlan> plans = {{"a", {32}, ggml::Type::kF32, 128}, {"a", {32}, ggml::Type::kF32, 128}};
    detail::AtomicFile out(path("dup.gguf"));
    detail::GgufWriter writer(out, meta, plans);
    std::vector<float> zeros(64);
    writer.append(zeros.data(), 256);
    writer.finish();
    out.commit();
    expect_refused(bytes_of(path("dup.gguf")), "two tensors are named 'a'");
  }
  auto b = bytes_of(write_sample("ok.gguf"));
  b.resize(b.size() + 32, 0);
  expect_refused(b, "56 bytes follow the last tensor's data");
  {
    GgufMetadata meta;
    meta.add_u32("general.alignment", 24);
    detail::AtomicFile out(path("align.gguf"));
    detail::GgufWriter writer(out, meta, {});
    writer.finish();
    out.commit();
    expect_refused(bytes_of(path("align.gguf")), "general.alignment 24 is not a power of two");
  }
  {
    GgufMetadata meta;
    meta.add_string("general.alignment", "32");
    detail::AtomicFile out(path("align2.gguf"));
    detail::GgufWriter writer(out, meta, {});
    writer.finish();
    out.commit();
    expect_refused(bytes_of(path("align2.gguf")), "general.alignment is STRING, not UINT32");
  }
}

TEST_F(GgufTest, WriterRefusesLongNamesUnlessAllowed) {
  GgufMetadata meta;
  const std::string long_name(64, 'n');
  std::vector<GgufTensorPlan> plans = {{long_name, {32}, ggml::Type::kF32, 128}};
  {
    detail::AtomicFile out(path("long.gguf"));
    try {
      detail::GgufWriter writer(out, meta, plans);
      ADD_FAILURE() << "a 64-byte name was written";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kUsage);
      EXPECT_NE(std::string(e.what()).find("at most 63"), std::string::npos) << e.what();
    }
  }
  EXPECT_FALSE(fs::exists(path("long.gguf")));
  detail::AtomicFile out(path("long.gguf"));
  detail::GgufWriter writer(out, meta, plans, /*allow_long_names=*/true);
  std::vector<float> zeros(32);
  writer.append(zeros.data(), 128);
  writer.finish();
  out.commit();
  EXPECT_EQ(open_checkpoint(path("long.gguf"))->tensors()[0].name, long_name);
}

TEST_F(GgufTest, RandomDamageNeverCrashes) {
  const std::vector<std::uint8_t> good = bytes_of(write_sample("ok.gguf"));
  std::mt19937 rng(5);
  for (int trial = 0; trial < 2000; ++trial) {
    auto b = good;
    const int flips = 1 + trial % 4;
    for (int k = 0; k < flips; ++k) b[rng() % 200] = static_cast<std::uint8_t>(rng());
    const std::string p = write_bytes("fuzz.gguf", b);
    try {
      std::unique_ptr<CheckpointReader> r = open_checkpoint(p);
      for (std::size_t i = 0; i < r->tensors().size(); ++i) r->tensor(i);
    } catch (const Error&) {
    }
  }
}

}  // namespace
}  // namespace wq
