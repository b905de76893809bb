// Read throughput per checkpoint format next to a plain read of the same file, measured in
// the same run: every tensor of each file is read through open_checkpoint() and checksummed
// (so every byte is touched), then the file itself is read with read(2) and checksummed.
// Files should be page-cached first (run_formats.sh does it), so both sides measure the
// format's overhead, not the disk.
//
// usage: bench_read FILE... (prints one line per file: format, GB/s, ratio to plain read)
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include <xxhash.h>

#include "wq/wq.h"

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Median of five runs of `run`, in seconds.
template <typename Fn>
double median_seconds(Fn&& run) {
  std::vector<double> times;
  for (int i = 0; i < 5; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    run();
    times.push_back(seconds_since(t0));
  }
  std::sort(times.begin(), times.end());
  return times[2];
}

std::uint64_t plain_read(const char* path) {
  const int fd = ::open(path, O_RDONLY);
  std::vector<char> buffer(8 << 20);
  XXH64_state_t* state = XXH64_createState();
  XXH64_reset(state, 0);
  for (ssize_t n; (n = ::read(fd, buffer.data(), buffer.size())) > 0;) XXH64_update(state, buffer.data(), static_cast<std::size_t>(n));
  ::close(fd);
  const std::uint64_t h = XXH64_digest(state);
  XXH64_freeState(state);
  return h;
}

std::uint64_t read_tensors(const char* path, std::uint64_t* tensor_bytes) {
  std::unique_ptr<wq::CheckpointReader> reader = wq::open_checkpoint(path);
  std::uint64_t h = 0;
  *tensor_bytes = 0;
  for (std::size_t i = 0; i < reader->tensors().size(); ++i) {
    const wq::TensorView v = reader->tensor(i);
    h ^= XXH64(v.data, v.nbytes(), i);
    *tensor_bytes += v.nbytes();
    reader->release(i);
  }
  return h;
}

}  // namespace

int main(int argc, char** argv) {
  std::printf("%-28s %-20s %12s %10s %10s %8s\n", "file", "format", "MB", "format GB/s", "read GB/s", "ratio");
  for (int a = 1; a < argc; ++a) {
    try {
      std::uint64_t bytes = 0, sink = 0;
      const std::string format = wq::open_checkpoint(argv[a])->format();
      const double t_format = median_seconds([&] { sink ^= read_tensors(argv[a], &bytes); });
      const double t_plain = median_seconds([&] { sink ^= plain_read(argv[a]); });
      const double file_bytes = static_cast<double>(wq::open_checkpoint(argv[a])->file_bytes());
      // GB/s of tensor data for the format, of file bytes for the plain read.
      const double format_rate = static_cast<double>(bytes) / t_format / 1e9;
      const double plain_rate = file_bytes / t_plain / 1e9;
      std::printf("%-28s %-20s %12.1f %10.2f %10.2f %8.2f%s\n", argv[a], format.c_str(), file_bytes / 1e6,
                  format_rate, plain_rate, format_rate / plain_rate, sink == 42 ? " " : "");
    } catch (const wq::Error& e) {
      std::fprintf(stderr, "%s\n", e.what());
      return 1;
    }
  }
  return 0;
}
