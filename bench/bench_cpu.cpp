// CPU backend throughput: quantize / dequantize of a [4096, 4096] float32 tensor (64 MiB) for
// bits {8, 4, 3, 2} x granularity {tensor, channel, group 32, 64, 128} x threads {1, every core},
// next to two memory baselines measured in the same run on buffers of the same size:
//   memcpy  64 MiB -> 64 MiB   (bytes counted: the 64 MiB copied)
//   read    xor-reduce of 64 MiB (bytes counted: the 64 MiB read)
//
// Bytes processed are the float32 INPUT for quantize and the float32 OUTPUT for dequantize, so
// every rate below is "float32 bytes per second" and directly comparable with the baselines.
// All cases use real (wall-clock) time: the backend works on its own thread pool.
//
// The quantize_l2 cases time the kernels with the data in cache: a [64, 1024] float32 tensor
// (256 KiB, the first rows of the same input) quantized again and again on one thread, next to
// read_l2, the xor-reduce of the same 256 KiB. They measure the engine's compute rate, which
// memory hides in the 64 MiB cases (and the rate to compare with anchors timed in cache).
//
// The quantize_ggml/TYPE cases time Backend::quantize_ggml (ggml's reference quantizers, the
// bytes llama-quantize writes) over the same 64 MiB tensor (rows of 4096: whole blocks of every
// type). quantize_ggml_stream/Q8_0/t1 streams a 1 GiB input instead, next to read_stream, one
// thread's xor-reduce of the same 1 GiB: memory rates that no cache flatters (see below).
//
// After the run a table prints each case's median GB/s and its ratio to the memcpy and read
// baselines at the same thread count (read_l2 for the quantize_l2 cases, read_stream for the
// stream case).
//
// Environment (bench/run_all.py sets these): WQ_BENCH_INPUT=FILE takes the tensor from a file
// of 4096 x 4096 raw little-endian float32 (so that other tools can time the same values);
// WQ_BENCH_MIN_TIME (seconds per repetition, default 0.5) and WQ_BENCH_REPETITIONS (default 3).
//
//   build-bench/bench/bench_cpu                      # everything, ~3 minutes on 2 cores
//   build-bench/bench/bench_cpu --benchmark_filter=quantize/b8
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include <benchmark/benchmark.h>
#include <unistd.h>

#include "wq/backend.h"
#include "wq/codec/half.h"
#include "wq/quant_spec.h"
#include "wq/tensor.h"

