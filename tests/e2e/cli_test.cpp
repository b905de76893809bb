// End-to-end tests of the real wq-gpu binary (WQ_GPU_BINARY).
//
// Every test runs the binary as a child process in a fresh temporary folder and looks only at
// what a user sees: the exit status (host/cli/main.cpp, include/wq/error.h), stdout, stderr and
// the files left on disk. Hostile inputs are built byte by byte here. Every failure case checks
// the same contract (expect_clean_failure): the documented exit status, an "error" on stderr
// that names the file (and the tensor where there is one), no output, no leftover temporary
// file (.NAME.wq-tmp.XXXXXX) in the output folder, and an input that is byte-for-byte unchanged.
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;
using Bytes = std::string;  // file contents; std::string compares and prints conveniently

const std::string kExample = WQ_SOURCE_DIR "/examples/student_net.safetensors";

// Exit statuses documented in host/cli/main.cpp and include/wq/error.h.
constexpr int kOk = 0;
constexpr int kUsage = 2;
constexpr int kInputMissing = 3;
constexpr int kBadFormat = 4;
constexpr int kBadData = 5;
constexpr int kOutput = 6;
constexpr int kIntegrity = 7;
constexpr int kUnsupported = 8;

// ---------------------------------------------------------------------------------------------
// Files

Bytes read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_file(const std::string& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << "cannot write " << path;
}

