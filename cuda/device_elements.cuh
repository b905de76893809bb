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

/// The binary32 value that store_element() stores for v (what reading it back gives).
__device__ inline float stored_value(ElementType type, float v) {
  switch (type) {
    case ElementType::kF16: return codec::f16_bits_to_f32(codec::f32_to_f16_bits(v));
    case ElementType::kBF16: return codec::bf16_bits_to_f32(codec::f32_to_bf16_bits(v));
    default: return v;  // binary32 and binary64 hold every binary32 value
  }
}

/// Bytes per element of `type`.
__host__ __device__ inline unsigned element_size(ElementType type) {
  return type == ElementType::kF64 ? 8u : type == ElementType::kF32 ? 4u : 2u;
}

/// The tensor-wide group of element e. 32-bit division when the numbers allow it: 64-bit
/// division is a long software sequence on the GPU.
__device__ inline std::uint64_t group_of(const GroupLayout& g, std::uint64_t e) {
  if (((e | g.cols | g.group_size) >> 32) == 0) {
    const auto e32 = static_cast<std::uint32_t>(e), cols = static_cast<std::uint32_t>(g.cols);
    const std::uint32_t row = e32 / cols;
    return row * g.groups_per_row + (e32 - row * cols) / static_cast<std::uint32_t>(g.group_size);
  }
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

/// Error sums of one octet in binary32 (cheap), folded into a thread's binary64 sums; an octet
/// whose binary32 sums overflow (|x| beyond ~1e19) is summed again in binary64.
struct ThreadStats {
  double signal = 0.0, error = 0.0, max_abs = 0.0;

  /// Adds an octet's finite binary32 sums: x^2, e^2 and max |e|, where x - decoded = e * unit
  /// (unit = the scale for errors kept in code units, else 1).
  __device__ void add_sums(float x2, float e2, float max_e, float unit) {
    const double u = unit;
    signal += x2;
    error += static_cast<double>(e2) * (u * u);
    max_abs = fmax(max_abs, static_cast<double>(max_e) * u);
  }

  __device__ void add_octet(const float (&x)[8], const float (&decoded)[8], int count) {
    float s = 0.0f, e2 = 0.0f, m = 0.0f;
    for (int k = 0; k < 8; ++k) {
      if (k >= count) break;
      const float e = __fsub_rn(x[k], decoded[k]);
      s = __fmaf_rn(x[k], x[k], s);
      e2 = __fmaf_rn(e, e, e2);
      m = fmaxf(m, fabsf(e));
    }
    if (codec::is_finite(s) && codec::is_finite(e2)) {
      signal += s;
      error += e2;
      max_abs = fmax(max_abs, static_cast<double>(m));
      return;
    }
    for (int k = 0; k < count; ++k) {
      const double xd = x[k], e = xd - static_cast<double>(decoded[k]);
      signal = __fma_rn(xd, xd, signal);
      error = __fma_rn(e, e, error);
      max_abs = fmax(max_abs, fabs(e));
    }
  }
};

/// The octets a thread of an element-wise kernel owns: kOctetsPerThread of them, a block's
/// width apart, counted from the start of the block's piece.
__device__ inline std::uint64_t thread_octet(std::uint64_t piece_block_begin, unsigned r) {
  return (blockIdx.x - piece_block_begin) * (kBlockThreads * kOctetsPerThread) + r * kBlockThreads + threadIdx.x;
}

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
