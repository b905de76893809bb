// Helpers the plain-program benchmarks share: timing and generated safetensors checkpoints.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace wq::bench {

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

template <typename Fn>
double median_seconds(int runs, Fn&& run) {
  std::vector<double> times;
  for (int i = 0; i < runs; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    run();
    times.push_back(seconds_since(t0));
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

/// Fills `values` from a fixed-seed xorshift (quantization speed does not depend on the
/// distribution), continuing from `*state`.
inline void fill_values(std::vector<float>& values, std::uint32_t* state) {
  for (float& v : values) {
    *state ^= *state << 13;
    *state ^= *state >> 17;
    *state ^= *state << 5;
    v = static_cast<float>(static_cast<std::int32_t>(*state)) * (0.05f / 2147483648.0f);
  }
}

/// Writes a safetensors file of `tensors` float32 tensors [rows, cols] named layerN.weight;
/// exits with a message if the file cannot be written.
inline void write_checkpoint(const std::string& path, int tensors, std::uint64_t rows, std::uint64_t cols) {
  std::string header = "{";
  const std::uint64_t bytes = rows * cols * 4;
  for (int t = 0; t < tensors; ++t) {
    if (t) header += ",";
    header += "\"layer" + std::to_string(t) + ".weight\":{\"dtype\":\"F32\",\"shape\":[" + std::to_string(rows) + "," +
              std::to_string(cols) + "],\"data_offsets\":[" + std::to_string(t * bytes) + "," +
              std::to_string((t + 1) * bytes) + "]}";
  }
  header += "}";
  while ((header.size() + 8) % 8 != 0) header += ' ';
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) {
    std::perror(path.c_str());
    std::exit(1);
  }
  const std::uint64_t n = header.size();
  bool ok = std::fwrite(&n, 8, 1, f) == 1 && std::fwrite(header.data(), 1, header.size(), f) == header.size();
  std::vector<float> block(rows * cols);
  std::uint32_t state = 12345;
  for (int t = 0; t < tensors && ok; ++t) {
    fill_values(block, &state);
    ok = std::fwrite(block.data(), 4, block.size(), f) == block.size();
  }
  if (std::fclose(f) != 0 || !ok) {
    std::fprintf(stderr, "%s: write failed (disk full?)\n", path.c_str());
    std::exit(1);
  }
}

}  // namespace wq::bench
