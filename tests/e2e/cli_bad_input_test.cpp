// End-to-end: bad checkpoints and tensor values that cannot be encoded.
#include "e2e/cli_support.h"

namespace wq::e2e {
namespace {

// ---------------------------------------------------------------------------------------------
// Bad checkpoints: quantize, inspect and decode must all reject them with status 4.

class cliBadInput : public cli {
 protected:
  /// Writes `bytes` as an input and runs quantize, inspect and decode on it: each must fail
  /// with `status`, naming the file and `mentions`.
  void expect_rejected(const Bytes& bytes, const std::vector<std::string>& mentions, int status = kBadFormat,
                       const std::string& name = "bad.safetensors") {
    const std::string input = dir_ / name;
    write_file(input, bytes);
    std::vector<std::string> all = mentions;
    all.push_back(input);
    const std::string output = out("bad.wq.safetensors");
    {
      SCOPED_TRACE("quantize");
      const RunResult r = run({"quantize", input, "-o", output, "--backend", "cpu"});
      expect_clean_failure(r, status, all, output, input, &bytes);
    }
    {
      SCOPED_TRACE("inspect");
      const RunResult r = run({"inspect", input});
      expect_clean_failure(r, status, all, "", input, &bytes);
      EXPECT_EQ(r.out, "") << r;
    }
    {
      SCOPED_TRACE("decode");
      const std::string decoded = out("bad.decoded.safetensors");
      const RunResult r = run({"decode", input, "-o", decoded, "--backend", "cpu"});
      expect_clean_failure(r, status, {input}, decoded, input, &bytes);
    }
  }

