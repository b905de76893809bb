// End-to-end: flags, paths, outputs that cannot be written, backends.
#include <random>

#include "e2e/cli_support.h"
#include "wq/backend.h"

namespace wq::e2e {
namespace {

// ---------------------------------------------------------------------------------------------
// Usage errors: status 2, before anything is read or written

/// Command lines that must be refused with status 2, each with a word its message must contain.
std::vector<std::pair<std::vector<std::string>, std::string>> usage_error_cases(const std::string& input,
                                                                               const std::string& output) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> flag_cases = {
      {{"--bits", "0"}, "--bits"},
      {{"--bits", "9"}, "--bits"},
      {{"--bits", "four"}, "--bits"},
      {{"--group-size", "0"}, "--group-size"},
      {{"--group-size", "-4"}, "--group-size"},
      {{"--granularity", "bogus"}, "--granularity"},
      {{"--method", "bogus"}, "--method"},
      {{"--backend", "bogus"}, "--backend"},
      {{"--scale-dtype", "f64"}, "--scale-dtype"},
      {{"--gpu-memory", "lots"}, "--gpu-memory"},
      {{"--devices", "0,x"}, "--devices"},
      {{"--no-such-flag"}, "--no-such-flag"},
  };
  std::vector<std::pair<std::vector<std::string>, std::string>> cases;
  for (const auto& [flags, mention] : flag_cases) {
    std::vector<std::string> args{"quantize", input, "-o", output};
    args.insert(args.end(), flags.begin(), flags.end());
    cases.emplace_back(args, mention);
  }
  cases.push_back({{"quantize", input}, "--output"});              // no -o
  cases.push_back({{"quantize", "-o", output}, "input"});          // no input
  cases.push_back({{"quantize", input, "-o"}, "--output"});        // -o without a value
  cases.push_back({{"decode", input}, "--output"});                // no -o
  cases.push_back({{"decode", input, "-o", output, "--to", "onnx"}, "--to"});
  cases.push_back({{"inspect"}, "file"});                          // no file
  cases.push_back({{}, "subcommand"});                             // no command
  cases.push_back({{"frobnicate", input}, ""});                    // unknown command
  return cases;
}

TEST_F(cli, BadFlagsAreUsageErrors) {
  // Status 2 before anything is read or written, with a short message that names the flag.
  const std::string input = copy_example();
  const Bytes before = read_file(input);
  const std::string output = out("model.wq.safetensors");
  const std::vector<std::string> expected_files = {"logs", "out", "student_net.safetensors"};
  const auto files_here = [&] {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir_.path())) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  };
  for (const auto& [args, mention] : usage_error_cases(input, output)) {
    SCOPED_TRACE(testing::PrintToString(args));
    const RunResult r = run(args);
    std::vector<std::string> mentions;
    if (!mention.empty()) mentions.push_back(mention);
    expect_clean_failure(r, kUsage, mentions, output, input, &before);
    EXPECT_EQ(r.out, "") << r;
    std::istringstream lines(r.err);
    for (std::string line; std::getline(lines, line);) {
      EXPECT_LT(line.size(), 200u) << "unreadably long line on stderr\n" << r;
    }
    EXPECT_EQ(files_here(), expected_files);
    EXPECT_TRUE(fs::is_empty(dir_ / "out"));
  }
}

