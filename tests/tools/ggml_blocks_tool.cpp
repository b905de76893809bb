// Test helper: wq's ggml block quantizers and decoders over raw files, so that
// tests/reference/ggml_live_check.py can hold them to ggml's own library byte for byte.
//
//   ggml_blocks_tool quantize TYPE IN.f32 OUT.blocks [THREADS] [--time]
//   ggml_blocks_tool search   TYPE IN.f32 OUT.blocks [THREADS] [--time]   (wq's mse, legacy types)
//   ggml_blocks_tool decode   TYPE IN.blocks OUT.f32 [THREADS] [--time]
//
// --time prints the kernel's own seconds on stderr ("seconds S"), for bench/anchor_ggml.py.
// IN.f32 / OUT.f32 are little-endian float32 arrays; TYPE is a ggml name (Q4_0 ... Q6_K).
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "core/ggml_jobs.h"
#include "cpu/ggml_kernels.h"
#include "cpu/thread_pool.h"
#include "wq/codec/ggml_blocks.h"

namespace {

namespace ggml = wq::codec::ggml;

bool type_from_name(const std::string& name, ggml::Type* out) {
  for (ggml::Type t : ggml::kQuantizedTypes) {
    if (name == ggml::type_name(t)) {
      *out = t;
      return true;
    }
  }
  return false;
}

std::vector<char> read_all(const char* path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

bool write_all(const char* path, const void* data, std::size_t size) {
  std::ofstream out(path, std::ios::binary);
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
  return static_cast<bool>(out);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s quantize|search|decode TYPE IN OUT [THREADS]\n", argv[0]);
    return 2;
  }
  ggml::Type type;
  if (!type_from_name(argv[2], &type)) {
    std::fprintf(stderr, "unknown type %s\n", argv[2]);
    return 2;
  }
  const ggml::TypeLayout layout = ggml::layout_of(type);
  wq::detail::ThreadPool pool(argc > 5 ? static_cast<unsigned>(std::stoul(argv[5])) : 1u);
  const bool timed = argc > 6 && std::strcmp(argv[6], "--time") == 0;
  // The kernel's own time: from after the input is read and the output allocated (and faulted
  // in, for decode) to its end.
  const auto report_time = [&](std::chrono::steady_clock::time_point kernel) {
    if (timed) {
      std::fprintf(stderr, "seconds %.6f\n", std::chrono::duration<double>(std::chrono::steady_clock::now() - kernel).count());
    }
  };
  const std::vector<char> input = read_all(argv[3]);
  const bool search = std::strcmp(argv[1], "search") == 0;
  if (std::strcmp(argv[1], "quantize") == 0 || search) {
    const std::uint64_t count = input.size() / 4;
    if (input.size() % 4 != 0 || count % layout.block_elements != 0) {
      std::fprintf(stderr, "%s: %llu values are not whole %s blocks\n", argv[3],
                   static_cast<unsigned long long>(count), argv[2]);
      return 1;
    }
    std::vector<float> x(count);
    std::memcpy(x.data(), input.data(), input.size());
    std::vector<std::uint8_t> out(count / layout.block_elements * layout.block_bytes);
    const auto kernel = std::chrono::steady_clock::now();
    if (search) {  // the CPU backend's own path, statistics included
      const wq::Shape shape{count / layout.block_elements, layout.block_elements};
      wq::GgmlQuantizeJob job{wq::TensorView{"x", wq::DType::kF32, shape, reinterpret_cast<const std::byte*>(x.data())},
                              type, out.data(), true, {}};
      try {
        wq::detail::check_ggml_quantize_job(job);
        job.stats = wq::detail::quantize_ggml_tensor(job, pool);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 1;
      }
    } else {
      wq::detail::quantize_ggml_blocks(type, x.data(), count, out.data(), &pool);
    }
    report_time(kernel);
    return write_all(argv[4], out.data(), out.size()) ? 0 : 1;
  }
  if (std::strcmp(argv[1], "decode") == 0) {
    if (input.size() % layout.block_bytes != 0) {
      std::fprintf(stderr, "%s: not whole %s blocks\n", argv[3], argv[2]);
      return 1;
    }
    const std::uint64_t count = input.size() / layout.block_bytes * layout.block_elements;
    std::vector<float> out(count);
    const auto kernel = std::chrono::steady_clock::now();
    wq::detail::decode_ggml_blocks(type, reinterpret_cast<const std::uint8_t*>(input.data()), count, out.data(), &pool);
    report_time(kernel);
    return write_all(argv[4], out.data(), out.size() * 4) ? 0 : 1;
  }
  std::fprintf(stderr, "unknown command %s\n", argv[1]);
  return 2;
}