namespace {

constexpr std::uint64_t kRows = 4096;
constexpr std::uint64_t kCols = 4096;
constexpr std::uint64_t kElements = kRows * kCols;
constexpr std::uint64_t kBytes = kElements * sizeof(float);  // 64 MiB
// The in-cache cases: the first 64 rows of 1024 (a 256 KiB tensor; Zen 3's L2 is 512 KiB).
constexpr std::uint64_t kCachedRows = 64;
constexpr std::uint64_t kCachedCols = 1024;
constexpr std::uint64_t kCachedBytes = kCachedRows * kCachedCols * sizeof(float);

double env_or(const char* name, double fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::atof(v) : fallback;
}
const double kMinTime = env_or("WQ_BENCH_MIN_TIME", 0.5);                   // seconds per repetition
const int kRepetitions = static_cast<int>(env_or("WQ_BENCH_REPETITIONS", 3));  // the table shows the median

unsigned all_cores() { return std::max(1u, std::thread::hardware_concurrency()); }

// ---- Shared buffers, created once before any benchmark runs ---------------------------------

struct Buffers {
  std::vector<float> input;      // random normal, fixed seed
  std::vector<float> copy_dst;   // memcpy destination
  std::vector<float> decoded;    // dequantize destination
};

Buffers& buffers() {
  static Buffers b;
  return b;
}

void make_buffers() {
  Buffers& b = buffers();
  b.input.resize(kElements);
  if (const char* path = std::getenv("WQ_BENCH_INPUT"); path != nullptr && *path != '\0') {
    std::FILE* f = std::fopen(path, "rb");
    if (f == nullptr || std::fread(b.input.data(), sizeof(float), kElements, f) != kElements) {
      std::fprintf(stderr, "bench_cpu: cannot read %llu float32 values from %s\n",
                   static_cast<unsigned long long>(kElements), path);
      std::exit(2);
    }
    std::fclose(f);
  } else {
    std::mt19937_64 rng(20240611);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (float& x : b.input) x = normal(rng);
  }
  // Touch every destination page now so no timed iteration pays for page faults.
  b.copy_dst.assign(kElements, 1.0f);
  b.decoded.assign(kElements, 1.0f);
}

const wq::Shape& shape(bool cached = false) {
  static const wq::Shape s{kRows, kCols}, small{kCachedRows, kCachedCols};
  return cached ? small : s;
}

wq::TensorView input_view(bool cached = false) {
  return wq::TensorView{"bench", wq::DType::kF32, shape(cached),
                        reinterpret_cast<const std::byte*>(buffers().input.data())};
}

// One backend per thread count, created before the run, never inside a timed loop.
std::map<unsigned, std::unique_ptr<wq::Backend>>& backends() {
  static std::map<unsigned, std::unique_ptr<wq::Backend>> m;
  return m;
}

wq::Backend& backend(unsigned threads) {
  auto& m = backends();
  auto it = m.find(threads);
  if (it == m.end()) {
    it = m.emplace(threads, wq::make_backend({wq::BackendKind::kCpu, threads, 0}).backend).first;
  }
  return *it->second;
}

enum class Gran { kTensor, kChannel, kGroup32, kGroup64, kGroup128 };

const char* gran_name(Gran g) {
  switch (g) {
    case Gran::kTensor: return "tensor";
    case Gran::kChannel: return "channel";
    case Gran::kGroup32: return "group32";
    case Gran::kGroup64: return "group64";
    case Gran::kGroup128: return "group128";
  }
  return "?";
}

std::uint64_t group_size_of(Gran g) {
  return g == Gran::kGroup32 ? 32 : g == Gran::kGroup128 ? 128 : 64;
}

wq::QuantSpec spec_of(int bits, Gran g, wq::Method method = wq::Method::kMinMax) {
  wq::QuantSpec spec;
  spec.method = method;
  spec.bits = bits;
  spec.granularity = g == Gran::kTensor    ? wq::Granularity::kTensor
                     : g == Gran::kChannel ? wq::Granularity::kChannel
                                           : wq::Granularity::kGroup;
  spec.group_size = group_size_of(g);
  spec.scale_dtype = wq::ScaleDType::kF32;
  return spec;
}

// A quantized copy of the input (the dequantize benchmarks' source).
struct Quantized {
  wq::GroupGeometry geometry;
  std::vector<std::uint8_t> codes;
  std::vector<std::byte> scales, mins;
  double sqnr_db = 0.0;
};

struct OutputBuffers {
  wq::GroupGeometry geometry;
  std::vector<std::uint8_t> codes;
  std::vector<std::byte> scales, mins;

  explicit OutputBuffers(const wq::QuantSpec& spec, bool cached = false)
      : geometry(wq::group_geometry(shape(cached), spec)),
        codes(geometry.code_bytes),           // value-initialised: pages already touched
        scales(geometry.groups * 4),
        mins(geometry.groups * 4) {}

  wq::AffineBuffers view() { return {codes.data(), scales.data(), mins.data()}; }
};

const Quantized& quantized(int bits, Gran g) {
  static std::map<std::pair<int, Gran>, Quantized> cache;
  auto it = cache.find({bits, g});
  if (it != cache.end()) return it->second;
  const wq::QuantSpec spec = spec_of(bits, g);
  OutputBuffers out(spec);
  const wq::ErrorStats stats = backend(all_cores()).quantize(input_view(), spec, out.view());
  Quantized q{out.geometry, std::move(out.codes), std::move(out.scales), std::move(out.mins),
              stats.sqnr_db()};
  return cache.emplace(std::make_pair(bits, g), std::move(q)).first->second;
}

// ---- Benchmarks ---------------------------------------------------------------------------------

void bm_quantize(benchmark::State& state, int bits, Gran g, unsigned threads, bool cached,
                 wq::Method method) {
  wq::Backend& be = backend(threads);
  const wq::QuantSpec spec = spec_of(bits, g, method);
  OutputBuffers out(spec, cached);
  const wq::TensorView view = input_view(cached);
  const wq::AffineBuffers bufs = out.view();
  wq::ErrorStats stats;
  for (auto _ : state) {
    stats = be.quantize(view, spec, bufs);
    benchmark::DoNotOptimize(out.codes.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * (cached ? kCachedBytes : kBytes)));
  state.counters["sqnr_dB"] = stats.sqnr_db();
}

void bm_quantize_ggml(benchmark::State& state, wq::codec::ggml::Type type, unsigned threads) {
  wq::Backend& be = backend(threads);
  const wq::codec::ggml::TypeLayout layout = wq::codec::ggml::layout_of(type);
  std::vector<std::uint8_t> out(kElements / layout.block_elements * layout.block_bytes, 1);
  const wq::TensorView view = input_view();
  wq::ErrorStats stats;
  for (auto _ : state) {
    stats = be.quantize_ggml(view, type, out.data());
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * kBytes));
  state.counters["sqnr_dB"] = stats.sqnr_db();
}

