// Q3_K's sub-block fits in lanes, at either width: eight lanes (cpu/ggml_kquant_lanes.cpp, for
// AVX2 and the baseline) or sixteen (cpu/ggml_kquant_search_avx512.cpp). Lane j does exactly
// one sub-block's operations, in the codec's order, so the width changes nothing in the bytes.
//
// fit_symmetric_refined() (ggml's make_q3_quants with its rmse refinement) over 16 elements with
// nmax 4, lane j of register r on one sub-block of Q3_K. The refinement walks the elements in
// order and each accepted change moves the sums the next element sees; every lane does that on
// its own. That makes each element's step a chain of dependent operations (a division among
// them) that one register of lanes waits on, so R registers go through each step together and
// the core interleaves their chains.
//
// ggml stops a sub-block after a pass that changed nothing, or after five. On weights most
// sub-blocks (84 % of the Student-t benchmark input) change nothing in their first pass, and
// until a pass accepts its first change the sums it compares against are the initial ones. So
// the first pass is first asked without its chain (q3_k_first_pass): whether any element's step
// could change its code against the initial sums, all sixteen independent of each other and
// without the step's division (q3_k_may_step, a bound that is proof). Where none can, that is
// the pass, exactly, and the sub-block is done; a sub-block where one may goes, with its initial
// state, to a queue that runs its passes one to five in order, exactly, and refills its lanes as
// sub-blocks finish (q3_k_refine_queue). (Half the sub-blocks can never step: where the largest
// magnitude is positive, iscale < 0 and every term of sumlx is <= 0, so ggml's slx > 0 fails.)
//
// Like cpu/ggml_kquant_lane_ops.h, everything here has internal linkage, so that each unit
// compiles its own copies for its own instruction set.
#pragma once

#include <cstdint>
#include <cstring>
#ifdef __AVX512DQ__
#include <immintrin.h>
#endif

#include "cpu/ggml_kquant_lane_ops.h"
#include "cpu/ggml_kquant_lanes.h"

