// Support for the end-to-end tests of the real wq-gpu binary (WQ_GPU_BINARY).
//
// Every test runs the binary as a child process in a fresh temporary folder and looks only at
// what a user sees: the exit status (host/cli/main.cpp, include/wq/error.h), stdout, stderr and
// the files left on disk. Hostile inputs are built byte by byte here. Every failure case checks
// the same contract (expect_clean_failure): the documented exit status, an "error" on stderr
// that names the file (and the tensor where there is one), no output, no leftover temporary
// file (.NAME.wq-tmp.XXXXXX) in the output folder, and an input that is byte-for-byte unchanged.
#pragma once

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

namespace wq::e2e {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;
using Bytes = std::string;  // file contents; std::string compares and prints conveniently

inline const std::string kExample = WQ_SOURCE_DIR "/examples/student_net.safetensors";

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

inline Bytes read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline void write_file(const std::string& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << "cannot write " << path;
}

inline std::string u64_le(std::uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

/// A safetensors file: 8-byte little-endian header length N, N bytes of JSON, then the data.
/// The header is given as text so that hostile headers (duplicate keys, ...) can be written.
inline Bytes safetensors_bytes(const std::string& header_json, const Bytes& data) {
  return u64_le(header_json.size()) + header_json + data;
}

inline void write_safetensors(const std::string& path, const std::string& header_json, const Bytes& data) {
  write_file(path, safetensors_bytes(header_json, data));
}

inline Bytes f32_bytes(const std::vector<float>& values) {
  Bytes b(values.size() * 4, '\0');
  std::memcpy(b.data(), values.data(), b.size());
  return b;
}

inline std::vector<float> f32_values(const Bytes& b) {
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

inline Safetensors parse_safetensors(const Bytes& bytes) {
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
inline std::vector<std::string> names_in_data_order(const Safetensors& st) {
  std::vector<std::string> names = st.tensor_names();
  std::stable_sort(names.begin(), names.end(), [&](const std::string& a, const std::string& b) {
    return st.header[a]["data_offsets"][0].get<std::uint64_t>() <
           st.header[b]["data_offsets"][0].get<std::uint64_t>();
  });
  return names;
}

/// Names in `folder` that look like wq-gpu's temporary outputs (.NAME.wq-tmp.XXXXXX).
inline std::vector<std::string> temp_leftovers(const std::string& folder) {
  std::vector<std::string> found;
  std::error_code ec;
  for (fs::directory_iterator it(folder, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.find(".wq-tmp.") != std::string::npos) found.push_back(name);
  }
  return found;
}

inline std::string folder_of(const std::string& path) {
  const fs::path parent = fs::path(path).parent_path();
  return parent.empty() ? std::string(".") : parent.string();
}

inline bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

inline std::string lower(std::string s) {
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
  std::uint64_t max_rss_bytes = 0;  ///< the child's peak resident set (getrusage's ru_maxrss)
  std::string out;
  std::string err;
};

struct RunOptions {
  std::string cwd;                             ///< empty: the test's working folder
  std::optional<std::uint64_t> file_size_limit;  ///< RLIMIT_FSIZE in bytes (like `ulimit -f`)
  int timeout_s = 30;                          ///< then the child is killed (SIGKILL)
  std::vector<std::string> env = {};           ///< "NAME=VALUE" added to the child's environment
  std::optional<int> kill_after_ms = {};       ///< SIGKILL the child this long after it started
};

inline std::ostream& operator<<(std::ostream& os, const RunResult& r) {
  return os << "exit status " << r.status << (r.timed_out ? " (timed out, killed)" : "") << "\n--- stdout ---\n" << r.out << "--- stderr ---\n" << r.err;
}

/// Runs the real wq-gpu with `args`; stdout and stderr go to files in `log_folder`.
inline RunResult run_wq(const std::vector<std::string>& args, const std::string& log_folder,
                 const RunOptions& options = {}) {
  static int counter = 0;
  const std::string stem = log_folder + "/run" + std::to_string(++counter);
  const std::string out_path = stem + ".out", err_path = stem + ".err";

  std::vector<std::string> argv_storage{WQ_GPU_BINARY};
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_storage) argv.push_back(a.data());
  argv.push_back(nullptr);

  // Created here, so that they exist even when the child is killed before it opens them.
  std::ofstream(out_path, std::ios::trunc);
  std::ofstream(err_path, std::ios::trunc);
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
    for (const std::string& e : options.env) ::putenv(const_cast<char*>(e.c_str()));
    if (options.file_size_limit) {
      const rlimit limit{*options.file_size_limit, *options.file_size_limit};
      if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) ::_exit(126);
    }
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  RunResult r;
  int wstatus = 0;
  const auto started = std::chrono::steady_clock::now();
  const auto deadline = started + std::chrono::seconds(options.timeout_s);
  bool killed = false;
  for (;;) {
    rusage usage{};
    const pid_t done = ::wait4(pid, &wstatus, WNOHANG, &usage);
    if (done == pid) r.max_rss_bytes = static_cast<std::uint64_t>(usage.ru_maxrss) * 1024;
    if (done == pid || (done < 0 && errno != EINTR)) break;
    if (options.kill_after_ms && !killed &&
        std::chrono::steady_clock::now() >= started + std::chrono::milliseconds(*options.kill_after_ms)) {
      killed = true;
      ::kill(pid, SIGKILL);
    }
    if (std::chrono::steady_clock::now() > deadline && !r.timed_out) {
      r.timed_out = true;
      ::kill(pid, SIGKILL);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(options.kill_after_ms ? 200 : 2000));
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
inline void expect_clean_failure(const RunResult& r, int status, const std::vector<std::string>& mentions,
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

}  // namespace wq::e2e