// compressed-tensors' pack-quantized weights from the same values stored as bf16 (the dtype of
// the models this format is made from); GB/s of bf16 input.
void bm_quantize_packed(benchmark::State& state, int bits, bool symmetric, std::uint64_t group, unsigned threads) {
  wq::Backend& be = backend(threads);
  static const std::vector<std::uint16_t> bf16 = [] {
    std::vector<std::uint16_t> v(kElements);
    for (std::uint64_t i = 0; i < kElements; ++i) v[i] = wq::codec::f32_to_bf16_bits(buffers().input[i]);
    return v;
  }();
  const wq::TensorView view{"bench", wq::DType::kBF16, {kRows, kCols}, reinterpret_cast<const std::byte*>(bf16.data())};
  const std::uint64_t groups = kRows * (group == 0 ? 1 : kCols / group);
  std::vector<std::byte> packed(4 * kRows * ((kCols * static_cast<std::uint64_t>(bits) + 31) / 32));
  std::vector<std::byte> scales(2 * groups), zeros(4 * groups * static_cast<std::uint64_t>(bits));
  wq::ErrorStats stats;
  for (auto _ : state) {
    stats = be.quantize_packed(wq::PackQuantizeJob{view, bits, symmetric, group, packed.data(), scales.data(),
                                                   zeros.data(), false, {}});
    benchmark::DoNotOptimize(packed.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * kElements * 2));
  state.counters["sqnr_dB"] = stats.sqnr_db();
}

void bm_dequantize(benchmark::State& state, int bits, Gran g, unsigned threads) {
  wq::Backend& be = backend(threads);
  const Quantized& q = quantized(bits, g);
  const wq::AffineTensor in{q.codes.data(), q.scales.data(), q.mins.data(), bits,
                            q.geometry.stored_group_size, wq::ScaleDType::kF32};
  std::vector<float>& dst = buffers().decoded;
  const wq::MutableTensorView out{"bench", wq::DType::kF32, shape(),
                                  reinterpret_cast<std::byte*>(dst.data())};
  for (auto _ : state) {
    be.dequantize(in, out);
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * kBytes));
  // Sanity (untimed): the decode must sit within the quantizer's reach of the input.
  const std::vector<float>& x = buffers().input;
  double max_err = 0.0;
  for (std::uint64_t i = 0; i < kElements; i += 97) {
    max_err = std::max(max_err, std::fabs(static_cast<double>(x[i]) - dst[i]));
  }
  state.counters["max_err"] = max_err;
  state.counters["sqnr_dB"] = q.sqnr_db;
}

// Baselines: with ->Threads(T) every benchmark thread handles its 1/T slice of the 64 MiB, and
// the framework sums the bytes and averages the wall time over the threads.
std::pair<std::uint64_t, std::uint64_t> slice(const benchmark::State& state) {
  const std::uint64_t t = static_cast<std::uint64_t>(state.threads());
  const std::uint64_t i = static_cast<std::uint64_t>(state.thread_index());
  const std::uint64_t per = (kElements / t) / 16 * 16;
  const std::uint64_t begin = i * per;
  const std::uint64_t end = i + 1 == t ? kElements : begin + per;
  return {begin, end};
}

void bm_memcpy(benchmark::State& state) {
  const auto [begin, end] = slice(state);
  const float* src = buffers().input.data() + begin;
  float* dst = buffers().copy_dst.data() + begin;
  const std::size_t bytes = (end - begin) * sizeof(float);
  for (auto _ : state) {
    std::memcpy(dst, src, bytes);
    benchmark::DoNotOptimize(dst);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * bytes));
}