// symmetric writes a version-2 container without mins; mse a version-1 file of affine tensors
// whose range says mse. Both decode, verify and inspect; an unknown method is a usage error.
TEST_F(cli, SymmetricAndMseQuantizeDecodeVerifyAndInspect) {
  const std::string input = copy_example();
  for (const std::string method : {"symmetric", "mse"}) {
    SCOPED_TRACE(method);
    const std::string container = out(method + ".wq.safetensors");
    quantize_ok(input, container, {"--method", method, "--bits", "3", "--granularity", "group", "--group-size", "32"});
    const Safetensors st = parse_safetensors(read_file(container));
    const ojson meta = st.wq_metadata();
    EXPECT_EQ(meta["version"], method == "symmetric" ? 2 : 1);
    const ojson& fc = meta["tensors"]["fc.weight"];
    EXPECT_EQ(fc["encoding"], method == "symmetric" ? "symmetric" : "affine");
    EXPECT_EQ(fc["range"], method);
    EXPECT_EQ(fc.contains("min"), method == "mse");
    EXPECT_EQ(st.header.contains("fc.weight.__min"), method == "mse");
    const RunResult v = run({"verify", container});
    EXPECT_EQ(v.status, 0) << v.err;
    const RunResult i = run({"inspect", container, "--json"});
    ASSERT_EQ(i.status, 0) << i.err;
    EXPECT_NE(i.out.find(method == "symmetric" ? "\"symmetric\"" : "mse ranges"), std::string::npos) << i.out;
    const std::string decoded = out(method + ".safetensors");
    const RunResult d = run({"decode", container, "-o", decoded, "--backend", "cpu"});
    EXPECT_EQ(d.status, 0) << d.err;
    const RunResult j = run({"quantize", input, "-o", out(method + "2.wq.safetensors"), "--method", method, "--json", "--tensors", "-q"});
    ASSERT_EQ(j.status, 0) << j.err;
    EXPECT_NE(j.out.find("\"method\": \"" + method + "\""), std::string::npos) << j.out;
  }
  const Bytes before = read_file(input);
  const std::string output = out("model.wq.safetensors");
  const RunResult r = run({"quantize", input, "-o", output, "--method", "kmeans"});
  expect_clean_failure(r, kUsage, {"kmeans"}, output, input, &before);
}

// ---------------------------------------------------------------------------------------------
// Missing input, unwritable output

TEST_F(cli, MissingInputFile) {
  const std::string input = dir_ / "no-such-model.safetensors";
  for (const std::string command : {"quantize", "decode"}) {
    SCOPED_TRACE(command);
    const std::string output = out("model.wq.safetensors");
    const RunResult r = run({command, input, "-o", output, "--backend", "cpu"});
    expect_clean_failure(r, kInputMissing, {input}, output);
  }
  const RunResult r = run({"inspect", input});
  expect_clean_failure(r, kInputMissing, {input}, "");
}

TEST_F(cli, InputIsNotARegularFile) {
  // /dev/null and a FIFO are not checkpoints; wq-gpu must say so, not wait for a writer.
  const std::string fifo = dir_ / "pipe.safetensors";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0644), 0) << std::strerror(errno);
  for (const std::string& input : {std::string("/dev/null"), fifo}) {
    SCOPED_TRACE(input);
    const std::string output = out("model.wq.safetensors");
    const RunResult r = run({"quantize", input, "-o", output, "--backend", "cpu"}, RunOptions{"", {}, 3});
    EXPECT_FALSE(r.timed_out) << "wq-gpu blocked on " << input << "\n" << r;
    expect_clean_failure(r, kInputMissing, {input}, output);
    const RunResult i = run({"inspect", input}, RunOptions{"", {}, 3});
    EXPECT_FALSE(i.timed_out) << "wq-gpu inspect blocked on " << input << "\n" << i;
    expect_clean_failure(i, kInputMissing, {input}, "");
  }
}

TEST_F(cli, InputIsAFolder) {
  // A folder is tree mode (cli_tree_test.cpp): -o names an output folder, never a file.
  const std::string folder = dir_ / "model-folder";
  fs::create_directory(folder);
  const std::string existing = copy_example();
  const Bytes before = read_file(existing);
  const RunResult r = run({"quantize", folder, "-o", existing, "--backend", "cpu"});
  expect_clean_failure(r, kOutput, {existing, "folder"}, "", existing, &before);
  // An empty folder: nothing to do, said so.
  const std::string output = out("empty-wq");
  const RunResult e = run({"quantize", folder, "-o", output, "--backend", "cpu"});
  EXPECT_EQ(e.status, kOk) << e;
  EXPECT_TRUE(contains(e.err, "nothing to do")) << e;
}