std::string u64_le(std::uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

/// A safetensors file: 8-byte little-endian header length N, N bytes of JSON, then the data.
/// The header is given as text so that hostile headers (duplicate keys, ...) can be written.
Bytes safetensors_bytes(const std::string& header_json, const Bytes& data) {
  return u64_le(header_json.size()) + header_json + data;
}

void write_safetensors(const std::string& path, const std::string& header_json, const Bytes& data) {
  write_file(path, safetensors_bytes(header_json, data));
}

Bytes f32_bytes(const std::vector<float>& values) {
  Bytes b(values.size() * 4, '\0');
  std::memcpy(b.data(), values.data(), b.size());
  return b;
}

std::vector<float> f32_values(const Bytes& b) {
  std::vector<float> v(b.size() / 4);
  std::memcpy(v.data(), b.data(), v.size() * 4);
  return v;
}

/// A parsed safetensors file: its header (in file order) and where the data starts.
struct Safetensors {
  ojson header;
  std::uint64_t data_start = 0;
  Bytes bytes;

  Bytes tensor_data(const std::string& name) const {
    const ojson& offsets = header.at(name).at("data_offsets");
    const auto begin = offsets[0].get<std::uint64_t>();
    const auto end = offsets[1].get<std::uint64_t>();
    return bytes.substr(data_start + begin, end - begin);
  }
  std::vector<std::string> tensor_names() const {
    std::vector<std::string> names;
    for (auto it = header.begin(); it != header.end(); ++it) {
      if (it.key() != "__metadata__") names.push_back(it.key());
    }
    return names;
  }
  ojson wq_metadata() const { return ojson::parse(header.at("__metadata__").at("wq").get<std::string>()); }
};

Safetensors parse_safetensors(const Bytes& bytes) {
  Safetensors st;
  st.bytes = bytes;
  if (bytes.size() < 8) throw std::runtime_error("shorter than 8 bytes");
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<std::uint8_t>(bytes[i]);
  if (n > bytes.size() - 8) throw std::runtime_error("header past the end");
  st.header = ojson::parse(bytes.substr(8, n));
  st.data_start = 8 + n;
  return st;
}

/// Tensor names of a safetensors file sorted by their data offsets (= the file's data order).
std::vector<std::string> names_in_data_order(const Safetensors& st) {
  std::vector<std::string> names = st.tensor_names();
  std::stable_sort(names.begin(), names.end(), [&](const std::string& a, const std::string& b) {
    return st.header[a]["data_offsets"][0].get<std::uint64_t>() <
           st.header[b]["data_offsets"][0].get<std::uint64_t>();
  });
  return names;
}

/// Names in `folder` that look like wq-gpu's temporary outputs (.NAME.wq-tmp.XXXXXX).
std::vector<std::string> temp_leftovers(const std::string& folder) {
  std::vector<std::string> found;
  std::error_code ec;
  for (fs::directory_iterator it(folder, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.find(".wq-tmp.") != std::string::npos) found.push_back(name);
  }
  return found;
}

std::string folder_of(const std::string& path) {
  const fs::path parent = fs::path(path).parent_path();
  return parent.empty() ? std::string(".") : parent.string();
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// ---------------------------------------------------------------------------------------------
// Temporary folders and the child process

class TempDir {
 public:
  TempDir() {
    char pattern[] = "/tmp/wq-e2e-XXXXXX";
    const char* made = ::mkdtemp(pattern);
    if (made == nullptr) throw std::runtime_error(std::string("mkdtemp: ") + std::strerror(errno));
    path_ = made;
  }
  ~TempDir() {
    for (const std::string& m : mounts_) ::umount2(m.c_str(), MNT_DETACH);
    std::error_code ec;
    // Undo chmod 0555 so that a non-root user can remove everything.
    for (fs::recursive_directory_iterator it(path_, ec), end; !ec && it != end; it.increment(ec)) {
      if (it->is_directory(ec)) fs::permissions(it->path(), fs::perms::owner_all, fs::perm_options::add, ec);
    }
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }
  void note_mount(const std::string& mount_point) { mounts_.push_back(mount_point); }

 private:
  std::string path_;
  std::vector<std::string> mounts_;
};

struct RunResult {
  int status = -1;  ///< exit status; 128 + signal when killed by a signal
  bool timed_out = false;
  std::string out;
  std::string err;
};

struct RunOptions {
  std::string cwd;                             ///< empty: the test's working folder
  std::optional<std::uint64_t> file_size_limit;  ///< RLIMIT_FSIZE in bytes (like `ulimit -f`)
  int timeout_s = 30;                          ///< then the child is killed (SIGKILL)
};

std::ostream& operator<<(std::ostream& os, const RunResult& r) {
  return os << "exit status " << r.status << (r.timed_out ? " (timed out, killed)" : "") << "\n--- stdout ---\n" << r.out << "--- stderr ---\n" << r.err;
}

/// Runs the real wq-gpu with `args`; stdout and stderr go to files in `log_folder`.
RunResult run_wq(const std::vector<std::string>& args, const std::string& log_folder,
                 const RunOptions& options = {}) {
  static int counter = 0;
  const std::string stem = log_folder + "/run" + std::to_string(++counter);
  const std::string out_path = stem + ".out", err_path = stem + ".err";

  std::vector<std::string> argv_storage{WQ_GPU_BINARY};
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_storage) argv.push_back(a.data());
  argv.push_back(nullptr);

  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {  // child: only async-signal-safe calls from here on
    const int in = ::open("/dev/null", O_RDONLY);
    const int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (in < 0 || out < 0 || err < 0) ::_exit(126);
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(err, 2);
    if (!options.cwd.empty() && ::chdir(options.cwd.c_str()) != 0) ::_exit(126);
    if (options.file_size_limit) {
      const rlimit limit{*options.file_size_limit, *options.file_size_limit};
      if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) ::_exit(126);
    }
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  RunResult r;
  int wstatus = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(options.timeout_s);
  for (;;) {
    const pid_t done = ::waitpid(pid, &wstatus, WNOHANG);
    if (done == pid || (done < 0 && errno != EINTR)) break;
    if (std::chrono::steady_clock::now() > deadline && !r.timed_out) {
      r.timed_out = true;
      ::kill(pid, SIGKILL);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  r.status = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus);
  r.out = read_file(out_path);
  r.err = read_file(err_path);
  return r;
}

// ---------------------------------------------------------------------------------------------
// The fixture: a fresh folder per test with the input beside an `out` folder for outputs.
// Suite names start with "cli" so that `ctest -R cli` selects exactly these tests.

class cli : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directory(dir_ / "logs");
    fs::create_directory(dir_ / "out");
  }

  RunResult run(const std::vector<std::string>& args, const RunOptions& options = {}) {
    return run_wq(args, dir_ / "logs", options);
  }

  /// A copy of the bundled example in the test's folder.
  std::string copy_example(const std::string& name = "student_net.safetensors") {
    const std::string path = dir_ / name;
    fs::copy_file(kExample, path);
    return path;
  }

  std::string out(const std::string& name) const { return dir_.path() + "/out/" + name; }

  /// Quantizes `input` into `output` and requires success.
  void quantize_ok(const std::string& input, const std::string& output, std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"quantize", input, "-o", output, "--backend", "cpu", "-q"};
    args.insert(args.end(), extra.begin(), extra.end());
    const RunResult r = run(args);
    ASSERT_EQ(r.status, kOk) << r;
    ASSERT_TRUE(fs::exists(output)) << r;
  }

  ojson inspect_json(const std::string& file) {
    const RunResult r = run({"inspect", file, "--json"});
    EXPECT_EQ(r.status, kOk) << r;
    try {
      return ojson::parse(r.out);
    } catch (const std::exception& e) {
      ADD_FAILURE() << "inspect --json printed invalid JSON: " << e.what() << "\n" << r;
      return ojson::object();
    }
  }

  TempDir dir_;
};

