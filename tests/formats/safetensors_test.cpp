// The safetensors reader's validation (formats.md §1, stricter than the reference) and the
// streaming writer.
#include <gtest/gtest.h>

#include <cstring>
#include <sstream>

#include "formats/file_support.h"
#include "formats/safetensors_file.h"
#include "formats/safetensors_writer.h"
#include "formats/sharded_safetensors.h"
#include "wq/error.h"

namespace wq {
namespace {

using test::safetensors_bytes;
using test::TempDir;

void expect_bad_format(const std::string& path, const std::string& needle) {
  try {
    detail::SafetensorsFile file(path);
    ADD_FAILURE() << "accepted a bad file; expected an error mentioning '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kBadFormat) << e.what();
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << "error does not name the file: " << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

const std::string kTwoTensors =
    R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"I16","shape":[1,2],"data_offsets":[8,12]}})";

TEST(SafetensorsReader, ReadsAValidFile) {
  TempDir dir;
  const std::string data = std::string("\x00\x00\x80\x3f\x00\x00\x00\x40\x01\x00\x02\x00", 12);
  test::write_bytes(dir.file("ok.safetensors"), safetensors_bytes(kTwoTensors + "   ", data));
  detail::SafetensorsFile f(dir.file("ok.safetensors"));
  ASSERT_EQ(f.entries().size(), 2u);
  EXPECT_EQ(f.entries()[0].name, "a");
  EXPECT_EQ(f.entries()[1].dtype, DType::kI16);
  EXPECT_EQ(f.entries()[1].shape, (Shape{1, 2}));
  float first;
  std::memcpy(&first, f.data(f.entries()[0]), 4);
  EXPECT_EQ(first, 1.0f);
  f.release(f.entries()[0]);  // must be harmless
}

TEST(SafetensorsReader, ZeroSizedAndScalarTensorsAreFine) {
  TempDir dir;
  test::write_bytes(dir.file("z.safetensors"),
                    safetensors_bytes(R"({"e":{"dtype":"F32","shape":[0,4],"data_offsets":[0,0]},)"
                                      R"("s":{"dtype":"I64","shape":[],"data_offsets":[0,8]}})",
                                      std::string(8, '\x07')));
  detail::SafetensorsFile f(dir.file("z.safetensors"));
  EXPECT_EQ(f.entries().size(), 2u);
}

TEST(SafetensorsReader, RejectsEveryMalformedLayout) {
  TempDir dir;
  const std::string data(12, '\x01');
  struct Case { const char* name; std::string bytes; const char* needle; };
  std::string too_long = safetensors_bytes(kTwoTensors, data);
  too_long[0] = '\xff';
  too_long[1] = '\xff';
  std::string huge_header(8, '\0');
  huge_header[4] = '\x01';  // 2^32 > 100 MB limit
  const std::vector<Case> cases = {
      {"short", "abc", "shorter than the 8-byte"},
      {"length_past_end", too_long, "past the end"},
      {"header_limit", huge_header + "{}", "limit"},
      {"not_object_start", safetensors_bytes(" " + kTwoTensors, data), "start with '{'"},
      {"bad_json", safetensors_bytes("{\"a\":", ""), "not valid JSON"},
      {"truncated_data", safetensors_bytes(kTwoTensors, data.substr(0, 7)), "truncated"},
      {"trailing", safetensors_bytes(kTwoTensors, data + "xx"), "trailing"},
      {"overlap", safetensors_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", std::string(8, 'x')), "overlaps"},
      {"gap", safetensors_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})", std::string(12, 'x')), "gap"},
      {"not_from_zero", safetensors_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", std::string(8, 'x')), "gap"},
      {"size_mismatch", safetensors_bytes(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", std::string(8, 'x')), "need"},
      {"unknown_dtype", safetensors_bytes(R"({"a":{"dtype":"Q9","shape":[1],"data_offsets":[0,1]}})", "x"), "'Q9'"},
      {"fp8_dtype", safetensors_bytes(R"({"a":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}})", "x"), "F8_E4M3"},
      {"end_before_begin", safetensors_bytes(R"({"a":{"dtype":"U8","shape":[0],"data_offsets":[4,0]}})", ""), "ends before"},
      {"duplicate", safetensors_bytes(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})", "x"), "more than once"},
      {"metadata_not_string", safetensors_bytes(R"({"__metadata__":{"x":1}})", ""), "not a string"},
      {"negative_shape", safetensors_bytes(R"({"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}})", "x"), "non-negative"},
      {"missing_offsets", safetensors_bytes(R"({"a":{"dtype":"U8","shape":[1]}})", "x"), "data_offsets"},
      {"not_an_object", safetensors_bytes("[1,2]", ""), "start with '{'"},
      {"tensor_is_array", safetensors_bytes(R"({"a":[1]})", ""), "'a' is not an object"},
      {"shape_is_object", safetensors_bytes(R"({"a":{"dtype":"U8","shape":{"n":1},"data_offsets":[0,1]}})", "x"), "no shape array"},
      {"shape_float", safetensors_bytes(R"({"a":{"dtype":"U8","shape":[1.0],"data_offsets":[0,1]}})", "x"), "non-negative"},
      {"shape_nested", safetensors_bytes(R"({"a":{"dtype":"U8","shape":[[1]],"data_offsets":[0,1]}})", "x"), "non-negative"},
      {"three_offsets", safetensors_bytes(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1,2]}})", "x"), "[begin, end]"},
      {"dtype_not_string", safetensors_bytes(R"({"a":{"dtype":["U8"],"shape":[1],"data_offsets":[0,1]}})", "x"), "no dtype string"},
      {"metadata_array", safetensors_bytes(R"({"__metadata__":["x"]})", ""), "__metadata__ is not an object"},
      {"metadata_nested", safetensors_bytes(R"({"__metadata__":{"x":{"y":"z"}}})", ""), "not a string"},
      {"bad_json_after_bad_tensor", safetensors_bytes(R"({"a":[1],)", ""), "not valid JSON"},
      {"shape_overflows", safetensors_bytes(R"({"a":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,1]}})", "x"), "overflows"},
      {"bytes_overflow", safetensors_bytes(R"({"a":{"dtype":"F64","shape":[4294967296,1073741824],"data_offsets":[0,1]}})", "x"), "more than 2^64"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string path = dir.file(std::string(c.name) + ".safetensors");
    test::write_bytes(path, c.bytes);
    expect_bad_format(path, c.needle);
  }
}

TEST(SafetensorsReader, FieldsInAnyOrderExtraFieldsNullMetadataAndTiesInNameOrder) {
  TempDir dir;
  // Zero-sized tensors at one offset keep the order of their names, whatever the file's order;
  // unknown fields are skipped however deeply nested; a field given twice counts once, as its
  // last value.
  test::write_bytes(dir.file("h.safetensors"),
                    safetensors_bytes(R"({"__metadata__":null,"c":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
                                      R"("b":{"data_offsets":[2,2],"extra":{"x":[1,{"y":[2,"z"]}]},"shape":[0],"dtype":"U8"},)"
                                      R"("a":{"shape":[7],"shape":[0,3],"dtype":"F32","data_offsets":[2,2]}})",
                                      "xy"));
  detail::SafetensorsFile f(dir.file("h.safetensors"));
  ASSERT_EQ(f.entries().size(), 3u);
  EXPECT_EQ(f.entries()[0].name, "c");
  EXPECT_EQ(f.entries()[1].name, "a");
  EXPECT_EQ(f.entries()[1].shape, (Shape{0, 3}));
  EXPECT_EQ(f.entries()[2].name, "b");
  EXPECT_TRUE(f.metadata().empty());
}

// The header is parsed in one linear pass: nlohmann's DOM parse with a callback rescanned the
// top-level object at every tensor, and 100,000 tensors took over ten minutes (past this
// test's time limit). Tensors keep their data order.
TEST(SafetensorsReader, AHundredThousandTensors) {
  TempDir dir;
  constexpr int kCount = 100000;
  std::ostringstream header;  // tensor t<i> holds byte i; they are listed last to first
  header << "{";
  for (int i = kCount - 1; i >= 0; --i) {
    header << (i != kCount - 1 ? "," : "") << "\"t" << i << R"(":{"dtype":"U8","shape":[1],"data_offsets":[)" << i
           << "," << i + 1 << "]}";
  }
  header << R"(,"__metadata__":{"format":"pt"}})";
  test::write_bytes(dir.file("many.safetensors"), safetensors_bytes(header.str(), std::string(kCount, 'x')));
  detail::SafetensorsFile f(dir.file("many.safetensors"));
  ASSERT_EQ(f.entries().size(), static_cast<std::size_t>(kCount));
  EXPECT_EQ(f.entries()[0].name, "t0");
  EXPECT_EQ(f.entries()[kCount - 1].name, "t" + std::to_string(kCount - 1));
  EXPECT_EQ(f.metadata().at("format"), "pt");
}

// The sharded index, read as a stream: only weight_map is kept, in name order, the last of a
// repeated name (or of a repeated weight_map) winning, as a JSON object's member would.
TEST(ShardIndex, WeightMapIsReadAsAJsonObjectWouldBe) {
  TempDir dir;
  const std::string path = dir.file("m.safetensors.index.json");
  test::write_bytes(path, R"({"metadata":{"total_size":1,"nested":[{"weight_map":{"x":"y"}}]},)"
                          R"("weight_map":{"old":"gone.safetensors"},)"
                          R"("weight_map":{"b":"s2.safetensors","a":"s1.safetensors","b":"s1.safetensors"}})");
  const detail::ShardIndex index = detail::read_shard_index(path);
  ASSERT_EQ(index.weight_map.size(), 2u);
  EXPECT_EQ(index.weight_map[0], (std::pair<std::string, std::string>{"a", "s1.safetensors"}));
  EXPECT_EQ(index.weight_map[1], (std::pair<std::string, std::string>{"b", "s1.safetensors"}));
  EXPECT_EQ(index.shards, std::vector<std::string>{"s1.safetensors"});
}

TEST(ShardIndex, MalformedIndexesAreErrorsNamingTheFile) {
  TempDir dir;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{\"weight_map\":", "not valid JSON"},
      {"[1]", "no weight_map object"},
      {R"({"weight_map":["a"]})", "no weight_map object"},
      {R"({"metadata":{}})", "no weight_map object"},
      {R"({"weight_map":{"a":1}})", "'a' is not a file name"},
      {R"({"weight_map":{"a":{"file":"x"}}})", "'a' is not a file name"},
      {R"({"weight_map":{"a":"../x.safetensors"}})", "beside the index"},
      {R"({"weight_map":{}})", "empty"},
  };
  for (const auto& [text, needle] : cases) {
    SCOPED_TRACE(text);
    const std::string path = dir.file("bad.index.json");
    test::write_bytes(path, text);
    try {
      detail::read_shard_index(path);
      ADD_FAILURE() << "accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kBadFormat);
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  }
}

TEST(SafetensorsReader, MissingFileIsInputMissing) {
  try {
    detail::SafetensorsFile f("/nonexistent/x.safetensors");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInputMissing);
    EXPECT_NE(std::string(e.what()).find("/nonexistent/x.safetensors"), std::string::npos);
  }
}

TEST(SafetensorsWriter, StreamsPartsThatTheReaderAccepts) {
  TempDir dir;
  const std::string path = dir.file("w.safetensors");
  {
    detail::AtomicFile out(path);
    detail::SafetensorsWriter w(out, {{"x", DType::kF32, {3}}, {"y", DType::kU8, {5}}, {"z", DType::kBF16, {0}}},
                                {{"format", "pt"}, {"note", "0000"}});
    const float x[3] = {1, 2, 3};
    w.append(x, sizeof x);
    w.append("abc", 3);
    w.append("de", 2);
    w.rewrite_metadata({{"format", "pt"}, {"note", "1234"}});
    w.finish();
    EXPECT_FALSE(std::filesystem::exists(path)) << "output visible before commit";
    out.commit();
  }
  detail::SafetensorsFile f(path);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.metadata().at("note"), "1234");
  EXPECT_EQ(f.data_start() % 8, 0u) << "data buffer starts 8-aligned";
  ASSERT_EQ(f.entries().size(), 3u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(f.data(f.entries()[1])), 5), "abcde");
  EXPECT_EQ(dir.listing().size(), 1u);
}

TEST(SafetensorsWriter, AnUncommittedFileLeavesNothing) {
  TempDir dir;
  {
    detail::AtomicFile out(dir.file("never.safetensors"));
    detail::SafetensorsWriter w(out, {{"x", DType::kU8, {4}}}, {});
    w.append("ab", 2);
  }
  EXPECT_TRUE(dir.listing().empty());
}

}  // namespace
}  // namespace wq
