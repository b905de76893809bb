// CUDA backend benchmarks, each next to the limit it should approach, measured in the same run:
//   1. the device's own bandwidths: device-to-device copy, pinned host<->device;
//   2. quantize kernels on device-resident float32 (per-group 4/8 bit, per-channel,
//      per-tensor), GB/s of input and of memory traffic, against the device copy;
//   3. the whole pipeline, quantize_file() on a large page-cached checkpoint, against
//      min(pinned host-to-device, plain file read) measured on the same file;
//   4. 1,000 files of 1 MiB through one backend, against the large-file rate.
//
// usage: bench_cuda [--device N] [--dir DIR] [--gb G] [--small-files N]
//   DIR (default /dev/shm) holds the generated checkpoints; use a tmpfs so the file system is
//   not what is measured. G (default 8) is the large checkpoint's size.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "bench_files.h"
#include "kernel_benchmark.h"
#include "wq/wq.h"

namespace {

namespace fs = std::filesystem;

using wq::bench::median_seconds;
using wq::bench::seconds_since;
using wq::bench::write_checkpoint;

// Reads the file with `threads` threads, each pread()ing its share in 64 MiB chunks.
double read_seconds(const std::string& path, unsigned threads) {
  const std::uint64_t size = fs::file_size(path);
  return median_seconds(3, [&] {
    const int fd = ::open(path.c_str(), O_RDONLY);
    std::vector<std::thread> workers;
    for (unsigned t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] {
        std::vector<char> buffer(64 << 20);
        const std::uint64_t begin = size * t / threads, end = size * (t + 1) / threads;
        for (std::uint64_t at = begin; at < end;) {
          const ssize_t n = ::pread(fd, buffer.data(), std::min<std::uint64_t>(buffer.size(), end - at), static_cast<off_t>(at));
          if (n <= 0) break;
          at += static_cast<std::uint64_t>(n);
        }
      });
    }
    for (std::thread& w : workers) w.join();
    ::close(fd);
  });
}