// Eight independent xor lanes over 64-bit words: gcc -O3 turns this into packed loads and xors.
__attribute__((noinline)) std::uint64_t xor_reduce(const std::uint64_t* p, std::uint64_t n) {
  std::uint64_t acc[8] = {};
  std::uint64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int l = 0; l < 8; ++l) acc[l] ^= p[i + l];
  }
  for (; i < n; ++i) acc[0] ^= p[i];
  std::uint64_t r = 0;
  for (int l = 0; l < 8; ++l) r ^= acc[l];
  return r;
}

// ---- One core's memory bandwidth, and Q8_0 at that pace -----------------------------------------
// The 64 MiB cases above run again and again over the same buffers, and a last-level cache of
// 32 MiB (Zen 5) keeps part of them: a one-thread read of 64 MiB measured 51 GB/s there, of
// 1 GiB 27 GB/s. Issue 15 holds Q8_0 to 0.7x of one core's *memory* read bandwidth, so these
// two cases stream a 1 GiB input (the 64 MiB tensor tiled 16 times, allocated when one of them
// first runs), far larger than any cache. baseline/read_stream is their limit in the table.
constexpr std::uint64_t kStreamTiles = 16;
constexpr std::uint64_t kStreamBytes = kBytes * kStreamTiles;  // 1 GiB

const std::vector<float>& stream_input() {
  static const std::vector<float> s = [] {
    std::vector<float> v(kElements * kStreamTiles);
    for (std::uint64_t t = 0; t < kStreamTiles; ++t) {
      std::memcpy(v.data() + t * kElements, buffers().input.data(), kBytes);
    }
    return v;
  }();
  return s;
}

void bm_read_stream(benchmark::State& state) {
  const auto* p = reinterpret_cast<const std::uint64_t*>(stream_input().data());
  for (auto _ : state) {
    std::uint64_t r = xor_reduce(p, kStreamBytes / 8);
    benchmark::DoNotOptimize(r);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * kStreamBytes));
}

void bm_quantize_ggml_stream(benchmark::State& state, wq::codec::ggml::Type type) {
  wq::Backend& be = backend(1);
  const wq::codec::ggml::TypeLayout layout = wq::codec::ggml::layout_of(type);
  const std::vector<float>& x = stream_input();
  std::vector<std::uint8_t> out(x.size() / layout.block_elements * layout.block_bytes, 1);  // touched
  const wq::TensorView view{"w", wq::DType::kF32, wq::Shape{kRows * kStreamTiles, kCols},
                            reinterpret_cast<const std::byte*>(x.data())};
  for (auto _ : state) {
    be.quantize_ggml(view, type, out.data());
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * kStreamBytes));
}

// The first 256 KiB of the input again and again (one thread): the in-cache read rate.
void bm_read_l2(benchmark::State& state) {
  const auto* p = reinterpret_cast<const std::uint64_t*>(buffers().input.data());
  for (auto _ : state) {
    std::uint64_t r = xor_reduce(p, kCachedBytes / 8);
    benchmark::DoNotOptimize(r);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * kCachedBytes));
}

void bm_read(benchmark::State& state) {
  const auto [begin, end] = slice(state);
  const auto* p = reinterpret_cast<const std::uint64_t*>(buffers().input.data() + begin);
  const std::uint64_t words = (end - begin) / 2;
  for (auto _ : state) {
    std::uint64_t r = xor_reduce(p, words);
    benchmark::DoNotOptimize(r);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * words * 8));
}

// ---- Registration and the summary table ---------------------------------------------------------

struct Case {
  std::string name;     // as registered (function_name of the runs)
  unsigned threads = 1; // worker threads actually used
  bool baseline = false;
};

std::vector<Case>& cases() {
  static std::vector<Case> c;
  return c;
}

