// End-to-end: decode, inspect, reports, help, determinism and verify.
#include "e2e/cli_support.h"

namespace wq::e2e {
namespace {

// ---------------------------------------------------------------------------------------------
// decode of bad containers

TEST_F(cli, DecodeOfPlainSafetensorsIsRejected) {
  const std::string input = copy_example();
  const Bytes before = read_file(input);
  const std::string output = out("decoded.safetensors");
  const RunResult r = run({"decode", input, "-o", output, "--backend", "cpu"});
  expect_clean_failure(r, kBadFormat, {input, "WQ"}, output, input, &before);
}

TEST_F(cli, DecodeDetectsAFlippedByte) {
  const std::string input = copy_example();
  const std::string container = dir_ / "model.wq.safetensors";
  quantize_ok(input, container);
  const Bytes good = read_file(container);
  const Safetensors st = parse_safetensors(good);
  // One flip inside quantized codes, one inside a raw tensor, one inside a scale.
  for (const auto& [part, tensor] : std::vector<std::pair<std::string, std::string>>{
           {"fc.weight.__codes", "fc.weight"}, {"fc.bias", "fc.bias"}, {"blocks.3.3.weight.__scale", "blocks.3.3.weight"}}) {
    SCOPED_TRACE(part);
    ASSERT_TRUE(st.header.contains(part)) << st.header.dump();
    Bytes corrupt = good;
    const std::uint64_t at = st.data_start + st.header[part]["data_offsets"][0].get<std::uint64_t>() + 3;
    corrupt[at] = static_cast<char>(corrupt[at] ^ 0x10);
    write_file(container, corrupt);
    const std::string output = out("decoded.safetensors");
    const RunResult r = run({"decode", container, "-o", output, "--backend", "cpu"});
    expect_clean_failure(r, kIntegrity, {container, "'" + tensor + "'"}, output, container, &corrupt);
  }
}

TEST_F(cli, DecodeRejectsMetadataThatDisagreesWithTheParts) {
  const std::string input = copy_example();
  const std::string container = dir_ / "model.wq.safetensors";
  quantize_ok(input, container);
  const Safetensors st = parse_safetensors(read_file(container));
  const Bytes data = st.bytes.substr(st.data_start);

  struct Case {
    std::string label;
    std::function<void(ojson&)> edit;
    std::vector<std::string> mentions;
  };
  const std::vector<Case> cases = {
      {"missing part", [](ojson& m) { m["tensors"]["fc.weight"]["codes"] = "fc.weight.__nowhere"; },
       {"'fc.weight'", "fc.weight.__nowhere", "missing"}},
      {"bits 9", [](ojson& m) { m["tensors"]["fc.weight"]["bits"] = 9; }, {"'fc.weight'", "bits"}},
      {"unknown encoding", [](ojson& m) { m["tensors"]["fc.bias"]["encoding"] = "zstd"; }, {"'fc.bias'", "zstd"}},
      {"wrong shape", [](ojson& m) { m["tensors"]["fc.bias"]["shape"] = ojson::array({12}); }, {"'fc.bias'"}},
      {"version 3", [](ojson& m) { m["version"] = 3; }, {"version"}},
      // A symmetric tensor needs version 2, and has no min part.
      {"symmetric in version 1", [](ojson& m) {
         m["tensors"]["fc.weight"]["encoding"] = "symmetric";
         m["tensors"]["fc.weight"].erase("min");
       }, {"'fc.weight'", "version 2"}},
      {"symmetric with a min", [](ojson& m) {
         m["version"] = 2;
         m["tensors"]["fc.weight"]["encoding"] = "symmetric";
       }, {"'fc.weight'", "'min'"}},
      {"min part left over", [](ojson& m) {
         m["version"] = 2;
         m["tensors"]["fc.weight"]["encoding"] = "symmetric";
         m["tensors"]["fc.weight"].erase("min");
       }, {"fc.weight.__min"}},
      {"tensor dropped", [](ojson& m) { m["tensors"].erase("fc.bias"); }, {"fc.bias"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.label);
    ojson header = st.header;
    ojson meta = st.wq_metadata();
    c.edit(meta);
    header["__metadata__"]["wq"] = meta.dump();
    const Bytes bytes = safetensors_bytes(header.dump(), data);
    const std::string bad = dir_ / "edited.wq.safetensors";
    write_file(bad, bytes);
    const std::string output = out("decoded.safetensors");
    std::vector<std::string> mentions = c.mentions;
    mentions.push_back(bad);
    const RunResult r = run({"decode", bad, "-o", output, "--backend", "cpu"});
    expect_clean_failure(r, kBadFormat, mentions, output, bad, &bytes);
  }
}

// ---------------------------------------------------------------------------------------------
// Successful runs

TEST_F(cli, QuantizeThenInspect) {
  const std::string input = copy_example();
  const Safetensors source = parse_safetensors(read_file(input));
  const std::vector<std::string> names = names_in_data_order(source);
  const std::string container = out("model.wq.safetensors");
  const RunResult q = run({"quantize", input, "-o", container, "--backend", "cpu"});
  ASSERT_EQ(q.status, kOk) << q;
  EXPECT_TRUE(contains(q.out, "student_net.safetensors")) << q;
  EXPECT_EQ(temp_leftovers(dir_ / "out"), std::vector<std::string>{});

  // The table lists every tensor.
  const RunResult t = run({"inspect", container});
  ASSERT_EQ(t.status, kOk) << t;
  EXPECT_TRUE(contains(t.out, "wq-gpu 0.1.0")) << t;
  for (const std::string& name : names) EXPECT_TRUE(contains(t.out, name)) << name << "\n" << t;
  EXPECT_TRUE(contains(t.out, std::to_string(names.size()) + " tensors")) << t;

  // --json: every tensor, in source order, with name/dtype/shape/encoding/bytes; affine ones
  // with bits and groups.
  const ojson j = inspect_json(container);
  EXPECT_EQ(j["format"], "wq");
  EXPECT_EQ(j["bytes"].get<std::uint64_t>(), fs::file_size(container));
  EXPECT_EQ(j["producer"], "wq-gpu 0.1.0");
  EXPECT_EQ(j["source"]["file"], "student_net.safetensors");
  EXPECT_EQ(j["source"]["bytes"].get<std::uint64_t>(), fs::file_size(input));
  ASSERT_EQ(j["tensors"].size(), names.size());
  std::size_t affine = 0;
  for (std::size_t i = 0; i < names.size(); ++i) {
    const ojson& e = j["tensors"][i];
    const ojson& src = source.header[names[i]];
    SCOPED_TRACE(names[i]);
    EXPECT_EQ(e["name"], names[i]);
    EXPECT_EQ(e["dtype"], src["dtype"]);
    EXPECT_EQ(e["shape"], src["shape"]);
    ASSERT_TRUE(e.contains("encoding") && e.contains("bytes")) << e.dump();
    const bool weight = src["shape"].size() >= 2;
    EXPECT_EQ(e["encoding"], weight ? "affine" : "raw");
    if (weight) {
      ++affine;
      EXPECT_EQ(e["bits"], 8);
      EXPECT_EQ(e["groups"], src["shape"][0]);  // per channel by default: one group per row
      EXPECT_LT(e["bytes"].get<std::uint64_t>(), src["data_offsets"][1].get<std::uint64_t>() -
                                                      src["data_offsets"][0].get<std::uint64_t>());
    } else {
      EXPECT_EQ(e["bytes"].get<std::uint64_t>(), src["data_offsets"][1].get<std::uint64_t>() -
                                                     src["data_offsets"][0].get<std::uint64_t>());
    }
  }
  EXPECT_GE(affine, 10u);

  // inspect of a plain checkpoint works too.
  const ojson plain = inspect_json(input);
  EXPECT_EQ(plain["format"], "safetensors");
  EXPECT_EQ(plain["tensors"].size(), names.size());
}

TEST_F(cli, DecodeRoundTrip) {
  const std::string input = copy_example();
  const Safetensors source = parse_safetensors(read_file(input));
  const std::string container = out("model.wq.safetensors");
  quantize_ok(input, container);
  const std::string decoded = out("model.decoded.safetensors");
  const RunResult d = run({"decode", container, "-o", decoded, "--backend", "cpu"});
  ASSERT_EQ(d.status, kOk) << d;
  EXPECT_EQ(temp_leftovers(dir_ / "out"), std::vector<std::string>{});

  const Safetensors back = parse_safetensors(read_file(decoded));
  EXPECT_EQ(names_in_data_order(back), names_in_data_order(source));
  for (const std::string& name : source.tensor_names()) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(back.header.contains(name));
    EXPECT_EQ(back.header[name]["dtype"], source.header[name]["dtype"]);
    EXPECT_EQ(back.header[name]["shape"], source.header[name]["shape"]);
    const Bytes original = source.tensor_data(name);
    const Bytes restored = back.tensor_data(name);
    ASSERT_EQ(restored.size(), original.size());
    if (source.header[name]["shape"].size() < 2) {
      EXPECT_TRUE(restored == original) << "raw tensor changed";
      continue;
    }
    // 8-bit per channel: every element within one quantization step of its row's range.
    const std::vector<float> x = f32_values(original), y = f32_values(restored);
    const std::size_t rows = source.header[name]["shape"][0].get<std::size_t>();
    const std::size_t cols = x.size() / rows;
    for (std::size_t r = 0; r < rows; ++r) {
      const auto [lo, hi] = std::minmax_element(x.begin() + r * cols, x.begin() + (r + 1) * cols);
      const float step = (*hi - *lo) / 255.0f;
      for (std::size_t c = 0; c < cols; ++c) {
        const std::size_t i = r * cols + c;
        const float slack = 1e-6f * std::max(std::fabs(*lo), std::fabs(*hi));
        ASSERT_LE(std::fabs(x[i] - y[i]), step * 0.5f + slack) << "element " << i;
      }
    }
  }
  // The decoded file is a valid plain checkpoint: wq-gpu can read and quantize it again.
  const ojson j = inspect_json(decoded);
  EXPECT_EQ(j["format"], "safetensors");
  EXPECT_EQ(j["tensors"].size(), source.tensor_names().size());
}

TEST_F(cli, QuantizeJsonReport) {
  const std::string input = copy_example();
  const std::string container = out("model.wq.safetensors");
  const RunResult r = run({"quantize", input, "-o", container, "--backend", "cpu", "--json"});
  ASSERT_EQ(r.status, kOk) << r;
  EXPECT_EQ(r.err, "");
  ojson j;
  ASSERT_NO_THROW(j = ojson::parse(r.out)) << r;
  for (const char* key : {"input_bytes", "output_bytes", "ratio", "summary", "tensors"}) {
    EXPECT_TRUE(j.contains(key)) << key << "\n" << j.dump(2);
  }
  EXPECT_EQ(j["input_bytes"].get<std::uint64_t>(), fs::file_size(input));
  EXPECT_EQ(j["output_bytes"].get<std::uint64_t>(), fs::file_size(container));
  EXPECT_NEAR(j["ratio"].get<double>(),
              static_cast<double>(fs::file_size(input)) / static_cast<double>(fs::file_size(container)), 1e-9);
  EXPECT_TRUE(j["summary"].is_object());
  const Safetensors source = parse_safetensors(read_file(input));
  std::size_t weights = 0;
  for (const std::string& name : source.tensor_names()) weights += source.header[name]["shape"].size() >= 2;
  EXPECT_EQ(j["summary"]["encoded_tensors"].get<std::size_t>(), weights);
  EXPECT_EQ(j["tensors"].size(), source.tensor_names().size());
}

/// The default a --help text shows for `option` ("--bits INT:INT in [1 - 8]=8" gives "8").
std::string help_default(const std::string& help, const std::string& option) {
  static const std::regex kDefault(R"(=([^\s=]+)(\s|$))");
  std::istringstream lines(help);
  for (std::string line; std::getline(lines, line);) {
    const std::size_t at = line.find(option + " ");
    if (at == std::string::npos || line.find_first_not_of(" ,-o") < at) continue;  // not the option's own line
    std::smatch m;
    const std::string rest = line.substr(at);
    return std::regex_search(rest, m, kDefault) ? m[1].str() : "";
  }
  return "(option not listed)";
}

TEST_F(cli, HelpMentionsDefaults) {
  {
    const RunResult r = run({"--help"});
    EXPECT_EQ(r.status, kOk) << r;
    for (const char* m : {"quantize", "decode", "inspect", "Exit status"}) EXPECT_TRUE(contains(r.out, m)) << m << "\n" << r;
  }
  {
    const RunResult r = run({"quantize", "--help"});
    EXPECT_EQ(r.status, kOk) << r;
    EXPECT_EQ(help_default(r.out, "--bits"), "8") << r;
    EXPECT_EQ(help_default(r.out, "--method"), "minmax") << r;
    EXPECT_EQ(help_default(r.out, "--granularity"), "channel") << r;
    EXPECT_EQ(help_default(r.out, "--group-size"), "128") << r;
    EXPECT_EQ(help_default(r.out, "--scale-dtype"), "f32") << r;
    EXPECT_EQ(help_default(r.out, "--backend"), "auto") << r;
    EXPECT_EQ(help_default(r.out, "--threads"), "0") << r;
    for (const char* m : {"-o,--output", "--all", "--keep-nonfinite", "--json", "8 bits, per channel"}) {
      EXPECT_TRUE(contains(r.out, m)) << m << "\n" << r;
    }
  }
  {
    const RunResult r = run({"decode", "--help"});
    EXPECT_EQ(r.status, kOk) << r;
    EXPECT_TRUE(contains(r.out, "Default: the format the container was made from")) << r;
    EXPECT_EQ(help_default(r.out, "--backend"), "auto") << r;
    EXPECT_TRUE(contains(r.out, "-o,--output")) << r;
  }
  {
    const RunResult r = run({"inspect", "--help"});
    EXPECT_EQ(r.status, kOk) << r;
    EXPECT_TRUE(contains(r.out, "--json")) << r;
  }
}

TEST_F(cli, Version) {
  const RunResult r = run({"--version"});
  EXPECT_EQ(r.status, kOk) << r;
  EXPECT_EQ(r.out, "wq-gpu 0.1.0\n") << r;
}

TEST_F(cli, OutputIsDeterministic) {
  const std::string input = copy_example();
  const std::vector<std::string> settings = {"--bits", "4", "--granularity", "group", "--group-size", "32"};
  quantize_ok(input, out("a.wq.safetensors"), settings);
  quantize_ok(input, out("b.wq.safetensors"), settings);
  std::vector<std::string> one_thread = settings;
  one_thread.insert(one_thread.end(), {"--threads", "1"});
  quantize_ok(input, out("c.wq.safetensors"), one_thread);
  const Bytes a = read_file(out("a.wq.safetensors"));
  EXPECT_TRUE(a == read_file(out("b.wq.safetensors"))) << "two runs differ";
  EXPECT_TRUE(a == read_file(out("c.wq.safetensors"))) << "--threads 1 differs from the default";

  // The default settings, too, and an existing output is replaced, not appended to.
  quantize_ok(input, out("d.wq.safetensors"), {"--threads", "1"});
  quantize_ok(input, out("e.wq.safetensors"));
  quantize_ok(input, out("e.wq.safetensors"));
  EXPECT_TRUE(read_file(out("d.wq.safetensors")) == read_file(out("e.wq.safetensors")));
  EXPECT_EQ(temp_leftovers(dir_ / "out"), std::vector<std::string>{});
}

TEST_F(cli, FewerBitsGiveSmallerOutput) {
  const std::string input = copy_example();
  const std::vector<std::string> group = {"--granularity", "group", "--group-size", "64"};
  auto with_bits = [&](const std::string& bits) {
    std::vector<std::string> flags = group;
    flags.insert(flags.end(), {"--bits", bits});
    const std::string output = out("b" + bits + ".wq.safetensors");
    quantize_ok(input, output, flags);
    return fs::file_size(output);
  };
  const auto b8 = with_bits("8"), b4 = with_bits("4"), b2 = with_bits("2");
  EXPECT_LT(b4, b8);
  EXPECT_LT(b2, b4);
  EXPECT_LT(b8, fs::file_size(input));
  // 4-bit codes take half the bytes of 8-bit ones: the example has about 240,000 weights.
  EXPECT_GT(b8 - b4, 100000u);
}

TEST_F(cli, QuantizingAContainerAgainIsRefused) {
  const std::string input = copy_example();
  const std::string container = dir_ / "model.wq.safetensors";
  quantize_ok(input, container);
  const Bytes before = read_file(container);
  const std::string output = out("twice.wq.safetensors");
  const RunResult r = run({"quantize", container, "-o", output, "--backend", "cpu"});
  // Refused as a usage error by this version (the file is valid, just the wrong kind).
  expect_clean_failure(r, kUsage, {container, "decode"}, output, container, &before);
}


// ---------------------------------------------------------------------------------------------
// verify

TEST_F(cli, VerifyPassesGoodContainersAndNamesEveryBadFileAndTensor) {
  const std::string input = copy_example();
  const std::string tree = dir_ / "tree";
  fs::create_directories(fs::path(tree) / "nested");
  const std::string good = (fs::path(tree) / "good.wq.safetensors").string();
  const std::string bad = (fs::path(tree) / "nested" / "bad.wq.safetensors").string();
  quantize_ok(input, good);
  quantize_ok(input, bad, {"--bits", "4"});
  fs::copy_file(input, fs::path(tree) / "plain.safetensors");  // not a container: skipped

  RunResult r = run({"verify", good});
  EXPECT_EQ(r.status, kOk) << r;
  EXPECT_TRUE(contains(r.out, "ok")) << r;
  r = run({"verify", tree});
  EXPECT_EQ(r.status, kOk) << r;
  EXPECT_TRUE(contains(r.out, "2 containers checked, 0 bad")) << r;

  Bytes corrupt = read_file(bad);
  const Safetensors st = parse_safetensors(corrupt);
  const std::uint64_t at = st.data_start + st.header["fc.weight.__codes"]["data_offsets"][0].get<std::uint64_t>() + 1;
  corrupt[at] = static_cast<char>(corrupt[at] ^ 0x01);
  write_file(bad, corrupt);
  r = run({"verify", tree});
  EXPECT_EQ(r.status, kIntegrity) << r;
  EXPECT_TRUE(contains(r.err, bad)) << r;
  EXPECT_TRUE(contains(r.err, "'fc.weight'")) << r;
  EXPECT_TRUE(contains(r.out, "2 containers checked, 1 bad")) << r;

  r = run({"verify", (fs::path(tree) / "plain.safetensors").string()});
  EXPECT_EQ(r.status, kBadFormat) << r;
  r = run({"verify", dir_ / "missing.wq.safetensors"});
  EXPECT_EQ(r.status, kInputMissing) << r;
}

}  // namespace
}  // namespace wq::e2e