TEST_F(cli, OutputIsTheInput) {
  const std::string input = copy_example("model.safetensors");
  const Bytes before = read_file(input);
  fs::create_symlink("model.safetensors", dir_ / "link.safetensors");
  fs::create_hard_link(input, dir_ / "hardlink.safetensors");
  const std::string folder_name = fs::path(dir_.path()).filename().string();
  const std::vector<std::string> spellings = {
      input,
      dir_.path() + "/./model.safetensors",
      dir_.path() + "//model.safetensors",
      dir_.path() + "/out/../model.safetensors",
      dir_.path() + "/../" + folder_name + "/model.safetensors",
      dir_ / "link.safetensors",
      dir_ / "hardlink.safetensors",
  };
  for (const std::string& output : spellings) {
    SCOPED_TRACE(output);
    const RunResult r = run({"quantize", input, "-o", output, "--backend", "cpu"});
    expect_clean_failure(r, kOutput, {output}, "", input, &before);
    EXPECT_EQ(temp_leftovers(dir_.path()), std::vector<std::string>{});
  }
  // Relative to the working folder.
  {
    const RunResult r =
        run({"quantize", "model.safetensors", "-o", input, "--backend", "cpu"}, RunOptions{dir_.path(), {}});
    expect_clean_failure(r, kOutput, {input}, "", input, &before);
    const RunResult r2 =
        run({"quantize", input, "-o", "./model.safetensors", "--backend", "cpu"}, RunOptions{dir_.path(), {}});
    expect_clean_failure(r2, kOutput, {"model.safetensors"}, "", input, &before);
  }
  // decode refuses too (a container decoded onto itself).
  const std::string container = out("model.wq.safetensors");
  quantize_ok(input, container);
  const Bytes container_before = read_file(container);
  const RunResult d = run({"decode", container, "-o", dir_.path() + "/out/./model.wq.safetensors", "--backend", "cpu"});
  expect_clean_failure(d, kOutput, {"model.wq.safetensors"}, "", container, &container_before);
  EXPECT_EQ(temp_leftovers(dir_ / "out"), std::vector<std::string>{});
}

TEST_F(cli, OutputFolderDoesNotExist) {
  const std::string input = copy_example();
  const Bytes before = read_file(input);
  const std::string output = dir_ / "no-such-folder/model.wq.safetensors";
  const RunResult r = run({"quantize", input, "-o", output, "--backend", "cpu"});
  expect_clean_failure(r, kOutput, {output, "does not exist"}, "", input, &before);
  EXPECT_FALSE(fs::exists(dir_ / "no-such-folder"));
}

TEST_F(cli, OutputIsAFolder) {
  const std::string input = copy_example();
  const Bytes before = read_file(input);
  const std::string output = dir_ / "out";
  const RunResult r = run({"quantize", input, "-o", output, "--backend", "cpu"});
  expect_clean_failure(r, kOutput, {output}, "", input, &before);
  EXPECT_TRUE(fs::is_empty(output));
}

TEST_F(cli, OutputFolderNotWritable) {
  const std::string input = copy_example();
  const Bytes before = read_file(input);
  std::string output;
  if (::geteuid() == 0) {
    // chmod does not stop root; /proc refuses to create files for everyone.
    output = "/proc/wq-e2e-test.wq.safetensors";
  } else {
    const std::string locked = dir_ / "locked";
    fs::create_directory(locked);
    fs::permissions(locked, fs::perms::owner_read | fs::perms::owner_exec | fs::perms::group_read |
                                fs::perms::group_exec | fs::perms::others_read | fs::perms::others_exec);
    output = locked + "/model.wq.safetensors";
  }
  const RunResult r = run({"quantize", input, "-o", output, "--backend", "cpu"});
  expect_clean_failure(r, kOutput, {output}, output, input, &before);
}

TEST_F(cli, FileSizeLimitFailsTheWriteCleanly) {
  // `ulimit -f 64`: writes past 64 KiB fail with EFBIG (wq-gpu ignores SIGXFSZ). The 8-bit
  // container of the example is about 260 KB.
  const std::string input = copy_example();
  const Bytes before = read_file(input);
  for (const std::string command : {"quantize", "decode"}) {
    SCOPED_TRACE(command);
    std::string source = input;
    if (command == "decode") {
      source = dir_ / "model.wq.safetensors";
      quantize_ok(input, source);
    }
    const Bytes source_before = read_file(source);
    const std::string output = out("limited.safetensors");
    const RunResult r = run({command, source, "-o", output, "--backend", "cpu"}, RunOptions{"", 64 * 1024});
    expect_clean_failure(r, kOutput, {output}, output, source, &source_before);
  }
  EXPECT_TRUE(read_file(input) == before);
}