void register_all() {
  const unsigned n = all_cores();
  std::vector<unsigned> thread_counts{1};
  if (n > 1) thread_counts.push_back(n);

  for (const char* name : {"baseline/memcpy", "baseline/read"}) {
    auto* b = benchmark::RegisterBenchmark(name, std::string(name) == "baseline/memcpy" ? bm_memcpy : bm_read);
    for (unsigned t : thread_counts) b->Threads(static_cast<int>(t));
    b->UseRealTime()->MinTime(kMinTime)->Repetitions(kRepetitions)->ReportAggregatesOnly(true)
        ->Unit(benchmark::kMillisecond);
    for (unsigned t : thread_counts) cases().push_back({name, t, true});
  }
  {
    auto* b = benchmark::RegisterBenchmark("baseline/read_stream", bm_read_stream);
    b->UseRealTime()->MinTime(kMinTime)->Repetitions(kRepetitions)->ReportAggregatesOnly(true)
        ->Unit(benchmark::kMillisecond);
    cases().push_back({"baseline/read_stream", 1, true});
    auto* q = benchmark::RegisterBenchmark("quantize_ggml_stream/Q8_0/t1", bm_quantize_ggml_stream,
                                           wq::codec::ggml::Type::kQ8_0);
    q->UseRealTime()->MinTime(kMinTime)->Repetitions(kRepetitions)->ReportAggregatesOnly(true)
        ->Unit(benchmark::kMillisecond);
    cases().push_back({"quantize_ggml_stream/Q8_0/t1", 1, false});
  }
  {
    auto* b = benchmark::RegisterBenchmark("baseline/read_l2", bm_read_l2);
    b->UseRealTime()->MinTime(kMinTime)->Repetitions(kRepetitions)->ReportAggregatesOnly(true)
        ->Unit(benchmark::kMicrosecond);
    cases().push_back({"baseline/read_l2", 1, true});
  }
  for (int bits : {8, 4}) {
    for (Gran g : {Gran::kTensor, Gran::kChannel, Gran::kGroup32, Gran::kGroup64, Gran::kGroup128}) {
      const std::string name = "quantize_l2/b" + std::to_string(bits) + "/" + gran_name(g) + "/t1";
      benchmark::RegisterBenchmark(name.c_str(), bm_quantize, bits, g, 1u, true, wq::Method::kMinMax)
          ->UseRealTime()->MinTime(kMinTime)->Repetitions(kRepetitions)->ReportAggregatesOnly(true)
          ->Unit(benchmark::kMicrosecond);
      cases().push_back({name, 1, false});
    }
  }
  // The other range rules beside min-max (same tensor, same run): quantize_symmetric/...,
  // quantize_mse/...
  for (const wq::Method method : {wq::Method::kSymmetric, wq::Method::kMse}) {
    for (int bits : {4, 2}) {
      for (Gran g : {Gran::kChannel, Gran::kGroup32, Gran::kGroup64, Gran::kGroup128}) {
        for (unsigned t : thread_counts) {
          const std::string name = "quantize_" + std::string(wq::method_name(method)) + "/b" + std::to_string(bits) +
                                   "/" + gran_name(g) + "/t" + std::to_string(t);
          benchmark::RegisterBenchmark(name.c_str(), bm_quantize, bits, g, t, false, method)
              ->UseRealTime()->MinTime(kMinTime)->Repetitions(kRepetitions)
              ->ReportAggregatesOnly(true)->Unit(benchmark::kMillisecond);
          cases().push_back({name, t, false});
        }
      }
    }
  }
  for (const wq::codec::ggml::Type type : wq::codec::ggml::kQuantizedTypes) {
    for (unsigned t : thread_counts) {
      const std::string name = std::string("quantize_ggml/") + wq::codec::ggml::type_name(type) + "/t" + std::to_string(t);
      benchmark::RegisterBenchmark(name.c_str(), bm_quantize_ggml, type, t)
          ->UseRealTime()->MinTime(kMinTime)->Repetitions(kRepetitions)->ReportAggregatesOnly(true)
          ->Unit(benchmark::kMillisecond);
      cases().push_back({name, t, false});
    }
  }
  struct PackedCase {
    const char* name;
    int bits;
    bool symmetric;
    std::uint64_t group;
  };
  for (const PackedCase c : {PackedCase{"W4A16/g128", 4, true, 128}, PackedCase{"W4A16_ASYM/g128", 4, false, 128},
                             PackedCase{"W8A16/channel", 8, true, 0}}) {
    for (unsigned t : thread_counts) {
      const std::string name = std::string("quantize_packed/bf16/") + c.name + "/t" + std::to_string(t);
      benchmark::RegisterBenchmark(name.c_str(), bm_quantize_packed, c.bits, c.symmetric, c.group, t)
          ->UseRealTime()->MinTime(kMinTime)->Repetitions(kRepetitions)->ReportAggregatesOnly(true)
          ->Unit(benchmark::kMillisecond);
      cases().push_back({name, t, false});
    }
  }
  for (const char* op : {"quantize", "dequantize"}) {
    for (int bits : {8, 4, 3, 2}) {
      for (Gran g : {Gran::kTensor, Gran::kChannel, Gran::kGroup32, Gran::kGroup64, Gran::kGroup128}) {
        for (unsigned t : thread_counts) {
          const std::string name = std::string(op) + "/b" + std::to_string(bits) + "/" +
                                   gran_name(g) + "/t" + std::to_string(t);
          benchmark::internal::Benchmark* b =
              std::string(op) == "quantize"
                  ? benchmark::RegisterBenchmark(name.c_str(), bm_quantize, bits, g, t, false, wq::Method::kMinMax)
                  : benchmark::RegisterBenchmark(name.c_str(), bm_dequantize, bits, g, t);
          b->UseRealTime()->MinTime(kMinTime)->Repetitions(kRepetitions)
              ->ReportAggregatesOnly(true)->Unit(benchmark::kMillisecond);
          cases().push_back({name, t, false});
        }
      }
    }
  }
}

