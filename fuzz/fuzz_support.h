// What every fuzz target shares: a per-process scratch folder on tmpfs for the files the public
// API reads, and the reading of every byte of every tensor a reader hands out.
//
// Only wq::Error is caught, and only around the calls that may throw it. Anything else (a
// std::length_error, a nlohmann::json exception, std::bad_alloc, ...) escapes the target and
// libFuzzer reports it as a crash: untrusted input must only ever produce a wq::Error.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "core/utf8.h"
#include "wq/checkpoint.h"
#include "wq/error.h"

namespace wq::fuzz {

/// A harness problem (not a finding in wq): say what and stop.
[[noreturn]] inline void harness_failure(const std::string& what) {
  std::fprintf(stderr, "wq fuzz harness: %s\n", what.c_str());
  std::abort();
}

/// A broken promise of the API (a view that cannot be what tensors() said): a finding.
[[noreturn]] inline void contract_violation(const std::string& what) {
  std::fprintf(stderr, "wq fuzz: API contract violated: %s\n", what.c_str());
  std::abort();
}

/// The folder this process writes its inputs into: $WQ_FUZZ_TMPDIR, else /dev/shm (tmpfs:
/// writing an input costs no disk I/O), else $TMPDIR, else /tmp. Named wq-fuzz-PID-XXXXXX and
/// removed at exit; a crash leaves it behind (libFuzzer exits with _Exit), so the next process
/// removes those whose PID is gone.
class Scratch {
 public:
  static Scratch& get() {
    static Scratch scratch;
    return scratch;
  }
  std::string path(std::string_view name) const { return dir_ + "/" + std::string(name); }

  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;

 private:
  Scratch() {
    std::string base;
    if (const char* env = std::getenv("WQ_FUZZ_TMPDIR"); env != nullptr && *env != '\0') {
      base = env;
    } else if (::access("/dev/shm", W_OK | X_OK) == 0) {
      base = "/dev/shm";
    } else if (const char* tmp = std::getenv("TMPDIR"); tmp != nullptr && *tmp != '\0') {
      base = tmp;
    } else {
      base = "/tmp";
    }
    remove_stale(base);
    std::string pattern = base + "/wq-fuzz-" + std::to_string(::getpid()) + "-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) {
      harness_failure("cannot create a scratch folder in " + base + ": " + std::strerror(errno));
    }
    dir_ = pattern;
  }
  ~Scratch() {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  static void remove_stale(const std::string& base) {
    std::error_code ec;
    for (std::filesystem::directory_iterator it(base, ec), end; !ec && it != end; it.increment(ec)) {
      const std::string name = it->path().filename().string();
      if (name.rfind("wq-fuzz-", 0) != 0) continue;
      const long pid = std::strtol(name.c_str() + 8, nullptr, 10);
      if (pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
        std::error_code ignored;
        std::filesystem::remove_all(it->path(), ignored);
      }
    }
  }

  std::string dir_;
};

/// Replaces the file at `path` by `size` bytes of `data`.
inline void write_file(const std::string& path, const void* data, std::size_t size) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) harness_failure("cannot write " + path + ": " + std::strerror(errno));
  const auto* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) harness_failure("cannot write " + path + ": " + std::strerror(errno));
    p += n;
    size -= static_cast<std::size_t>(n);
  }
  if (::close(fd) != 0) harness_failure("cannot close " + path + ": " + std::strerror(errno));
}

inline void remove_file(const std::string& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) harness_failure("cannot remove " + path);
}

/// Every byte read goes through here into a volatile sink, so that nothing is optimised away
/// and AddressSanitizer checks every byte of every buffer wq hands out.
inline volatile std::uint64_t g_sink = 0;

inline void touch(const void* data, std::uint64_t bytes) {
  const auto* p = static_cast<const unsigned char*>(data);
  std::uint64_t sum = g_sink;
  for (std::uint64_t i = 0; i < bytes; ++i) sum = sum * 31 + p[i];
  g_sink = sum;
}

inline void touch(std::string_view text) { touch(text.data(), text.size()); }

/// Bytes of a dense tensor of `shape` and `dtype`, or false when that does not fit in 64 bits
/// (element_count() itself throws wq::Error on an element count that does not).
inline bool tensor_bytes(const Shape& shape, DType dtype, std::uint64_t* bytes) {
  return !__builtin_mul_overflow(element_count(shape), static_cast<std::uint64_t>(dtype_size(dtype)), bytes);
}

/// Reads every byte of a view the reader returned for `info`.
inline void read_view(const TensorView& view, const TensorInfo& info) {
  touch(view.name);
  if (view.dtype != info.dtype || view.shape != info.shape) {
    contract_violation("tensor '" + info.name + "': the view's dtype or shape differs from tensors()");
  }
  std::uint64_t bytes = 0;
  if (!tensor_bytes(view.shape, view.dtype, &bytes)) {
    contract_violation("tensor '" + info.name + "': a view whose byte size overflows 64 bits");
  }
  if (bytes != 0 && view.data == nullptr) contract_violation("tensor '" + info.name + "': a null view");
  touch(view.data, bytes);
}

/// Opens `path` as a checkpoint through the public API and reads all of it: for each tensor,
/// tensor(i), every byte of the view, release(i), then tensor(i) once more after the release;
/// a tensor(i) that throws is called a second time (a failure must leave nothing dangling).
///
/// classify_file() (what tree mode runs on every file of a folder) parses much of what
/// open_checkpoint() parses again, and took a quarter of each run: it runs on the inputs whose
/// size is a multiple of 4 (a fixed choice per input, so a finding reproduces).
inline void exercise_checkpoint(const std::string& path, std::size_t size) {
  if (size % 4 == 0) {
    try {
      (void)classify_file(path);
    } catch (const Error&) {
    }
  }
  std::unique_ptr<CheckpointReader> reader;
  try {
    reader = open_checkpoint(path);
  } catch (const Error&) {
    return;
  }
  touch(reader->path());
  touch(reader->format());
  g_sink = g_sink + reader->file_bytes();
  const std::span<const std::byte> mapped = reader->mapped_bytes();
  touch(mapped.data(), mapped.size());
  const std::vector<TensorInfo>& infos = reader->tensors();
  for (std::size_t i = 0; i < infos.size(); ++i) {
    touch(infos[i].name);
    // Names go into JSON (the container's header): open_checkpoint() promises UTF-8.
    if (!detail::is_valid_utf8(infos[i].name)) contract_violation("a tensor name that is not UTF-8");
    for (int round = 0; round < 2; ++round) {  // round 1: after release(i)
      try {
        read_view(reader->tensor(i), infos[i]);
      } catch (const Error&) {
        try {
          read_view(reader->tensor(i), infos[i]);
        } catch (const Error&) {
        }
      }
      try {
        reader->release(i);
      } catch (const Error&) {
      }
    }
  }
}

}  // namespace wq::fuzz
