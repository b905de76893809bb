// Many small files: where each file's time goes, and how the rate scales with workers.
//
// For W workers (each with its own backend, its CPU threads a share of the cores, as
// `wq-gpu quantize DIR --jobs W` sets them up), three passes over the same N files of 1 MiB
// ([512, 512] float32, 4-bit group 64):
//   files only   quantize_file() through a backend that only copies its input out (as the
//                CUDA backend stages it): opening, mapping and reading, planning,
//                checksumming, writing, fsync and rename, i.e. the host's share;
//   backend only the backend's quantize() of the same tensor held in memory, once per file;
//   whole        quantize_file() through the backend: what a user gets.
// If `whole` is near `files only`, the file handling limits; if both stop growing with W
// while the cores are not all busy, something the workers share does (the process's mapping
// lock, the file system's directory lock, a driver lock). Every pass starts with the outputs
// removed, so each creates its files (none replaces an old output).
//
// The large-file rate the issue compares with is quantize_file() of one G GB checkpoint of
// [4096, 4096] tensors, through one backend with every core.
//
// With --cli WQ_GPU, also what a user runs: `WQ_GPU quantize DIR -o OUT --backend B -q` over
// the same files (tree mode, its default --jobs), wall time of the whole command, median of 3.
//
// usage: bench_small_files [--backend auto|cpu|cuda] [--device N] [--dir DIR] [--files N]
//                          [--workers 1,2,4,8] [--large-gb G] [--cli PATH]
//   DIR (default /dev/shm) should be a tmpfs, so that a disk is not what is measured.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bench_files.h"
#include "wq/wq.h"

namespace {

namespace fs = std::filesystem;
using wq::bench::median_seconds;
using wq::bench::seconds_since;

constexpr std::uint64_t kRows = 512, kCols = 512;  // 1 MiB of float32

// Encodes nothing, but reads each input once, as the CUDA backend's copy into pinned memory
// does (taking the mapping's page faults): quantize_file() then writes its zeroed arenas, and
// what remains is the host's work on each file.
class NullBackend final : public wq::Backend {
 public:
  std::string_view name() const noexcept override { return "null"; }
  std::string description() const override { return "no encoding"; }
  using Backend::cast;
  using Backend::dequantize;
  using Backend::encode;
  using Backend::quantize;
  using Backend::decode_ggml;
  using Backend::quantize_ggml;
  void quantize(std::span<wq::QuantizeJob> jobs) override {
    for (wq::QuantizeJob& job : jobs) {
      staging_.resize(std::max<std::size_t>(staging_.size(), job.input.nbytes()));
      std::memcpy(staging_.data(), job.input.data, job.input.nbytes());
      job.stats = {};
    }
  }
  void encode(std::span<wq::EncodeJob> jobs) override {
    for (wq::EncodeJob& job : jobs) job.stats = {};
  }
  void dequantize(std::span<wq::DequantizeJob>) override {}
  void cast(std::span<wq::CastJob> jobs) override {
    for (wq::CastJob& job : jobs) job.stats = {};
  }
  void quantize_ggml(std::span<wq::GgmlQuantizeJob> jobs) override {
    for (wq::GgmlQuantizeJob& job : jobs) job.stats = {};
  }
  void decode_ggml(std::span<wq::GgmlDecodeJob>) override {}
  using Backend::quantize_packed;
  void quantize_packed(std::span<wq::PackQuantizeJob> jobs) override {
    for (wq::PackQuantizeJob& job : jobs) job.stats = {};
  }

 private:
  std::vector<std::byte> staging_;
};

wq::QuantSpec bench_spec() {
  wq::QuantSpec spec;
  spec.bits = 4;
  spec.granularity = wq::Granularity::kGroup;
  spec.group_size = 64;
  return spec;
}

std::vector<unsigned> parse_list(const std::string& text) {
  std::vector<unsigned> values;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    const int v = std::atoi(item.c_str());
    if (v < 1) {
      std::fprintf(stderr, "bench_small_files: --workers wants positive counts, got '%s'\n", item.c_str());
      std::exit(2);
    }
    values.push_back(static_cast<unsigned>(v));
  }
  return values;
}