wq::QuantSpec spec_of(int bits, wq::Granularity g, std::uint64_t group = 64) {
  wq::QuantSpec s;
  s.bits = bits;
  s.granularity = g;
  s.group_size = group;
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  int device = 0;
  std::string dir = "/dev/shm";
  double gb = 8;
  int small_files = 1000;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--device") device = std::atoi(argv[i + 1]);
    else if (flag == "--dir") dir = argv[i + 1];
    else if (flag == "--gb") gb = std::atof(argv[i + 1]);
    else if (flag == "--small-files") small_files = std::atoi(argv[i + 1]);
  }
  try {
    const wq::cuda::DeviceLimits limits = wq::cuda::measure_device_limits(device, 1ull << 30);
    std::printf("device: %s\n", limits.device.c_str());
    std::printf("device-to-device copy %.1f GB/s (bytes copied; %.1f GB/s of traffic), pinned H2D %.1f GB/s, D2H %.1f GB/s\n\n",
                limits.device_copy, 2 * limits.device_copy, limits.host_to_device, limits.device_to_host);

    std::printf("%-28s %10s %12s %14s %16s\n", "kernels, [8192, 8192] f32", "input GB/s", "traffic GB/s",
                "input / copy", "traffic / 2xcopy");
    struct Case { const char* name; wq::QuantSpec spec; };
    const Case cases[] = {
        {"4-bit group 64", spec_of(4, wq::Granularity::kGroup, 64)},
        {"8-bit group 64", spec_of(8, wq::Granularity::kGroup, 64)},
        {"4-bit group 128", spec_of(4, wq::Granularity::kGroup, 128)},
        {"3-bit group 32", spec_of(3, wq::Granularity::kGroup, 32)},
        {"4-bit group 512", spec_of(4, wq::Granularity::kGroup, 512)},
        {"4-bit group 100 (general)", spec_of(4, wq::Granularity::kGroup, 100)},
        {"8-bit per-channel", spec_of(8, wq::Granularity::kChannel)},
        {"4-bit per-channel", spec_of(4, wq::Granularity::kChannel)},
        {"8-bit per-tensor", spec_of(8, wq::Granularity::kTensor)},
    };
    const auto print_kernels = [&](const char* name, std::uint64_t rows, std::uint64_t cols, const wq::QuantSpec& spec) {
      const wq::cuda::KernelTiming t = wq::cuda::time_quantize_kernels(device, rows, cols, spec, 20);
      std::printf("%-28s %10.1f %12.1f %13.0f%% %15.0f%%\n", name, t.input_gbps, t.traffic_gbps,
                  100 * t.input_gbps / limits.device_copy, 100 * t.traffic_gbps / (2 * limits.device_copy));
    };
    for (const Case& c : cases) print_kernels(c.name, 8192, 8192, c.spec);
    // Rows as long as the widest LLM matrices (e.g. [8192, 28672]), per channel, same bytes.
    print_kernels("4-bit per-channel [2048,32768]", 2048, 32768, spec_of(4, wq::Granularity::kChannel));

    // The pipeline on a large checkpoint.
    const int tensors = std::max(1, static_cast<int>(gb * 1e9 / (64.0 * (1 << 20))));
    const std::string big = dir + "/wq_bench_big.safetensors";
    const std::string out = dir + "/wq_bench_big.wq.safetensors";
    write_checkpoint(big, tensors, 4096, 4096);
    const double file_bytes = static_cast<double>(fs::file_size(big));
    const double read_gbps = file_bytes / read_seconds(big, 1) / 1e9;
    const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
    const double parallel_read_gbps = file_bytes / read_seconds(big, cores) / 1e9;
    std::printf("\npipeline: %s, %.2f GB (%d tensors [4096, 4096] f32)\n", big.c_str(), file_bytes / 1e9, tensors);
    std::printf("plain read %.1f GB/s (one stream; %.1f GB/s with %u threads), pinned H2D %.1f GB/s: limit %.1f GB/s\n",
                read_gbps, parallel_read_gbps, cores, limits.host_to_device, std::min(read_gbps, limits.host_to_device));
    wq::BackendOptions cuda_options;
    cuda_options.kind = wq::BackendKind::kCuda;
    cuda_options.device = device;
    std::unique_ptr<wq::Backend> cuda = wq::make_backend(cuda_options).backend;
    std::unique_ptr<wq::Backend> cpu = wq::make_backend({wq::BackendKind::kCpu, 0, 0, 0}).backend;
    std::printf("backend: %s\n", cuda->description().c_str());
    double large_rate = 0;
    struct PipelineCase { const char* name; wq::QuantSpec spec; wq::Backend* backend; };
    const PipelineCase pipeline_cases[] = {
        {"cuda 4-bit group 64", spec_of(4, wq::Granularity::kGroup, 64), cuda.get()},
        {"cuda 8-bit per-channel", spec_of(8, wq::Granularity::kChannel), cuda.get()},
        {"cuda 8-bit per-tensor", spec_of(8, wq::Granularity::kTensor), cuda.get()},
        {"cpu (all cores) 4-bit group 64", spec_of(4, wq::Granularity::kGroup, 64), cpu.get()},
    };
    for (const PipelineCase& c : pipeline_cases) {
      wq::QuantizeOptions options;
      options.spec = c.spec;
      const double s = median_seconds(3, [&] { wq::quantize_file(big, out, *c.backend, options); });
      const double rate = file_bytes / s / 1e9;
      if (large_rate == 0) large_rate = rate;
      std::printf("  %-32s %6.2f s  %6.1f GB/s  %4.0f%% of the limit, %4.0f%% of the %u-thread read\n", c.name, s,
                  rate, 100 * rate / std::min(read_gbps, limits.host_to_device), 100 * rate / parallel_read_gbps, cores);
    }
    fs::remove(big);
    fs::remove(out);

    // Many small files through one backend.
    const std::string small_dir = dir + "/wq_bench_small";
    fs::create_directories(small_dir);
    for (int i = 0; i < small_files; ++i) write_checkpoint(small_dir + "/m" + std::to_string(i) + ".safetensors", 1, 512, 512);
    std::printf("\n");
    // One process, W workers, each with its own backend (as a tree run with --jobs W would).
    for (unsigned workers : {1u, 4u, 8u}) {
      std::vector<std::unique_ptr<wq::Backend>> backends;
      for (unsigned w = 0; w < workers; ++w) {
        wq::BackendOptions o = cuda_options;
        o.gpu_memory = 256ull << 20;
        backends.push_back(wq::make_backend(o).backend);
      }
      // Each pass creates its outputs: renaming over the last pass's would free their pages
      // inside the timing, which a first conversion does not pay.
      for (int i = 0; i < small_files; ++i) fs::remove(small_dir + "/m" + std::to_string(i) + ".wq.safetensors");
      std::atomic<int> next{0};
      const auto t0 = std::chrono::steady_clock::now();
      std::vector<std::thread> threads;
      for (unsigned w = 0; w < workers; ++w) {
        threads.emplace_back([&, w] {
          wq::QuantizeOptions options;
          options.spec = spec_of(4, wq::Granularity::kGroup, 64);
          for (int i; (i = next++) < small_files;) {
            const std::string in = small_dir + "/m" + std::to_string(i) + ".safetensors";
            wq::quantize_file(in, small_dir + "/m" + std::to_string(i) + ".wq.safetensors", *backends[w], options);
          }
        });
      }
      for (std::thread& t : threads) t.join();
      const double small_bytes = static_cast<double>(small_files) * static_cast<double>(fs::file_size(small_dir + "/m0.safetensors"));
      const double small_rate = small_bytes / seconds_since(t0) / 1e9;
      std::printf("%d files of 1 MiB, cuda 4-bit group 64, %u worker%s: %.2f GB/s, %.0f%% of the large-file rate\n",
                  small_files, workers, workers == 1 ? "" : "s", small_rate, 100 * small_rate / large_rate);
    }
    fs::remove_all(small_dir);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_cuda: %s\n", e.what());
    return 1;
  }
  return 0;
}
