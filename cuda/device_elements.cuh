// Device-side helpers shared by the kernels: typed element access, the group of an element,
// finding a block's piece, and block-wide reduction of error statistics. Conversions come from
// the codec (wq/codec/half.h), so they are the CPU's bit for bit.
#pragma once

#include <cub/block/block_reduce.cuh>

#include <cstdint>

#include "work_items.h"
#include "wq/codec/half.h"

namespace wq::cuda {

/// Loads element i of a buffer of `type` as binary32 (F64 rounds to nearest, as on the host).
__device__ inline float load_element(ElementType type, const std::uint8_t* base, std::uint64_t i) {
  switch (type) {
    case ElementType::kF32: return reinterpret_cast<const float*>(base)[i];
    case ElementType::kF64: return __double2float_rn(reinterpret_cast<const double*>(base)[i]);
    case ElementType::kF16: return codec::f16_bits_to_f32(reinterpret_cast<const std::uint16_t*>(base)[i]);
    case ElementType::kBF16: return codec::bf16_bits_to_f32(reinterpret_cast<const std::uint16_t*>(base)[i]);
  }
  return 0.0f;
}

/// Loads the 8 elements [8*octet, 8*octet + count) of a buffer whose start is 16-byte aligned,
/// with 16-byte loads when the octet is whole.
__device__ inline void load_octet(ElementType type, const std::uint8_t* base, std::uint64_t octet,
                                  int count, float (&x)[8]) {
  if (count == 8) {
    switch (type) {
      case ElementType::kF32: {
        const float4* p = reinterpret_cast<const float4*>(base) + 2 * octet;
        const float4 a = p[0], b = p[1];
        x[0] = a.x; x[1] = a.y; x[2] = a.z; x[3] = a.w;
        x[4] = b.x; x[5] = b.y; x[6] = b.z; x[7] = b.w;
        return;
      }
      case ElementType::kF16:
      case ElementType::kBF16: {
        const uint4 v = reinterpret_cast<const uint4*>(base)[octet];
        const std::uint32_t w[4] = {v.x, v.y, v.z, v.w};
        for (int k = 0; k < 8; ++k) {
          const auto h = static_cast<std::uint16_t>(w[k / 2] >> (16 * (k % 2)));
          x[k] = type == ElementType::kF16 ? codec::f16_bits_to_f32(h) : codec::bf16_bits_to_f32(h);
        }
        return;
      }
      case ElementType::kF64: {
        const double2* p = reinterpret_cast<const double2*>(base) + 4 * octet;
        for (int k = 0; k < 4; ++k) {
          const double2 d = p[k];
          x[2 * k] = __double2float_rn(d.x);
          x[2 * k + 1] = __double2float_rn(d.y);
        }
        return;
      }
    }
  }
  for (int k = 0; k < 8; ++k) x[k] = k < count ? load_element(type, base, 8 * octet + k) : 0.0f;
}

/// Stores a binary32 value as element i of a buffer of `type`, rounding like the host.
__device__ inline void store_element(ElementType type, std::uint8_t* base, std::uint64_t i, float v) {
  switch (type) {
    case ElementType::kF32: reinterpret_cast<float*>(base)[i] = v; return;
    case ElementType::kF64: reinterpret_cast<double*>(base)[i] = static_cast<double>(v); return;
    case ElementType::kF16: reinterpret_cast<std::uint16_t*>(base)[i] = codec::f32_to_f16_bits(v); return;
    case ElementType::kBF16: reinterpret_cast<std::uint16_t*>(base)[i] = codec::f32_to_bf16_bits(v); return;
  }
}

/// Bytes per element of `type`.
__host__ __device__ inline unsigned element_size(ElementType type) {
  return type == ElementType::kF64 ? 8u : type == ElementType::kF32 ? 4u : 2u;
}

/// The tensor-wide group of element e.
__device__ inline std::uint64_t group_of(const GroupLayout& g, std::uint64_t e) {
  const std::uint64_t row = e / g.cols;
  return row * g.groups_per_row + (e - row * g.cols) / g.group_size;
}

/// First element of group k and its length.
__device__ inline void group_extent(const GroupLayout& g, std::uint64_t k, std::uint64_t* begin,
                                    std::uint64_t* length) {
  const std::uint64_t row = k / g.groups_per_row;
  const std::uint64_t j = k - row * g.groups_per_row;
  *begin = row * g.cols + j * g.group_size;
  const std::uint64_t rest = g.cols - j * g.group_size;
  *length = rest < g.group_size ? rest : g.group_size;
}

/// Index of the last piece whose `key` is <= value (pieces sorted by key; the first has 0).
template <typename Piece, typename Key>
__device__ inline unsigned find_piece(const Piece* pieces, unsigned count, std::uint64_t value, Key key) {
  unsigned lo = 0, hi = count;  // invariant: key(pieces[lo]) <= value < key(pieces[hi])
  while (hi - lo > 1) {
    const unsigned mid = (lo + hi) / 2;
    if (key(pieces[mid]) <= value) lo = mid; else hi = mid;
  }
  return lo;
}

/// The piece that owns this block (pieces sorted by block_begin), found once per block.
template <typename Piece>
__device__ inline const Piece& block_piece(const Piece* pieces, unsigned count) {
  __shared__ unsigned index;
  if (threadIdx.x == 0) {
    index = find_piece(pieces, count, blockIdx.x,
                       [](const Piece& p) { return p.block_begin; });
  }
  __syncthreads();
  return pieces[index];
}

/// Per-thread error sums in binary64 (no overflow for any binary32 input), reduced per block.
struct ThreadStats {
  double signal = 0.0, error = 0.0, max_abs = 0.0;

  __device__ void add(float x, float decoded) {
    const double e = static_cast<double>(x) - static_cast<double>(decoded);
    signal = __fma_rn(static_cast<double>(x), static_cast<double>(x), signal);
    error = __fma_rn(e, e, error);
    max_abs = fmax(max_abs, fabs(e));
  }
};

struct StatsSum {
  __device__ BlockStats operator()(const BlockStats& a, const BlockStats& b) const {
    return {a.signal + b.signal, a.error + b.error, a.max_abs > b.max_abs ? a.max_abs : b.max_abs};
  }
};

/// Reduces the block's statistics and writes them to stats[blockIdx.x].
__device__ inline void write_block_stats(const ThreadStats& mine, BlockStats* stats) {
  using Reduce = cub::BlockReduce<BlockStats, kBlockThreads>;
  __shared__ typename Reduce::TempStorage storage;
  const BlockStats local{mine.signal, mine.error, mine.max_abs};
  const BlockStats total = Reduce(storage).Reduce(local, StatsSum{});
  if (threadIdx.x == 0) stats[blockIdx.x] = total;
}

}  // namespace wq::cuda