  /// A small valid layout: a F32 [2,4] "a" then a F32 [4] "b" (48 bytes of data).
  static std::string two_tensor_header(const std::string& a_offsets, const std::string& b_offsets,
                                       const std::string& a_dtype = "F32") {
    return R"({"a":{"dtype":")" + a_dtype + R"(","shape":[2,4],"data_offsets":)" + a_offsets +
           R"(},"b":{"dtype":"F32","shape":[4],"data_offsets":)" + b_offsets + "}}";
  }
};

TEST_F(cliBadInput, TruncatedInTheMiddleOfTheData) {
  const Bytes full = read_file(kExample);
  const Safetensors st = parse_safetensors(full);
  const std::uint64_t cut = st.data_start + (full.size() - st.data_start) / 2;
  expect_rejected(full.substr(0, cut), {"truncated"});
}

TEST_F(cliBadInput, HeaderLengthPastTheEndOfTheFile) {
  const std::string header = two_tensor_header("[0,32]", "[32,48]");
  const Bytes data(48, '\0');
  Bytes bytes = safetensors_bytes(header, data);
  const Bytes claimed = u64_le(bytes.size());  // header "longer" than the whole file
  bytes.replace(0, 8, claimed);
  expect_rejected(bytes, {});
}

TEST_F(cliBadInput, HeaderCutShort) {
  const std::string header = two_tensor_header("[0,32]", "[32,48]");
  expect_rejected(safetensors_bytes(header, Bytes(48, '\0')).substr(0, 8 + header.size() / 2), {});
}

TEST_F(cliBadInput, OverlappingDataOffsets) {
  // "a" is 32 bytes at [0,32); "b" (16 bytes) claims [16,32), inside "a".
  expect_rejected(safetensors_bytes(two_tensor_header("[0,32]", "[16,32]"), Bytes(32, '\0')),
                  {"'b'", "overlap"});
}

TEST_F(cliBadInput, GapBetweenTensors) {
  expect_rejected(safetensors_bytes(two_tensor_header("[0,32]", "[40,56]"), Bytes(56, '\0')), {"'b'", "gap"});
}

TEST_F(cliBadInput, TrailingBytesAfterTheLastTensor) {
  expect_rejected(safetensors_bytes(two_tensor_header("[0,32]", "[32,48]"), Bytes(64, '\0')), {"trailing"});
}

TEST_F(cliBadInput, UnknownDtypeF8) {
  // F8_E4M3 is 1 byte per element: 8 elements = 8 bytes.
  expect_rejected(safetensors_bytes(two_tensor_header("[0,8]", "[8,24]", "F8_E4M3"), Bytes(24, '\0')),
                  {"'a'", "F8_E4M3"});
}

TEST_F(cliBadInput, UnknownDtypeQ9) {
  expect_rejected(safetensors_bytes(two_tensor_header("[0,32]", "[32,48]", "Q9"), Bytes(48, '\0')), {"'a'", "Q9"});
}

TEST_F(cliBadInput, SizeDisagreesWithShapeAndDtype) {
  // "a" is F32 [2,4] = 32 bytes, but its offsets give it 36.
  expect_rejected(safetensors_bytes(two_tensor_header("[0,36]", "[36,52]"), Bytes(52, '\0')), {"'a'", "36", "32"});
}

TEST_F(cliBadInput, DuplicateTensorNames) {
  const std::string header =
      R"({"a":{"dtype":"F32","shape":[2,4],"data_offsets":[0,32]},)"
      R"("a":{"dtype":"F32","shape":[4],"data_offsets":[32,48]}})";
  expect_rejected(safetensors_bytes(header, Bytes(48, '\0')), {"'a'", "more than once"});
}

TEST_F(cliBadInput, HeaderIsNotJson) {
  expect_rejected(safetensors_bytes("{\"a\": [1, 2,", Bytes(8, '\0')), {"JSON"});
}

TEST_F(cliBadInput, TextFile) {
  expect_rejected("This is not a checkpoint; it is a plain text file.\nSecond line.\n", {}, kBadFormat,
                  "notes.txt");
}

TEST_F(cliBadInput, EmptyFile) {
  // An existing but empty file is present and readable, so it is invalid input (4), not a
  // missing one (3): open_checkpoint's content sniff rejects it.
  expect_rejected("", {}, kBadFormat, "empty.safetensors");
}

TEST_F(cliBadInput, PngLikeBinary) {
  Bytes png("\x89PNG\r\n\x1a\n", 8);
  png += Bytes("\0\0\0\x0dIHDR\0\0\0\x10\0\0\0\x10\x08\x06\0\0\0", 25);
  for (int i = 0; i < 200; ++i) png.push_back(static_cast<char>((i * 37 + 11) & 0xff));
  expect_rejected(png, {}, kBadFormat, "picture.safetensors");
}

TEST_F(cliBadInput, TensorNameCollidesWithAPartName) {
  // "w" is quantized into parts "w.__codes", "w.__scale", "w.__min"; the input already has a
  // tensor named "w.__codes". The container cannot hold both: the run must fail and say which
  // input and which tensor, like every other refusal of an input.
  const std::string header = R"({"w":{"dtype":"F32","shape":[2,4],"data_offsets":[0,32]},)"
                             R"("w.__codes":{"dtype":"F32","shape":[2],"data_offsets":[32,40]}})";
  std::vector<float> values(10);
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i);
  const std::string input = dir_ / "collide.safetensors";
  write_safetensors(input, header, f32_bytes(values));
  const Bytes before = read_file(input);
  const std::string output = out("collide.wq.safetensors");
  const RunResult r = run({"quantize", input, "-o", output, "--backend", "cpu"});
  expect_clean_failure(r, kBadData, {input, "w.__codes"}, output, input, &before);
  // A cast keeps the name "w", so there is no collision.
  const RunResult cast = run({"quantize", input, "-o", output, "--backend", "cpu", "--method", "fp16"});
  EXPECT_EQ(cast.status, kOk) << cast;
}

// ---------------------------------------------------------------------------------------------
// Tensor values that cannot be encoded

class cliNonFinite : public cli {
 protected:
  /// "w": F32 [4,8] with `bad` at flat element `index`; "b": F32 [4].
  std::string write_input(float bad, std::size_t index) {
    std::vector<float> w(32);
    for (std::size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>(i) * 0.25f - 3.0f;
    w[index] = bad;
    const std::vector<float> b{0.5f, -0.5f, 1.0f, 2.0f};
    const std::string header = R"({"__metadata__":{"format":"pt"},)"
                               R"("w":{"dtype":"F32","shape":[4,8],"data_offsets":[0,128]},)"
                               R"("b":{"dtype":"F32","shape":[4],"data_offsets":[128,144]}})";
    const std::string input = dir_ / "nonfinite.safetensors";
    write_safetensors(input, header, f32_bytes(w) + f32_bytes(b));
    return input;
  }
};

TEST_F(cliNonFinite, NaNFailsNamingTensorAndElement) {
  const std::string input = write_input(std::numeric_limits<float>::quiet_NaN(), 13);
  const Bytes before = read_file(input);
  for (const std::string granularity : {"channel", "tensor", "group"}) {
    SCOPED_TRACE(granularity);
    const std::string output = out("nan.wq.safetensors");
    const RunResult r = run({"quantize", input, "-o", output, "--backend", "cpu", "--granularity", granularity,
                             "--group-size", "3"});
    expect_clean_failure(r, kBadData, {input, "'w'", "element 13", "NaN"}, output, input, &before);
  }
}

TEST_F(cliNonFinite, InfinityFails) {
  const std::string input = write_input(std::numeric_limits<float>::infinity(), 30);
  const Bytes before = read_file(input);
  const std::string output = out("inf.wq.safetensors");
  const RunResult r = run({"quantize", input, "-o", output, "--backend", "cpu"});
  expect_clean_failure(r, kBadData, {input, "'w'", "element 30", "infinity"}, output, input, &before);
}

TEST_F(cliNonFinite, KeepNonfiniteStoresTheTensorRaw) {
  const std::string input = write_input(std::numeric_limits<float>::quiet_NaN(), 13);
  const std::string output = out("kept.wq.safetensors");
  const RunResult r = run({"quantize", input, "-o", output, "--backend", "cpu", "--keep-nonfinite"});
  ASSERT_EQ(r.status, kOk) << r;
  const ojson j = inspect_json(output);
  ASSERT_TRUE(j.contains("tensors")) << j.dump(2);
  ASSERT_EQ(j["tensors"].size(), 2u) << j.dump(2);
  EXPECT_EQ(j["tensors"][0]["name"], "w");
  EXPECT_EQ(j["tensors"][0]["encoding"], "raw");
  EXPECT_EQ(j["tensors"][1]["name"], "b");
  // The raw tensor comes back bit for bit, NaN included.
  const std::string decoded = out("kept.decoded.safetensors");
  const RunResult d = run({"decode", output, "-o", decoded, "--backend", "cpu"});
  ASSERT_EQ(d.status, kOk) << d;
  EXPECT_TRUE(parse_safetensors(read_file(decoded)).tensor_data("w") ==
              parse_safetensors(read_file(input)).tensor_data("w"));
}

TEST_F(cliNonFinite, FailureKeepsAnExistingOutput) {
  // The output is replaced atomically: a failed run leaves the previous file as it was.
  const std::string input = write_input(std::numeric_limits<float>::quiet_NaN(), 0);
  const std::string output = out("model.wq.safetensors");
  write_file(output, "previous contents");
  const RunResult r = run({"quantize", input, "-o", output, "--backend", "cpu"});
  expect_clean_failure(r, kBadData, {input, "'w'", "element 0"}, "");
  EXPECT_EQ(read_file(output), "previous contents");
  EXPECT_EQ(temp_leftovers(dir_ / "out"), std::vector<std::string>{});
}

TEST_F(cliNonFinite, HalfPrecisionNaN) {
  // F16 "w" [2,2] = {1, NaN, 0, 0}.
  const std::string input = dir_ / "half.safetensors";
  const std::uint16_t halves[4] = {0x3c00, 0x7e00, 0x0000, 0x0000};
  write_safetensors(input, R"({"w":{"dtype":"F16","shape":[2,2],"data_offsets":[0,8]}})",
                    Bytes(reinterpret_cast<const char*>(halves), 8));
  const Bytes before = read_file(input);
  for (const std::string method : {"minmax", "fp16", "bf16"}) {
    SCOPED_TRACE(method);
    const std::string output = out("half.wq.safetensors");
    const RunResult r = run({"quantize", input, "-o", output, "--backend", "cpu", "--method", method});
    expect_clean_failure(r, kBadData, {input, "'w'", "NaN"}, output, input, &before);
  }
}

TEST_F(cli, ValuesOutsideTheEncodableRange) {
  struct Case {
    std::string label;
    std::vector<float> values;  // "w" F32 [2,2]
    std::vector<std::string> flags;
    int status;
  };
  const std::vector<Case> cases = {
      {"range wider than binary32", {-3e38f, 3e38f, 1.0f, 2.0f}, {}, kBadData},
      {"F16 scales overflow", {-1e6f, 1e6f, 1.0f, 2.0f}, {"--scale-dtype", "f16"}, kBadData},
      {"F16 cast overflows", {1e6f, 1.0f, 1.0f, 2.0f}, {"--method", "fp16"}, kBadData},
      {"BF16 cast is wide enough", {1e6f, 1.0f, 1.0f, 2.0f}, {"--method", "bf16"}, kOk},
      {"F32 scales are wide enough", {-1e6f, 1e6f, 1.0f, 2.0f}, {}, kOk},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.label);
    const std::string input = dir_ / "range.safetensors";
    write_safetensors(input, R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})", f32_bytes(c.values));
    const Bytes before = read_file(input);
    const std::string output = out("range.wq.safetensors");
    std::vector<std::string> args{"quantize", input, "-o", output, "--backend", "cpu"};
    args.insert(args.end(), c.flags.begin(), c.flags.end());
    const RunResult r = run(args);
    if (c.status == kOk) {
      EXPECT_EQ(r.status, kOk) << r;
      fs::remove(output);
    } else {
      expect_clean_failure(r, c.status, {input, "'w'"}, output, input, &before);
    }
  }
}

}  // namespace
}  // namespace wq::e2e
