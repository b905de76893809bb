// A WQ container through wq::ContainerReader::open(): for every tensor verify(i), then
// decode(i) on the CPU backend into a buffer of the original dtype and shape, twice (the second
// time after release(i): a released tensor may still be read again), then release(i).
//
// decode() checks the tensor's XXH3-64 first, so a mutated codes/scale/min byte would never get
// past the checksum and the decoders would only see the seeds' data. When a verify() fails
// with a checksum mismatch, the input is therefore also tried "resealed": the recorded
// checksums in the header are replaced (in place: 16 hex digits for 16) by those of the parts
// as they are, and the file is read again, so that fuzzed parts reach the decoders too.
#include <xxhash.h>

#include <algorithm>
#include <cinttypes>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fuzz_support.h"
#include "wq/backend.h"
#include "wq/container.h"

namespace {

// The decode target is allocated by the caller (here), not by wq: a shape that claims more
// than this would only exercise this harness's allocation (and trip -malloc_limit_mb), so such
// a tensor is verified but not decoded.
constexpr std::uint64_t kMaxDecodeBytes = 64ull << 20;

wq::Backend& cpu_backend() {
  static const wq::BackendSelection selection = wq::make_backend({wq::BackendKind::kCpu, 1});
  return *selection.backend;
}

// Reads the container; returns its tensors when some checksum did not match (else empty).
std::vector<wq::ContainerTensor> exercise_container(const std::string& path) {
  using wq::fuzz::touch;
  (void)wq::is_wq_container(path);
  std::unique_ptr<wq::ContainerReader> reader;
  try {
    reader = wq::ContainerReader::open(path);
  } catch (const wq::Error&) {
    return {};
  }
  touch(reader->path());
  touch(reader->producer());
  touch(reader->source().file);
  touch(reader->source().format);
  wq::fuzz::g_sink = wq::fuzz::g_sink + reader->file_bytes() + reader->source().bytes;
  for (const auto& [structured, parameter] : reader->paddle_name_table()) {
    touch(structured);
    touch(parameter);
  }
  static std::vector<std::byte> out;
  bool mismatch = false;
  const std::vector<wq::ContainerTensor>& tensors = reader->tensors();
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const wq::ContainerTensor& t = tensors[i];
    touch(t.name);
    touch(t.xxh3);
    for (const std::string& part : t.parts) touch(part);
    try {
      reader->verify(i);
    } catch (const wq::Error& e) {
      mismatch = mismatch || e.code() == wq::ErrorCode::kIntegrity;
    }
    std::uint64_t bytes = 0;
    bool decodable = false;
    try {
      decodable = wq::fuzz::tensor_bytes(t.shape, t.dtype, &bytes) && bytes <= kMaxDecodeBytes;
    } catch (const wq::Error&) {  // an element count beyond 64 bits
    }
    if (decodable) {
      out.assign(std::max<std::uint64_t>(bytes, 1), std::byte{0x5a});  // never a null target
      const wq::MutableTensorView view{t.name, t.dtype, t.shape, out.data()};
      for (int round = 0; round < 2; ++round) {
        try {
          reader->decode(i, cpu_backend(), view);
          touch(out.data(), bytes);
        } catch (const wq::Error&) {
        }
        reader->release(i);
      }
    } else {
      reader->release(i);
    }
  }
  return mismatch ? tensors : std::vector<wq::ContainerTensor>{};
}

std::uint64_t le64(const std::uint8_t* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// Rewrites the recorded checksums of `tensors` in `file` (a container that opened) to those of
// its parts. False when nothing could be changed.
bool reseal(std::vector<std::uint8_t>& file, const std::vector<wq::ContainerTensor>& tensors) {
  if (file.size() < 8) return false;
  const std::uint64_t n = le64(file.data());
  if (n > file.size() - 8) return false;
  const auto header_begin = file.begin() + 8;
  const auto header_end = header_begin + static_cast<std::ptrdiff_t>(n);
  const nlohmann::json header = nlohmann::json::parse(header_begin, header_end, nullptr, false);
  if (header.is_discarded() || !header.is_object()) return false;
  const std::uint64_t data_begin = 8 + n;
  bool changed = false;
  for (const wq::ContainerTensor& t : tensors) {
    if (t.xxh3.size() != 16) continue;
    XXH3_state_t* state = XXH3_createState();
    if (state == nullptr) wq::fuzz::harness_failure("XXH3_createState failed");
    XXH3_64bits_reset(state);
    bool found = true;
    for (const std::string& part : t.parts) {
      const auto entry = header.find(part);
      if (entry == header.end() || !entry->is_object()) {
        found = false;
        break;
      }
      const auto offsets = entry->find("data_offsets");
      if (offsets == entry->end() || !offsets->is_array() || offsets->size() != 2 ||
          !(*offsets)[0].is_number_unsigned() || !(*offsets)[1].is_number_unsigned()) {
        found = false;
        break;
      }
      const auto b = (*offsets)[0].get<std::uint64_t>(), e = (*offsets)[1].get<std::uint64_t>();
      if (b > e || e > file.size() - data_begin) {
        found = false;
        break;
      }
      XXH3_64bits_update(state, file.data() + data_begin + b, e - b);
    }
    const std::uint64_t hash = XXH3_64bits_digest(state);
    XXH3_freeState(state);
    if (!found) continue;
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016" PRIx64, hash);
    if (t.xxh3 == hex) continue;
    for (auto at = header_begin; (at = std::search(at, header_end, t.xxh3.begin(), t.xxh3.end())) != header_end;
         at += 16) {
      std::memcpy(&*at, hex, 16);
      changed = true;
    }
  }
  return changed;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string path = wq::fuzz::Scratch::get().path("model.wq.safetensors");
  wq::fuzz::write_file(path, data, size);
  const std::vector<wq::ContainerTensor> mismatched = exercise_container(path);
  if (mismatched.empty()) return 0;
  std::vector<std::uint8_t> resealed(data, data + size);
  if (!reseal(resealed, mismatched)) return 0;
  wq::fuzz::write_file(path, resealed.data(), resealed.size());
  exercise_container(path);
  return 0;
}