namespace wq::detail {
namespace {

template <typename Vec>
constexpr int kLanesOf = static_cast<int>(sizeof(Vec) / sizeof(float));

// Q3_K's sub-blocks of 16 in lanes, consecutive from x (X[i] lane j = sub-block j's element i):
// eight lanes by an 8x8 transpose, sixteen by a 16x16 one.
WQ_LANES_INLINE void load_q3_k_lanes(const float* x, V* X) { load_sub_blocks<16>(x, 16, X); }
WQ_LANES_INLINE void load_q3_k_lanes(const float* x, V16* X) { load_sub_blocks16(x, X); }

// Bit j set where lane j of a mask is set. The AVX-512 unit reads the bits with one
// instruction; GCC 12 builds them lane by lane from the generic loop.
template <typename VecI>
WQ_LANES_INLINE unsigned lane_bits(VecI mask) {
#ifdef __AVX512DQ__
  if constexpr (sizeof(VecI) == 64) return _mm512_movepi32_mask((__m512i)mask);
#endif
  unsigned bits = 0;
  for (int j = 0; j < kLanesOf<VecI>; ++j) bits |= (mask[j] != 0 ? 1u : 0u) << j;
  return bits;
}

// The fits of a chunk of Q3_K sub-blocks: their scales (the caller's array), and the state of
// the ones queued for refinement. No codes: the finish computes nearly every sub-block's codes
// again from its stored step, and fits the others again on their own (the codec's
// fit_symmetric_refined(), through Codes::unscaled()). Storing them here, transposed from the
// lanes, was 7-8 % of Q3_K's time.
struct Q3KChunk {
  static constexpr int kBlocks = kKQuantBatchBlocks;  // super-blocks per chunk
  static constexpr int kSubBlocks = kBlocks * 16;
  explicit Q3KChunk(float* sub_block_scales) : scales(sub_block_scales) {}
  float* scales;  // kSubBlocks
  // The queued sub-blocks' initial state: the sums and the grid their first codes came from.
  float sumlx[kSubBlocks], suml2[kSubBlocks], iscale[kSubBlocks];
  int queue[kSubBlocks];  // sub-blocks that change in their first pass
  int queued = 0;
};

// The first codes of a fit: the grid's nearest, as ggml's make_q3_quants rounds them (-4..3).
template <typename Vec>
WQ_LANES_INLINE IntOf<Vec> q3_k_first_codes(Vec iscale, Vec x) {
  constexpr int nmax = 4;
  return clamp(nearest_int(iscale * x), -nmax, nmax - 1);
}

// One element's step of a refinement pass in every lane: whether the lane takes a new code, and
// the code and sums it would take. wxl, wll: the element's current terms in the sums (w x l and
// w l l, as the sums added them); sumlx2 = sumlx * sumlx.
template <typename Vec>
struct Q3KStep {
  IntOf<Vec> take, new_l;
  Vec slx, sl2;
};
template <typename Vec>
WQ_LANES_INLINE Q3KStep<Vec> q3_k_step(Vec x, IntOf<Vec> l, Vec wxl, Vec wll, Vec sumlx, Vec suml2, Vec sumlx2) {
  constexpr int nmax = 4;
  const Vec w = x * x;
  Q3KStep<Vec> s;
  s.slx = sumlx - wxl;
  const IntOf<Vec> positive = s.slx > 0.0f;
  s.sl2 = suml2 - wll;
  s.new_l = clamp(nearest_int(x * s.sl2 / s.slx), -nmax, nmax - 1);
  const Vec nl = to_float(s.new_l);
  s.slx = s.slx + w * x * nl;
  s.sl2 = s.sl2 + w * nl * nl;
  s.take = positive & (s.new_l != l) & (s.sl2 > 0.0f) & (s.slx * s.slx * suml2 > sumlx2 * s.sl2);
  return s;
}

// Whether q3_k_step() may take a step at an element, without its division: the lanes where it
// cannot are those where its new code is certainly the current one, l, since a step needs a
// different code. The step's code is nearest_int(q) clamped to [-4, 3], q = fl(P / slx) with
// P = fl(x * sl2), slx and sl2 the sums without the element, computed as the step does. With
// d = fl(P - fl(l * slx)) and 2^-100 <= slx <= 2^100 (l * slx is normal or an exact zero, and
// nothing below overflows):
//   |d - (P - l * slx)| <= 2^-22 slx + 2^-24 |d|, so |d| <= (1/2 - 2^-14) slx gives
//   |P / slx - l| < 1/2 - 2^-15, and q, within 2^-24 * 4.5 of P / slx, is strictly nearer l
//   than any other integer: the code is l. At the grid's ends one side is enough (q > 2.5 gives
//   3 after the clamp, q < -3.5 gives -4), with |d| <= 1024 slx keeping q inside
//   nearest_int()'s range. A NaN fails a comparison, and an infinite P or d fails the bound on
//   d: the lane may step. (An infinite slx must not reach the bounds: there q is a zero, and
//   d and the bounds are all infinite.)
// On the Student-t benchmark input it lets 83 % of the sub-blocks through, against 84 % that the
// exact first pass found unchanged; it replaced that pass, a division and 25 other operations
// per element (Q3_K 1.06-1.07x, Xeon, in cache).
// (The code comes as a float, as the first pass holds it; the bounds' factors are chosen before
// they are multiplied by slx, so that no product is negated: -(c slx) is (-c) slx exactly.)
template <typename Vec>
WQ_LANES_INLINE IntOf<Vec> q3_k_may_step(Vec x, Vec l, Vec wxl, Vec wll, Vec sumlx, Vec suml2) {
  constexpr float nmax = 4.0f, near = 0.5f - 0x1p-14f, far = 1024.0f;
  const Vec slx = sumlx - wxl;
  const Vec sl2 = suml2 - wll;
  const Vec d = x * sl2 - l * slx;
  const Vec low = (l == -nmax ? Vec{} - far : Vec{} - near) * slx;
  const Vec high = (l == nmax - 1.0f ? Vec{} + far : Vec{} + near) * slx;
  return (slx > 0.0f) & ~((slx >= 0x1p-100f) & (slx <= 0x1p100f) & (d >= low) & (d <= high));
}

// One refinement pass over R registers of lanes; lanes in `frozen` (all-zero or idle) never
// change. changed[r]: the lanes that accepted a new code.
template <int R, typename Vec>
WQ_LANES_INLINE void q3_k_pass(const Vec (*X)[16], IntOf<Vec> (*L)[16], Vec* sumlx, Vec* suml2,
                               const IntOf<Vec>* frozen, IntOf<Vec>* changed) {
  constexpr int n = 16;
  for (int r = 0; r < R; ++r) changed[r] = IntOf<Vec>{};
  for (int i = 0; i < n; ++i) {
    for (int r = 0; r < R; ++r) {
      const Vec x = X[r][i];
      const Vec w = x * x;
      const Vec li = to_float(L[r][i]);
      const Q3KStep<Vec> s = q3_k_step(x, L[r][i], w * x * li, w * li * li, sumlx[r], suml2[r], sumlx[r] * sumlx[r]);
      const IntOf<Vec> take = s.take & ~frozen[r];
      L[r][i] = take ? s.new_l : L[r][i];
      sumlx[r] = take ? s.slx : sumlx[r];
      suml2[r] = take ? s.sl2 : suml2[r];
      changed[r] |= take;
    }
  }
}

// Sub-blocks [first, first + R lanes) of the chunk (x: the chunk's elements): the initial codes
// and sums, and whether the first pass would change any code. Every sub-block's scale is written
// as if final; the ones whose first pass changes something are queued with their initial state,
// and their scales rewritten when done.
// The first pass reads the input ahead of itself by this much: out of cache (64 MiB) it ran at
// 0.73x its rate in cache, and 0.82x with it (Zen 5; the other k-quants, a third as fast, lose
// little).
constexpr int kQ3KPrefetchFloats = 2048;  // 8 KiB

template <int R, typename Vec>
WQ_LANES_INLINE void q3_k_first_pass(const float* x, int first, Q3KChunk* chunk) {
  using VecI = IntOf<Vec>;
  constexpr int n = 16, nmax = 4, lanes = kLanesOf<Vec>;
  // (A prefetch past the end of the input is harmless: it never faults.)
  for (int e = 0; e < n * lanes * R; e += 64 / sizeof(float)) {
    __builtin_prefetch(x + n * first + e + kQ3KPrefetchFloats);
  }
  Vec X[R][n], wxl[R][n], wll[R][n], codes[R][n];
  VecI flat[R], changes[R];
  Vec sumlx[R], suml2[R], iscale[R];
  for (int r = 0; r < R; ++r) {
    load_q3_k_lanes(x + n * (first + lanes * r), X[r]);
    Vec amax;
    const Vec max = signed_extreme_lanes(X[r], n, &amax);
    flat[r] = amax < kquant_ggml::kGroupMaxEps;
    iscale[r] = static_cast<float>(-nmax) / max;
    sumlx[r] = Vec{};
    suml2[r] = Vec{};
    for (int i = 0; i < n; ++i) {
      const Vec l = codes[r][i] = to_float(q3_k_first_codes(iscale[r], X[r][i]));
      const Vec w = X[r][i] * X[r][i];
      wxl[r][i] = w * X[r][i] * l;
      wll[r][i] = w * l * l;
      sumlx[r] = sumlx[r] + wxl[r][i];
      suml2[r] = suml2[r] + wll[r][i];
    }
  }
  // The pass against the initial sums, asked only whether some element may take a step
  // (q3_k_may_step); a lane where one may is queued, and the queue runs its pass exactly.
  for (int r = 0; r < R; ++r) changes[r] = VecI{};
  for (int i = 0; i < n; ++i) {
    for (int r = 0; r < R; ++r) {
      changes[r] |= q3_k_may_step(X[r][i], codes[r][i], wxl[r][i], wll[r][i], sumlx[r], suml2[r]);
    }
  }
  for (int r = 0; r < R; ++r) {
    const int sub = first + lanes * r;
    // (A flat lane never takes a step: with |x| < 1e-15 its comparison underflows to 0 > 0.)
    const VecI queued = changes[r] & ~flat[r];
    // As fit_symmetric_refined() returns: scale 0 for an all-zero sub-block.
    const Vec scale = flat[r] ? Vec{} : (suml2[r] > 0.0f ? sumlx[r] / suml2[r] : Vec{});
    std::memcpy(chunk->scales + sub, &scale, sizeof scale);
    unsigned bits = lane_bits(queued);
    if (bits == 0) continue;
    // Every lane's state is stored, a register at a time (lane by lane, the queued ones' was a
    // twentieth of Q3_K's time); only the queued ones are read.
    std::memcpy(chunk->sumlx + sub, &sumlx[r], sizeof sumlx[r]);
    std::memcpy(chunk->suml2 + sub, &suml2[r], sizeof suml2[r]);
    std::memcpy(chunk->iscale + sub, &iscale[r], sizeof iscale[r]);
    for (; bits != 0; bits &= bits - 1) chunk->queue[chunk->queued++] = sub + __builtin_ctz(bits);
  }
}

// Passes one to five of the queued sub-blocks, R registers of lanes at a time: a lane whose
// sub-block is done (a pass changed nothing, or it ran five) takes the next from the queue, so
// the registers stay full while the queue lasts. Between passes only the lanes that finish or
// refill are visited, one by one (visiting every lane was a tenth of the queue's time).
template <int R, typename Vec>
WQ_LANES_INLINE void q3_k_refine_queue(const float* x, Q3KChunk* chunk) {
  using VecI = IntOf<Vec>;
  constexpr int n = 16, kLastPass = 5;
  Vec X[R][n] = {}, iscale[R] = {};
  VecI L[R][n] = {}, idle[R], changed[R], passes[R] = {};  // passes: those that changed a code
  Vec sumlx[R] = {}, suml2[R] = {};
  int sub_of[R][kLanesOf<Vec>];
  for (int r = 0; r < R; ++r) idle[r] = VecI{} - 1;
  int next = 0;
  for (;;) {
    for (int r = 0; r < R && next < chunk->queued; ++r) {
      VecI refilled = VecI{};
      for (unsigned free = lane_bits(idle[r]); free != 0 && next < chunk->queued; free &= free - 1) {
        const int j = __builtin_ctz(free);
        const int sub = chunk->queue[next++];
        for (int i = 0; i < n; ++i) X[r][i][j] = x[n * sub + i];
        sumlx[r][j] = chunk->sumlx[sub];
        suml2[r][j] = chunk->suml2[sub];
        iscale[r][j] = chunk->iscale[sub];
        sub_of[r][j] = sub;
        refilled[j] = -1;
      }
      if (!any_lane(refilled)) continue;
      idle[r] &= ~refilled;
      passes[r] = refilled ? VecI{} : passes[r];
      for (int i = 0; i < n; ++i) L[r][i] = refilled ? q3_k_first_codes(iscale[r], X[r][i]) : L[r][i];
    }
    bool active = false;
    for (int r = 0; r < R; ++r) active = active || any_lane(~idle[r]);
    if (!active) return;
    q3_k_pass<R>(X, L, sumlx, suml2, idle, changed);
    for (int r = 0; r < R; ++r) {
      passes[r] -= changed[r];  // changed: -1 where a code changed
      const VecI done = ~idle[r] & (~changed[r] | (passes[r] >= kLastPass));
      unsigned finished = lane_bits(done);
      if (finished == 0) continue;
      const Vec scale = suml2[r] > 0.0f ? sumlx[r] / suml2[r] : Vec{};
      for (; finished != 0; finished &= finished - 1) {
        const int j = __builtin_ctz(finished);
        chunk->scales[sub_of[r][j]] = scale[j];
      }
      idle[r] |= done;
    }
  }
}

// The fits of `blocks` (at most Q3KChunk::kBlocks) super-blocks from x: each sub-block's scale.
// The first pass takes four super-blocks at a time (R registers of lanes), then two, then one;
// the queue kQueueRegisters registers.
template <typename Vec, int kQueueRegisters>
WQ_LANES_INLINE void fit_q3_k_chunk(const float* x, int blocks, float* scales) {
  constexpr int kPerBlock = 16 / kLanesOf<Vec>;  // registers per super-block
  Q3KChunk chunk(scales);
  int b = 0;
  for (; b + 4 <= blocks; b += 4) q3_k_first_pass<4 * kPerBlock, Vec>(x, 16 * b, &chunk);
  for (; b + 2 <= blocks; b += 2) q3_k_first_pass<2 * kPerBlock, Vec>(x, 16 * b, &chunk);
  if (b < blocks) q3_k_first_pass<kPerBlock, Vec>(x, 16 * b, &chunk);
  q3_k_refine_queue<kQueueRegisters, Vec>(x, &chunk);
}

}  // namespace
}  // namespace wq::detail
