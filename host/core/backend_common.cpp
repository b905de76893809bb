#include <algorithm>
#include <cmath>
#include <limits>

#include "wq/backend.h"

namespace wq {

double ErrorStats::sqnr_db() const {
  if (error_energy == 0.0) return std::numeric_limits<double>::infinity();
  if (signal_energy == 0.0) return -std::numeric_limits<double>::infinity();
  return 10.0 * std::log10(signal_energy / error_energy);
}

void ErrorStats::merge(const ErrorStats& other) {
  count += other.count;
  signal_energy += other.signal_energy;
  error_energy += other.error_energy;
  max_abs_error = std::max(max_abs_error, other.max_abs_error);
}

}  // namespace wq

namespace wq {

ErrorStats Backend::quantize(const TensorView& input, const QuantSpec& spec,
                             const AffineBuffers& out) {
  QuantizeJob job{input, spec, out, {}};
  quantize(std::span<QuantizeJob>(&job, 1));
  return job.stats;
}

ErrorStats Backend::encode(const TensorView& input, const QuantSpec& spec, const std::byte* scales,
                           const std::byte* mins, std::uint8_t* codes) {
  EncodeJob job{input, spec, scales, mins, codes, {}};
  encode(std::span<EncodeJob>(&job, 1));
  return job.stats;
}

void Backend::dequantize(const AffineTensor& input, const MutableTensorView& out) {
  DequantizeJob job{input, out};
  dequantize(std::span<DequantizeJob>(&job, 1));
}

ErrorStats Backend::cast(const TensorView& input, const MutableTensorView& out,
                         bool check_overflow) {
  CastJob job{input, out, check_overflow, {}};
  cast(std::span<CastJob>(&job, 1));
  return job.stats;
}

ErrorStats Backend::quantize_ggml(const TensorView& input, codec::ggml::Type type, std::uint8_t* blocks) {
  GgmlQuantizeJob job{input, type, blocks, false, {}};
  quantize_ggml(std::span<GgmlQuantizeJob>(&job, 1));
  return job.stats;
}

void Backend::decode_ggml(const std::uint8_t* blocks, codec::ggml::Type type, const MutableTensorView& out) {
  GgmlDecodeJob job{blocks, type, out};
  decode_ggml(std::span<GgmlDecodeJob>(&job, 1));
}

ErrorStats Backend::quantize_packed(const PackQuantizeJob& job) {
  PackQuantizeJob one = job;
  quantize_packed(std::span<PackQuantizeJob>(&one, 1));
  return one.stats;
}

}  // namespace wq
