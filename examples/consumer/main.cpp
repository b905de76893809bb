// Quantizes a small matrix to 4 bits per group of 32 with libwqcuda, decodes it back and
// prints the error: the library used from another project through its installed package.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include <wq/wq.h>

int main() {
  const wq::Shape shape{64, 96};
  std::vector<float> weights(64 * 96);
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  for (float& w : weights) w = normal(rng);

  wq::QuantSpec spec;
  spec.bits = 4;
  spec.granularity = wq::Granularity::kGroup;
  spec.group_size = 32;
  const wq::GroupGeometry g = wq::group_geometry(shape, spec);
  std::vector<std::uint8_t> codes(g.code_bytes);
  std::vector<std::byte> scales(g.groups * 4), mins(g.groups * 4);

  try {
    wq::BackendSelection selection = wq::make_backend({wq::BackendKind::kCpu, 0, 0});
    wq::Backend& backend = *selection.backend;
    const wq::ErrorStats stats = backend.quantize(
        wq::TensorView{"w", wq::DType::kF32, shape, reinterpret_cast<const std::byte*>(weights.data())},
        spec, wq::AffineBuffers{codes.data(), scales.data(), mins.data()});
    std::vector<float> decoded(weights.size());
    backend.dequantize(wq::AffineTensor{codes.data(), scales.data(), mins.data(), 4, g.stored_group_size,
                                        wq::ScaleDType::kF32},
                       wq::MutableTensorView{"w", wq::DType::kF32, shape, reinterpret_cast<std::byte*>(decoded.data())});
    std::printf("wq %s: %zu floats -> %zu code bytes + %llu groups; SQNR %.1f dB, max |err| %.2e\n",
                wq::kVersion, weights.size(), codes.size(), static_cast<unsigned long long>(g.groups),
                stats.sqnr_db(), stats.max_abs_error);
    return stats.sqnr_db() > 15.0 ? 0 : 1;
  } catch (const wq::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