// Console output as usual, plus the median bytes/s of every case kept for the table.
class CollectingReporter : public benchmark::ConsoleReporter {
 public:
  // Colour only on a terminal (a custom display reporter does not see --benchmark_color).
  CollectingReporter()
      : ConsoleReporter(isatty(fileno(stdout)) ? OO_ColorTabular : OO_Tabular) {}

  struct Key {
    std::string name;
    int threads;
    bool operator<(const Key& o) const { return std::tie(name, threads) < std::tie(o.name, o.threads); }
  };
  std::map<Key, double> median_bps;  // bytes per second

  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& r : runs) {
      if (r.error_occurred) continue;
      const bool median = r.run_type == Run::RT_Aggregate && r.aggregate_name == "median";
      const bool single = r.run_type == Run::RT_Iteration && r.repetitions <= 1;
      if (!median && !single) continue;
      auto it = r.counters.find("bytes_per_second");
      if (it == r.counters.end()) continue;
      median_bps[{r.run_name.function_name, static_cast<int>(r.threads)}] = it->second.value;
    }
  }
};

void print_table(const CollectingReporter& rep) {
  auto find = [&](const std::string& name, int threads) -> double {
    auto it = rep.median_bps.find({name, threads});
    return it == rep.median_bps.end() ? 0.0 : it->second;
  };
  std::printf("\nSummary (median of %d, GB/s = 1e9 bytes of float32 per second; ratios are to the\n"
              "baselines at the same thread count, measured in this run)\n\n",
              kRepetitions);
  std::printf("| case | threads | GB/s | GB/s per thread | x memcpy | x read |\n");
  std::printf("|---|---:|---:|---:|---:|---:|\n");
  for (const Case& c : cases()) {
    // Baselines run as benchmark threads; the wq cases on one benchmark thread + the pool.
    const double bps = find(c.name, c.baseline ? static_cast<int>(c.threads) : 1);
    if (bps == 0.0) continue;  // filtered out
    const double mem = find("baseline/memcpy", static_cast<int>(c.threads));  // (64 MiB)
    const bool in_cache = c.name.find("_l2") != std::string::npos;
    const bool stream = c.name.find("_stream") != std::string::npos;
    const double rd = find(in_cache ? "baseline/read_l2" : stream ? "baseline/read_stream" : "baseline/read",
                           static_cast<int>(c.threads));
    const double gbs = bps / 1e9;
    char ratio_m[32] = "-", ratio_r[32] = "-";
    if (mem > 0) std::snprintf(ratio_m, sizeof ratio_m, "%.2f", bps / mem);
    if (rd > 0) std::snprintf(ratio_r, sizeof ratio_r, "%.2f", bps / rd);
    std::printf("| %s | %u | %.2f | %.2f | %s | %s |\n", c.name.c_str(), c.threads, gbs,
                gbs / c.threads, ratio_m, ratio_r);
  }
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  make_buffers();
  backend(1);
  backend(all_cores());
  register_all();
  CollectingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  print_table(reporter);
  benchmark::Shutdown();
  return 0;
}
