// Quantize + pack of one octet (8 consecutive elements of one group) on the device, shared by
// every quantize kernel: the codes, exactly Bits bytes of them, and the octet's error sums.
//
// Why this shape: these kernels run out of instruction issue long before they run out of
// memory bandwidth, so the per-element work decides their speed. Three choices cut it:
//  - the code through the reciprocal of the scale, proved equal to the codec's division element
//    by element (wq/codec/reciprocal.h); the rare elements the proof does not cover, and groups
//    whose scale is 0 or outside the proof's range, take the codec's division itself;
//  - the integer code read from the bits of the rounding's magic sum, not through float <-> int
//    conversions (quarter rate on the GPU), and packed with constant shifts (Bits is a
//    template argument);
//  - the error kept in code units (t - code) and scaled once per octet.
#pragma once

#include <cstdint>
#include <type_traits>

#include "device_elements.cuh"
#include "wq/codec/affine.h"
#include "wq/codec/reciprocal.h"

namespace wq::cuda {

/// Calls f.template operator()<B>() with B = bits (1..8) as a compile-time constant.
template <typename F>
__device__ __forceinline__ void with_bits(int bits, F&& f) {
  switch (bits) {
    case 1: f.template operator()<1>(); return;
    case 2: f.template operator()<2>(); return;
    case 3: f.template operator()<3>(); return;
    case 4: f.template operator()<4>(); return;
    case 5: f.template operator()<5>(); return;
    case 6: f.template operator()<6>(); return;
    case 7: f.template operator()<7>(); return;
    default: f.template operator()<8>(); return;
  }
}

/// The 8 * Bits bits that 8 codes pack into (codec::pack8_word): 32 bits when they fit.
template <int Bits>
using PackedWord = std::conditional_t<(Bits <= 4), std::uint32_t, std::uint64_t>;

/// A group's parameters as the coder uses them.
struct GroupCoder {
  codec::AffineParams params;
  float reciprocal;  ///< RN(1 / scale); 0 when every element takes the codec's division
  float max_code;
};

__device__ inline GroupCoder group_coder(codec::AffineParams params, float max_code) {
  // A scale of 0 fails reciprocal_is_exact_enough() too: its codes are all 0 (codec::affine_code).
  const bool proved = codec::reciprocal_is_exact_enough(params.scale);
  return {params, proved ? codec::div_rn(1.0f, params.scale) : 0.0f, max_code};
}

// The binary32 sums of an octet's encoding: x^2, and the error's square and largest magnitude.
struct OctetSums {
  float x2 = 0.0f, e2 = 0.0f, max_e = 0.0f;

  __device__ void add(float x, float e) {
    x2 = codec::fma_rn(x, x, x2);
    e2 = codec::fma_rn(e, e, e2);
    max_e = fmaxf(max_e, fabsf(e));
  }
};

// The octet through the codec's division, the error in value units: for groups whose scale the
// reciprocal cannot serve, and for the rare octets with an element the proof does not cover
// (the whole octet again, after the fast pass: recomputing only those elements inside the fast
// loop kept its values live across the division and cost the kernels ~25 registers).
template <int Bits>
__device__ inline PackedWord<Bits> encode_octet_by_division(const float (&x)[8], codec::AffineParams params,
                                                                 float max_code, OctetSums* sums) {
  PackedWord<Bits> word = 0;
  *sums = OctetSums{};
#pragma unroll
  for (int k = 0; k < 8; ++k) {
    const std::uint32_t q = codec::affine_code(x[k], params, max_code);
    sums->add(x[k], codec::sub_rn(x[k], codec::affine_value(q, params)));
    word |= static_cast<PackedWord<Bits>>(q) << (k * Bits);
  }
  return word;
}

/// Codes of a whole octet under one group, packed; its error into `stats`. *finite is
/// cleared when an element is NaN or infinite.
template <int Bits>
__device__ inline PackedWord<Bits> encode_octet(const float (&x)[8], const GroupCoder& c, ThreadStats& stats,
                                                bool* finite) {
  using Word = PackedWord<Bits>;
  Word word = 0;
  OctetSums sums;
  float unit = 1.0f;  // x - decoded = e * unit
  bool unproved = c.reciprocal == 0.0f;
  if (!unproved) {
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      float t;
      bool u;
      const float biased =
          codec::reciprocal_code_biased(codec::sub_rn(x[k], c.params.min), c.reciprocal, c.max_code, &t, &u);
      unproved |= u;
      sums.add(x[k], codec::sub_rn(t, codec::sub_rn(biased, codec::kRoundMagic)));  // in code units
      word |= static_cast<Word>(codec::float_bits(biased) & 0xffu) << (k * Bits);
    }
    unit = c.params.scale;
  }
  if (unproved) {  // about one octet in 250, or a group the reciprocal cannot serve
    word = encode_octet_by_division<Bits>(x, c.params, c.max_code, &sums);
    unit = 1.0f;
  }
  if (codec::is_finite(sums.x2) && codec::is_finite(sums.e2)) {
    stats.add_sums(sums.x2, sums.e2, sums.max_e, unit);
  } else {  // a NaN or infinity, or sums beyond binary32: again in binary64
    float decoded[8];
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      *finite &= codec::is_finite(x[k]);
      const auto code = static_cast<std::uint32_t>(word >> (k * Bits)) & codec::max_code(Bits);
      decoded[k] = codec::affine_value(code, c.params);
    }
    stats.add_octet(x, decoded, 8);
  }
  return word;
}

/// Stores the Bits bytes of a packed octet at `out`, which is aligned to the largest power of
/// two dividing Bits (code runs start 256-byte aligned): one store for 2-, 4- and 8-bit codes.
template <int Bits>
__device__ inline void store_packed(PackedWord<Bits> word, std::uint8_t* out) {
  if constexpr (Bits == 8) {
    *reinterpret_cast<std::uint64_t*>(out) = word;
  } else if constexpr (Bits == 4) {
    *reinterpret_cast<std::uint32_t*>(out) = word;
  } else if constexpr (Bits == 2) {
    *reinterpret_cast<std::uint16_t*>(out) = static_cast<std::uint16_t>(word);
  } else if constexpr (Bits == 6) {
#pragma unroll
    for (int j = 0; j < 3; ++j) reinterpret_cast<std::uint16_t*>(out)[j] = static_cast<std::uint16_t>(word >> (16 * j));
  } else {
#pragma unroll
    for (int j = 0; j < Bits; ++j) out[j] = static_cast<std::uint8_t>(word >> (8 * j));
  }
}

}  // namespace wq::cuda