TEST_F(cli, DiskFullFailsTheWriteCleanly) {
  const std::string input = copy_example();
  const Bytes before = read_file(input);
  const std::string small = dir_ / "small";
  fs::create_directory(small);
  if (::mount("tmpfs", small.c_str(), "tmpfs", 0, "size=200k") != 0) {
    GTEST_SKIP() << "cannot mount a 200 KiB tmpfs (" << std::strerror(errno) << "); needs root and CAP_SYS_ADMIN";
  }
  dir_.note_mount(small);
  const std::string output = small + "/model.wq.safetensors";
  const RunResult r = run({"quantize", input, "-o", output, "--backend", "cpu", "--all"});
  expect_clean_failure(r, kOutput, {output}, output, input, &before);
  // The failed write released its space: a small output still fits.
  const std::string tiny_in = dir_ / "tiny.safetensors";
  write_safetensors(tiny_in, R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})",
                    f32_bytes({1.0f, 2.0f, 3.0f, 4.0f}));
  const RunResult ok = run({"quantize", tiny_in, "-o", small + "/tiny.wq.safetensors", "--backend", "cpu"});
  EXPECT_EQ(ok.status, kOk) << ok;
}

// ---------------------------------------------------------------------------------------------
// Backends

TEST_F(cli, CudaBackendIsUnsupportedHere) {
  if (cuda_device_count() > 0) GTEST_SKIP() << "a CUDA device is present: see CudaBackendMatchesCpuByteForByte";
  const std::string input = copy_example();
  const Bytes before = read_file(input);
  const std::string output = out("model.wq.safetensors");
  const RunResult r = run({"quantize", input, "-o", output, "--backend", "cuda"});
  expect_clean_failure(r, kUnsupported, {"CUDA backend", "--backend cpu"}, output, input, &before);
  EXPECT_EQ(r.out, "");

  const std::string container = out("cpu.wq.safetensors");
  quantize_ok(input, container);
  const std::string decoded = out("decoded.safetensors");
  const RunResult d = run({"decode", container, "-o", decoded, "--backend", "cuda"});
  expect_clean_failure(d, kUnsupported, {"CUDA backend", "--backend cpu"}, decoded);
}

TEST_F(cli, AutoBackendFallsBackToCpuWithOneNotice) {
  const std::string input = copy_example();
  const std::string with_auto = out("auto.wq.safetensors");
  const std::string with_cpu = out("cpu.wq.safetensors");
  const RunResult a = run({"quantize", input, "-o", with_auto, "--backend", "auto"});
  ASSERT_EQ(a.status, kOk) << a;
  if (cuda_device_count() > 0) {
    EXPECT_EQ(a.err, "") << "auto takes the CUDA device silently\n" << a;
  } else {
    EXPECT_EQ(std::count(a.err.begin(), a.err.end(), '\n'), 1) << "expected one line of notice\n" << a;
    EXPECT_TRUE(contains(a.err, "CPU")) << a;
    EXPECT_FALSE(contains(lower(a.err), "error")) << a;
  }
  // The default is auto.
  const RunResult d = run({"quantize", input, "-o", out("default.wq.safetensors")});
  ASSERT_EQ(d.status, kOk) << d;
  EXPECT_EQ(d.err, a.err);

  const RunResult c = run({"quantize", input, "-o", with_cpu, "--backend", "cpu"});
  ASSERT_EQ(c.status, kOk) << c;
  EXPECT_EQ(c.err, "") << c;
  EXPECT_TRUE(read_file(with_auto) == read_file(with_cpu));
  EXPECT_TRUE(read_file(out("default.wq.safetensors")) == read_file(with_cpu));
}

