// Helpers shared by the test suites: hex, random tensors, the codec vectors file.
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace wq::test {

inline std::vector<std::uint8_t> from_hex(const std::string& hex) {
  std::vector<std::uint8_t> out(hex.size() / 2);
  for (std::size_t i = 0; i < out.size(); ++i) {
    out[i] = static_cast<std::uint8_t>(std::stoul(hex.substr(2 * i, 2), nullptr, 16));
  }
  return out;
}

inline std::string to_hex(const void* data, std::size_t size) {
  static const char* digits = "0123456789abcdef";
  const auto* p = static_cast<const std::uint8_t*>(data);
  std::string s;
  for (std::size_t i = 0; i < size; ++i) {
    s += digits[p[i] >> 4];
    s += digits[p[i] & 15];
  }
  return s;
}

template <typename T>
std::vector<T> from_hex_as(const std::string& hex) {
  const std::vector<std::uint8_t> bytes = from_hex(hex);
  std::vector<T> out(bytes.size() / sizeof(T));
  std::memcpy(out.data(), bytes.data(), out.size() * sizeof(T));
  return out;
}

inline nlohmann::json codec_vectors() {
  std::ifstream in(std::string(WQ_TEST_DATA_DIR) + "/codec_vectors.json");
  return nlohmann::json::parse(in);
}

/// Normal values with a fixed seed: never zeros, which would hide unwritten outputs.
inline std::vector<float> random_normal(std::size_t n, std::uint32_t seed, float stddev = 1.0f,
                                        float mean = 0.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(mean, stddev);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

}  // namespace wq::test