// Runs `work(worker, file)` for files 0..files-1 on `workers` threads taking files in turn;
// returns the wall time.
double run_workers(unsigned workers, int files, const std::function<void(unsigned, int)>& work) {
  std::atomic<int> next{0};
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (unsigned w = 0; w < workers; ++w) {
    threads.emplace_back([&, w] {
      for (int i; (i = next++) < files;) work(w, i);
    });
  }
  for (std::thread& t : threads) t.join();
  return seconds_since(t0);
}

}  // namespace

int main(int argc, char** argv) {
  std::string kind_name = "auto", dir = "/dev/shm";
  int device = 0, files = 1000;
  double large_gb = 2;
  std::string cli;
  std::vector<unsigned> worker_counts = {1, 2, 4, 8};
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "bench_small_files: %s needs a value (see the usage at the top of the source)\n", flag.c_str());
      return 2;
    }
    const std::string value = argv[++i];
    if (flag == "--backend") kind_name = value;
    else if (flag == "--device") device = std::atoi(value.c_str());
    else if (flag == "--dir") dir = value;
    else if (flag == "--files") files = std::max(1, std::atoi(value.c_str()));
    else if (flag == "--workers") worker_counts = parse_list(value);
    else if (flag == "--large-gb") large_gb = std::atof(value.c_str());
    else if (flag == "--cli") cli = value;
    else {
      std::fprintf(stderr, "bench_small_files: unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  wq::BackendOptions options;
  options.device = device;
  if (kind_name == "cpu") options.kind = wq::BackendKind::kCpu;
  else if (kind_name == "cuda") options.kind = wq::BackendKind::kCuda;
  else if (kind_name != "auto") {
    std::fprintf(stderr, "bench_small_files: --backend is auto, cpu or cuda, not '%s'\n", kind_name.c_str());
    return 2;
  }
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  const std::string small_dir = dir + "/wq_bench_small_files";
  try {
    const wq::QuantSpec spec = bench_spec();
    // The backend first: without one there is nothing to generate files for.
    wq::BackendSelection probe = wq::make_backend(options);
    if (!probe.notice.empty()) std::printf("%s\n", probe.notice.c_str());
    fs::remove_all(small_dir);
    fs::create_directories(small_dir);
    const auto input = [&](int i) { return small_dir + "/m" + std::to_string(i) + ".safetensors"; };
    const auto output = [&](int i) { return small_dir + "/m" + std::to_string(i) + ".wq.safetensors"; };
    for (int i = 0; i < files; ++i) wq::bench::write_checkpoint(input(i), 1, kRows, kCols);
    const double file_bytes = static_cast<double>(fs::file_size(input(0)));
    const auto remove_outputs = [&] {
      for (int i = 0; i < files; ++i) fs::remove(output(i));
    };

    std::printf("backend: %s; %u cores; %d files of %.2f MB in %s, 4-bit group 64\n",
                probe.backend->description().c_str(), cores, files, file_bytes / 1e6, small_dir.c_str());

    double large_rate = 0;
    if (large_gb > 0) {
      const int tensors = std::max(1, static_cast<int>(large_gb * 1e9 / (64.0 * (1 << 20))));
      const std::string big = dir + "/wq_bench_small_files_large.safetensors";
      const std::string big_out = dir + "/wq_bench_small_files_large.wq.safetensors";
      wq::bench::write_checkpoint(big, tensors, 4096, 4096);
      wq::QuantizeOptions q;
      q.spec = spec;
      const double s = median_seconds(3, [&] { wq::quantize_file(big, big_out, *probe.backend, q); });
      large_rate = static_cast<double>(fs::file_size(big)) / s / 1e9;
      std::printf("large file (%d tensors [4096, 4096] f32, one backend, every core): %.2f GB/s\n", tensors,
                  large_rate);
      fs::remove(big);
      fs::remove(big_out);
    }
    probe.backend.reset();

    // The tensor every file holds, in memory, for the backend-only pass.
    std::vector<float> values(kRows * kCols);
    std::uint32_t state = 12345;
    wq::bench::fill_values(values, &state);
    const wq::TensorView tensor{"layer0.weight", wq::DType::kF32, {kRows, kCols},
                                reinterpret_cast<const std::byte*>(values.data())};
    const wq::GroupGeometry geometry = wq::group_geometry(tensor.shape, spec);

    std::printf("\n%7s | %-26s | %-26s | %-26s | %s\n", "workers", "files only: GB/s, ms/file", "backend only",
                "whole", large_rate > 0 ? "whole / large file" : "");
    for (const unsigned workers : worker_counts) {
      wq::BackendOptions per_worker = options;
      per_worker.threads = std::max(1u, cores / workers);
      if (workers > 1) per_worker.gpu_memory = std::max<std::uint64_t>(128ull << 20, (1536ull << 20) / workers);
      std::vector<std::unique_ptr<wq::Backend>> backends, nulls;
      for (unsigned w = 0; w < workers; ++w) {
        backends.push_back(wq::make_backend(per_worker).backend);
        nulls.push_back(std::make_unique<NullBackend>());
      }
      // Each worker's own output buffers for the backend-only pass.
      std::vector<std::vector<std::byte>> buffers(workers, std::vector<std::byte>(geometry.code_bytes + 8 * geometry.groups));
      const auto through = [&](std::vector<std::unique_ptr<wq::Backend>>& with) {
        return [&](unsigned w, int i) {
          wq::QuantizeOptions q;
          q.spec = spec;
          wq::quantize_file(input(i), output(i), *with[w], q);
        };
      };
      const auto in_memory = [&](unsigned w, int) {
        std::byte* base = buffers[w].data();
        const wq::AffineBuffers out{reinterpret_cast<std::uint8_t*>(base), base + geometry.code_bytes,
                                    base + geometry.code_bytes + 4 * geometry.groups};
        backends[w]->quantize(tensor, spec, out);
      };
      // Warm-up: the first files of a backend pay for its buffers (pinned memory, slots).
      run_workers(workers, static_cast<int>(2 * workers), in_memory);
      double seconds[3];
      remove_outputs();
      seconds[0] = run_workers(workers, files, through(nulls));
      seconds[1] = run_workers(workers, files, in_memory);
      remove_outputs();
      seconds[2] = run_workers(workers, files, through(backends));
      std::printf("%7u |", workers);
      for (const double s : seconds) {
        std::printf(" %7.2f GB/s %6.3f ms/file |", files * file_bytes / s / 1e9, 1e3 * s * workers / files);
      }
      if (large_rate > 0) std::printf(" %5.0f%%", 100 * files * file_bytes / seconds[2] / 1e9 / large_rate);
      std::printf("\n");
    }
    std::printf("(ms/file: the time each worker spends on one file)\n");

    if (!cli.empty()) {
      remove_outputs();  // the tree is the inputs alone
      const std::string tree_out = dir + "/wq_bench_small_files_tree";
      const std::string command = "'" + cli + "' quantize '" + small_dir + "' -o '" + tree_out + "' --backend " +
                                  kind_name + " --device " + std::to_string(device) + " --bits 4 --granularity group --group-size 64 -q";
      int status = 0;
      const double s = median_seconds(3, [&] {
        fs::remove_all(tree_out);
        status = std::max(status, std::system(command.c_str()));
      });
      fs::remove_all(tree_out);
      if (status != 0) throw std::runtime_error("the CLI failed (status " + std::to_string(status) + "): " + command);
      const double rate = files * file_bytes / s / 1e9;
      std::printf("\nCLI, tree mode, default --jobs: %.3f s, %.2f GB/s", s, rate);
      if (large_rate > 0) std::printf(", %.0f%% of the large-file rate", 100 * rate / large_rate);
      std::printf("\n  %s\n", command.c_str());
    }
    fs::remove_all(small_dir);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_small_files: %s\n", e.what());
    std::error_code ignored;
    fs::remove_all(small_dir, ignored);
    return 1;
  }
  return 0;
}
