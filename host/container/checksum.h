// XXH3-64 checksums of a tensor's parts, as the container stores them (16 lowercase hex).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace wq::detail {

/// Streaming XXH3-64 over the concatenation of every piece given to update().
class Xxh3 {
 public:
  Xxh3();
  ~Xxh3();
  Xxh3(const Xxh3&) = delete;
  Xxh3& operator=(const Xxh3&) = delete;

  void update(const void* data, std::size_t size);
  std::uint64_t digest() const;
  /// The digest as 16 lowercase hex digits.
  std::string hex() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

/// Placeholder written before checksums are known: same length as a real one.
inline const std::string kPendingChecksum(16, '0');

bool is_checksum_text(const std::string& text);

}  // namespace wq::detail