// Every bits x granularity x scale dtype, the casts and the decode: the CUDA backend writes the
// CPU's files byte for byte, also when a small --gpu-memory streams tensors through in pieces.
TEST_F(cli, CudaBackendMatchesCpuByteForByte) {
  std::string reason;
  if (cuda_device_count(&reason) == 0) GTEST_SKIP() << "no CUDA device: " << reason;
  const std::string input = copy_example();
  // A second input with a 4 MiB tensor, larger than the slots of --gpu-memory 4M.
  std::vector<float> big(1u << 20);
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  for (float& v : big) v = normal(rng);
  const std::string large = dir_.path() + "/large.safetensors";
  write_safetensors(large, R"({"w":{"dtype":"F32","shape":[1024,1024],"data_offsets":[0,4194304]},"v":{"dtype":"F32","shape":[2,524288],"data_offsets":[4194304,8388608]}})",
                    f32_bytes(big) + f32_bytes(big));
  std::vector<std::vector<std::string>> settings;
  for (int bits = 1; bits <= 8; ++bits) {
    for (const char* granularity : {"tensor", "channel", "group"}) {
      for (const char* scale : {"f32", "f16"}) {
        settings.push_back({"--bits", std::to_string(bits), "--granularity", granularity, "--scale-dtype", scale});
      }
    }
  }
  settings.push_back({"--granularity", "group", "--group-size", "27"});
  // The other range rules (per tensor on the large input: mse's groups larger than a slot).
  for (const char* method : {"symmetric", "mse"}) {
    for (const char* bits : {"1", "2", "4", "8"}) {
      for (const char* granularity : {"tensor", "channel", "group"}) {
        for (const char* scale : {"f32", "f16"}) {
          settings.push_back({"--method", method, "--bits", bits, "--granularity", granularity, "--scale-dtype", scale});
        }
      }
    }
    settings.push_back({"--method", method, "--granularity", "group", "--group-size", "27"});
  }
  settings.push_back({"--method", "fp16"});
  settings.push_back({"--method", "bf16"});
  int case_number = 0;
  for (const std::string& source : {input, large}) {
    for (const std::vector<std::string>& flags : settings) {
      const std::string tag = std::to_string(case_number++);
      std::vector<std::string> cpu_args{"quantize", source, "-o", out(tag + ".cpu.wq.safetensors"), "--backend", "cpu", "-q"};
      std::vector<std::string> cuda_args{"quantize", source, "-o", out(tag + ".cuda.wq.safetensors"), "--backend", "cuda", "-q"};
      if (source == large) cuda_args.insert(cuda_args.end(), {"--gpu-memory", "4M"});
      cpu_args.insert(cpu_args.end(), flags.begin(), flags.end());
      cuda_args.insert(cuda_args.end(), flags.begin(), flags.end());
      const RunResult c = run(cpu_args), g = run(cuda_args);
      ASSERT_EQ(c.status, kOk) << c;
      ASSERT_EQ(g.status, kOk) << g;
      ASSERT_TRUE(read_file(out(tag + ".cpu.wq.safetensors")) == read_file(out(tag + ".cuda.wq.safetensors")))
          << source << " " << ::testing::PrintToString(flags);
      if (flags[0] == "--bits" && (flags[1] == "3" || flags[1] == "8")) {
        std::vector<std::string> cpu_decode{"decode", out(tag + ".cpu.wq.safetensors"), "-o", out(tag + ".cpu.safetensors"), "--backend", "cpu", "-q"};
        std::vector<std::string> cuda_decode{"decode", out(tag + ".cpu.wq.safetensors"), "-o", out(tag + ".cuda.safetensors"), "--backend", "cuda", "-q"};
        if (source == large) cuda_decode.insert(cuda_decode.end(), {"--gpu-memory", "4M"});
        ASSERT_EQ(run(cpu_decode).status, kOk);
        ASSERT_EQ(run(cuda_decode).status, kOk);
        ASSERT_TRUE(read_file(out(tag + ".cpu.safetensors")) == read_file(out(tag + ".cuda.safetensors")))
            << "decode " << source << " " << ::testing::PrintToString(flags);
      }
    }
  }
}

TEST_F(cli, CudaBackendReportsBadDataLikeTheCpu) {
  std::string reason;
  if (cuda_device_count(&reason) == 0) GTEST_SKIP() << "no CUDA device: " << reason;
  std::vector<float> x(4096, 0.5f);
  x[1234] = std::numeric_limits<float>::quiet_NaN();
  const std::string input = dir_.path() + "/nan.safetensors";
  write_safetensors(input, R"({"layer.w":{"dtype":"F32","shape":[64,64],"data_offsets":[0,16384]}})", f32_bytes(x));
  const RunResult c = run({"quantize", input, "-o", out("c.wq.safetensors"), "--backend", "cpu"});
  const RunResult g = run({"quantize", input, "-o", out("g.wq.safetensors"), "--backend", "cuda"});
  expect_clean_failure(g, kBadData, {"layer.w", "1234", "NaN"}, out("g.wq.safetensors"));
  EXPECT_EQ(c.status, g.status);
  EXPECT_EQ(c.err, g.err);
}

}  // namespace
}  // namespace wq::e2e