/// The contract of every failure: status, an error that names the culprits, nothing written,
/// nothing left behind, input untouched.
void expect_clean_failure(const RunResult& r, int status, const std::vector<std::string>& mentions,
                          const std::string& output, const std::string& input = "",
                          const Bytes* input_before = nullptr) {
  EXPECT_EQ(r.status, status) << r;
  EXPECT_TRUE(contains(lower(r.err), "error")) << "stderr says no 'error'\n" << r;
  for (const std::string& m : mentions) EXPECT_TRUE(contains(r.err, m)) << "stderr does not mention '" << m << "'\n" << r;
  if (!output.empty()) {
    std::error_code ec;
    EXPECT_FALSE(fs::exists(output, ec)) << "output exists: " << output << "\n" << r;
    EXPECT_EQ(temp_leftovers(folder_of(output)), std::vector<std::string>{}) << "temporary files left behind\n" << r;
  }
  if (input_before != nullptr) {
    EXPECT_TRUE(read_file(input) == *input_before) << "input was modified: " << input;
  }
}

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

TEST_F(cli, ReservedMethodIsUnsupported) {
  const std::string input = copy_example();
  const Bytes before = read_file(input);
  const std::string output = out("model.wq.safetensors");
  const RunResult r = run({"quantize", input, "-o", output, "--method", "symmetric"});
  expect_clean_failure(r, kUnsupported, {"symmetric"}, output, input, &before);
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
  const std::string folder = dir_ / "model-folder";
  fs::create_directory(folder);
  const std::string output = out("model.wq.safetensors");
  const RunResult r = run({"quantize", folder, "-o", output, "--backend", "cpu"});
  // Reported as a usage error by this version (one file at a time).
  expect_clean_failure(r, kUsage, {folder}, output);
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
  const std::string input = copy_example();
  const Bytes before = read_file(input);
  const std::string output = out("model.wq.safetensors");
  const RunResult r = run({"quantize", input, "-o", output, "--backend", "cuda"});
  expect_clean_failure(r, kUnsupported, {"--backend cuda", "--backend cpu"}, output, input, &before);
  EXPECT_EQ(r.out, "");

  const std::string container = out("cpu.wq.safetensors");
  quantize_ok(input, container);
  const std::string decoded = out("decoded.safetensors");
  const RunResult d = run({"decode", container, "-o", decoded, "--backend", "cuda"});
  expect_clean_failure(d, kUnsupported, {"--backend cuda"}, decoded);
}

TEST_F(cli, AutoBackendFallsBackToCpuWithOneNotice) {
  const std::string input = copy_example();
  const std::string with_auto = out("auto.wq.safetensors");
  const std::string with_cpu = out("cpu.wq.safetensors");
  const RunResult a = run({"quantize", input, "-o", with_auto, "--backend", "auto"});
  ASSERT_EQ(a.status, kOk) << a;
  EXPECT_EQ(std::count(a.err.begin(), a.err.end(), '\n'), 1) << "expected one line of notice\n" << a;
  EXPECT_TRUE(contains(a.err, "CPU")) << a;
  EXPECT_FALSE(contains(lower(a.err), "error")) << a;
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
      {"version 2", [](ojson& m) { m["version"] = 2; }, {"version"}},
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

}  // namespace

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
