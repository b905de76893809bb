#include "container/checksum.h"

#include <cstdio>
#include <cstdlib>

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace wq::detail {

void xxh3_update_avx2(XXH3_state_t* state, const void* data, std::size_t size);  // checksum_avx2.cpp

namespace {

// AVX2 present and WQ_CPU_BASELINE unset (as cpu/cpu_features.h decides for the kernels).
bool hash_with_avx2() {
  static const bool yes = std::getenv("WQ_CPU_BASELINE") == nullptr && __builtin_cpu_supports("avx2");
  return yes;
}

}  // namespace

struct Xxh3::State {
  XXH3_state_t state;
};

Xxh3::Xxh3() : state_(std::make_unique<State>()) { XXH3_64bits_reset(&state_->state); }
Xxh3::~Xxh3() = default;

void Xxh3::update(const void* data, std::size_t size) {
  if (size == 0) return;
  if (hash_with_avx2()) {
    xxh3_update_avx2(&state_->state, data, size);
  } else {
    XXH3_64bits_update(&state_->state, data, size);
  }
}

std::uint64_t Xxh3::digest() const { return XXH3_64bits_digest(&state_->state); }

std::string Xxh3::hex() const {
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(digest()));
  return text;
}

bool is_checksum_text(const std::string& text) {
  if (text.size() != 16) return false;
  for (char c : text) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace wq::detail
