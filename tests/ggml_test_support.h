// The definition of the ggml block types for tests: the shared codec (include/wq/codec/ggml_*.h)
// block by block, in the plainest loop, which backends and kernels must equal byte for byte.
#pragma once

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "wq/codec/ggml_blocks.h"
#include "wq/codec/ggml_kquants.h"
#include "wq/codec/ggml_legacy.h"
#include "wq/codec/ggml_legacy_search.h"

namespace wq::test {

/// Quantizes `x` (a whole number of blocks of `type`) into `blocks` and decodes them into
/// `decoded`: with ggml's reference quantizer, or with wq's search (codec/ggml_legacy_search.h,
/// legacy types only) where `search`. Each block starts poisoned, so a byte the codec leaves
/// unwritten shows.
inline void ggml_reference(codec::ggml::Type type, const std::vector<float>& x, std::vector<std::uint8_t>* blocks,
                           std::vector<float>* decoded, bool search = false) {
  const bool known = codec::ggml::visit_block_type(type, [&](auto tag) {
    using Block = decltype(tag);
    if constexpr (!codec::ggml::kHasSearch<Block>) {
      if (search) throw std::invalid_argument("ggml_reference: a type without a search");
    }
    const std::size_t n = x.size() / Block::kElements;
    blocks->assign(n * sizeof(Block), 0);
    decoded->assign(x.size(), 0.0f);
    for (std::size_t b = 0; b < n; ++b) {
      Block block;
      std::memset(&block, 0xa5, sizeof block);
      const float* xb = x.data() + b * Block::kElements;
      if constexpr (codec::ggml::kHasSearch<Block>) {
        search ? codec::ggml::search_block(xb, &block) : codec::ggml::quantize_block(xb, &block);
      } else {
        codec::ggml::quantize_block(xb, &block);
      }
      std::memcpy(blocks->data() + b * sizeof(Block), &block, sizeof block);
      codec::ggml::decode_block(block, decoded->data() + b * Block::kElements);
    }
  });
  if (!known) throw std::invalid_argument("ggml_reference: not a block type");
}

}  // namespace wq::test
