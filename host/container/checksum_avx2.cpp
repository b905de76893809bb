// XXH3's update compiled for AVX2 (this file alone is built with -mavx2; host/CMakeLists.txt),
// called by Xxh3::update when the CPU has it. XXH3's digest does not depend on the vector
// width, so both give the same checksums (tests/unit/checksum_test.cpp holds both to the reference:
// once as built, once with WQ_CPU_BASELINE=1); AVX2 hashes
// about twice as fast (28 against 14.5 GB/s here), which tree mode's input checksums and every
// container's part checksums spend.
#define XXH_INLINE_ALL
#include <xxhash.h>

#include <cstddef>

namespace wq::detail {

void xxh3_update_avx2(XXH3_state_t* state, const void* data, std::size_t size) {
  XXH3_64bits_update(state, data, size);
}

}  // namespace wq::detail
