#!/usr/bin/env python3
"""Independent numpy reference for the wq codec and the WQ container, versions 1 and 2.

This file shares no code with the C++ implementation. It re-derives, from the
written contract, what a container must hold, and compares byte for byte.

Subcommands
  check            input safetensors + container: every part must be the expected bytes
                   (--method minmax, symmetric or mse, as given to wq-gpu quantize)
  decode-check     container + decoded safetensors: decoded tensors must be exact
  assignment-check input + 8-bit per-tensor container vs. the seed assignment's formula
  selftest         run the known-answer vectors (tests/data/codec_vectors.json) and
                   a few internal checks

Exit status: 0 success, 1 mismatch, 2 usage / unreadable input.
Needs numpy only (Debian's /usr/bin/python3 has it). XXH3 checksums are verified when
the system's libxxhash (Debian package libxxhash0) can be loaded through ctypes;
otherwise only their format is checked.
"""

import argparse
import ctypes
import ctypes.util
import json
import math
import os
import re
import struct
import sys

import numpy as np

# --------------------------------------------------------------------------------------
# errors


class Mismatch(Exception):
    """The file under test disagrees with the reference (exit status 1)."""


class UsageError(Exception):
    """Bad arguments or an unreadable / unsupported input (exit status 2)."""


# --------------------------------------------------------------------------------------
# minimal safetensors reader

DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8,
    "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32,
    "I64": 64, "U64": 64, "F64": 64, "C64": 64,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}
FLOAT_DTYPES = ("F32", "F16", "BF16", "F64")


class SafeTensorsFile:
    """Parsed safetensors file: header order kept, raw bytes per tensor."""

    def __init__(self, path):
        self.path = path
        try:
            with open(path, "rb") as f:
                self.blob = f.read()
        except OSError as e:
            raise UsageError(f"{path}: cannot read: {e}")
        blob = self.blob
        if len(blob) < 8:
            raise Mismatch(f"{path}: shorter than 8 bytes")
        (hlen,) = struct.unpack("<Q", blob[:8])
        if hlen > 100_000_000 or 8 + hlen > len(blob):
            raise Mismatch(f"{path}: bad header length {hlen}")
        try:
            text = blob[8:8 + hlen].decode("utf-8")
        except UnicodeDecodeError:
            raise Mismatch(f"{path}: header is not UTF-8")
        if not text.startswith("{"):
            raise Mismatch(f"{path}: header does not start with '{{'")

        def no_dupes(pairs):
            d = {}
            for k, v in pairs:
                if k in d:
                    raise Mismatch(f"{path}: duplicate key {k!r} in header")
                d[k] = v
            return d

        try:
            header = json.loads(text, object_pairs_hook=no_dupes)
        except json.JSONDecodeError as e:
            raise Mismatch(f"{path}: header is not JSON: {e}")
        self.header_len = hlen
        self.data_start = 8 + hlen
        self.metadata = header.pop("__metadata__", None) or {}
        if not isinstance(self.metadata, dict) or not all(
                isinstance(v, str) for v in self.metadata.values()):
            raise Mismatch(f"{path}: __metadata__ must map strings to strings")
        self.entries = header  # name -> {dtype, shape, data_offsets}, file order
        spans = []
        for name, e in header.items():
            if not isinstance(e, dict) or set(e) < {"dtype", "shape", "data_offsets"}:
                raise Mismatch(f"{path}: tensor {name!r}: malformed entry")
            dt = e["dtype"]
            if dt not in DTYPE_BITS:
                raise Mismatch(f"{path}: tensor {name!r}: unknown dtype {dt}")
            b, end = e["data_offsets"]
            n = math.prod(e["shape"])
            nbits = n * DTYPE_BITS[dt]
            if nbits % 8 or end - b != nbits // 8 or end < b:
                raise Mismatch(f"{path}: tensor {name!r}: data_offsets {e['data_offsets']}"
                               f" do not fit dtype {dt} shape {e['shape']}")
            spans.append((b, end, name))
        spans.sort()
        pos = 0
        for b, end, name in spans:
            if b != pos:
                raise Mismatch(f"{path}: tensor {name!r}: data not contiguous (starts at {b},"
                               f" expected {pos})")
            pos = end
        if self.data_start + pos != len(blob):
            raise Mismatch(f"{path}: file length {len(blob)} != header + data "
                           f"({self.data_start + pos})")

    def names(self):
        return list(self.entries)

    def raw(self, name):
        b, e = self.entries[name]["data_offsets"]
        return self.blob[self.data_start + b:self.data_start + e]

    def dtype(self, name):
        return self.entries[name]["dtype"]

    def shape(self, name):
        return list(self.entries[name]["shape"])


# --------------------------------------------------------------------------------------
# dtype conversions

def to_float32(raw, dtype):
    """Bytes of a floating tensor -> float32 array (exact for F16/BF16; RNE for F64)."""
    if dtype == "F32":
        return np.frombuffer(raw, dtype="<f4").astype(np.float32)
    if dtype == "F16":
        return np.frombuffer(raw, dtype="<f2").astype(np.float32)
    if dtype == "BF16":
        u = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << np.uint32(16)
        return u.view(np.float32)
    if dtype == "F64":
        return np.frombuffer(raw, dtype="<f8").astype(np.float32)
    raise UsageError(f"not a floating dtype: {dtype}")


def to_float64(raw, dtype):
    if dtype == "F64":
        return np.frombuffer(raw, dtype="<f8").astype(np.float64)
    return to_float32(raw, dtype).astype(np.float64)


def f32_to_bf16_bits(x):
    """float32 array -> uint16 BF16 bits, round to nearest even (NaN stays NaN)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + np.uint64(0x7FFF) + ((u >> np.uint64(16)) & np.uint64(1))) >> np.uint64(16))
    r = r.astype(np.uint16)
    nan = np.isnan(x)
    if nan.any():
        r[nan] = ((u[nan] >> np.uint64(16)) | np.uint64(0x40)).astype(np.uint16)
    return r


def from_float32(x, dtype):
    """float32 array -> little-endian bytes of dtype (RNE for narrowing)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if dtype == "F32":
        return x.astype("<f4").tobytes()
    if dtype == "F16":
        return x.astype("<f2").tobytes()
    if dtype == "BF16":
        return f32_to_bf16_bits(x).astype("<u2").tobytes()
    if dtype == "F64":
        return x.astype("<f8").tobytes()
    raise UsageError(f"not a floating dtype: {dtype}")


# --------------------------------------------------------------------------------------
# design §3: geometry, ranges, codes, decode


def group_layout(shape, granularity, group_size):
    """Return (starts, lengths, stored_group_size) of the groups of a tensor, in
    group-index order. Groups are runs of consecutive elements (row-major)."""
    n = math.prod(shape)
    if len(shape) >= 2:
        rows = shape[0]
        cols = n // rows if rows else 0
    else:
        rows, cols = 1, n
    if granularity == "tensor":
        return np.array([0], dtype=np.int64), np.array([n], dtype=np.int64), 0
    if granularity == "channel":
        g = cols
        stored = cols
    elif granularity == "group":
        if not group_size or group_size < 1:
            raise UsageError("--granularity group needs --group-size >= 1")
        g = group_size
        stored = group_size
    else:
        raise UsageError(f"unknown granularity {granularity}")
    per_row = -(-cols // g)
    j = np.arange(per_row, dtype=np.int64)
    r = np.arange(rows, dtype=np.int64)
    starts = (r[:, None] * cols + j[None, :] * g).reshape(-1)
    lens = np.minimum(g, cols - j * g)
    lens = np.broadcast_to(lens[None, :], (rows, per_row)).reshape(-1).astype(np.int64)
    return starts, lens, stored


class CannotQuantize(Exception):
    """The contract says quantizing this tensor is an error (NaN/Inf, range overflow)."""


METHODS = ("minmax", "symmetric", "mse")


def group_range(x32, starts):
    """§4 step 1: (lo, hi) of every group, float32."""
    lo = np.minimum.reduceat(x32, starts)
    hi = np.maximum.reduceat(x32, starts)
    # design: -0.0 and +0.0 compare equal, so a reduction may return either; the stored range
    # is canonical (+0.0), which adding +0.0 gives in binary32.
    return lo + np.float32(0), hi + np.float32(0)


def round_param(v32, scale_dtype):
    """R of §4 step 2: float32 -> the stored dtype (float16 rounds to nearest even; a value
    beyond binary16's range becomes inf, which every caller treats as 'no finite F16 value')."""
    if scale_dtype == "f16":
        with np.errstate(over="ignore", invalid="ignore"):
            return np.asarray(v32, dtype=np.float32).astype(np.float16)
    if scale_dtype == "f32":
        return np.asarray(v32, dtype=np.float32)
    raise UsageError(f"unknown scale dtype {scale_dtype}")


def minmax_params(lo, hi, bits, scale_dtype):
    """§4 steps 1-2: (scale, min) in the stored dtype."""
    levels = np.float32((1 << bits) - 1)
    with np.errstate(over="ignore", invalid="ignore"):
        span = hi - lo  # float32 subtraction
    if not np.isfinite(span).all():
        g = int(np.flatnonzero(~np.isfinite(span))[0])
        raise CannotQuantize(f"range hi - lo of group {g} overflows binary32")
    scale_s = round_param(span / levels, scale_dtype)  # float32 division, then R
    min_s = round_param(lo, scale_dtype)
    if not (np.isfinite(scale_s).all() and np.isfinite(min_s).all()):
        raise CannotQuantize("scale or min overflows float16")
    return scale_s, min_s


def symmetric_params(lo, hi, bits, scale_dtype):
    """§4.2: (stored scale, float32 min). The min is not stored; it follows from the scale
    exactly as a decoder derives it, so coding and decoding use the same value."""
    k = np.float32(1 << (bits - 1))
    m = np.where(hi >= -lo, hi, lo)  # ties (hi == -lo) go to hi
    scale_s = round_param(m / -k, scale_dtype)  # one float32 division, then R
    if not np.isfinite(scale_s).all():
        raise CannotQuantize("scale overflows float16")
    return scale_s, symmetric_min(scale_s, bits)


def symmetric_min(scale_s, bits):
    return np.float32(-(1 << (bits - 1))) * np.asarray(scale_s).astype(np.float32)


def affine_codes(x32, sc, mn, levels):
    """§4 step 3 with per-element (or broadcastable) float32 scale and min."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        t = np.rint((x32 - mn) / sc)  # float32 sub, float32 div, half-to-even
    t = np.clip(t, np.float32(0), np.float32(levels))
    t[np.broadcast_to(sc == 0, t.shape)] = 0  # a constant group, and 0/0 -> NaN above
    return t


def _combine8(la):
    """§4.1 step 3: the eight binary64 lane totals (last axis) combined pairwise."""
    return (((la[..., 0] + la[..., 1]) + (la[..., 2] + la[..., 3]))
            + ((la[..., 4] + la[..., 5]) + (la[..., 6] + la[..., 7])))


def lane_sums(t):
    """§4.1 step 3's binary64 summation order (that of Sx; Sq and Sqq, sums of integers, are
    exact in it too), per row of the float64 matrix t: element i goes to lane i mod 8, each
    lane adds in index order, the lanes are combined pairwise. Padding a row with zeros does
    not change its sums, so rows of different lengths can share one matrix."""
    g, w = t.shape
    pad = (-w) % 8
    if pad:
        t = np.concatenate([t, np.zeros((g, pad))], axis=1)
    if t.shape[1] == 0:
        return np.zeros(g)
    # cumsum is a strictly sequential accumulation (np.sum would sum pairwise). It starts from
    # the first term instead of from +0.0, which can only change the sign of a zero; adding
    # +0.0 at the end makes that sign the one a +0.0-initialised accumulator gives.
    return _combine8(np.cumsum(t.reshape(g, -1, 8), axis=1)[:, -1, :] + 0.0)


BLOCK = 2048  # §4.1 step 3: elements per binary32 block, 256 per lane


def fma_lane_sums(u, v, valid):
    """§4.1 step 3's binary32 sum of u*v (that of err and Sqx), per row of the float32
    matrices u and v: element i goes to lane i mod 8 of block i // 2048; each lane of each
    block adds acc = fma(u, v, acc) in index order from +0.0, and its acc goes into the
    lane's binary64 total at the end of the block. Elements outside valid add nothing."""
    g, w = u.shape
    # zeros for the padding: fma(+-0, 0, acc) is acc, except that -0.0 becomes +0.0; the
    # binary64 totals start at +0.0, and +0.0 + -0.0 is +0.0 too, so a padded row sums exactly
    # as it would alone. (For err and Sqx no acc is ever -0.0: e*e >= 0, and q*x is 0 or at
    # least the smallest subnormal, so a round-to-nearest sum from +0.0 is never -0.0.)
    u = np.where(valid, u, np.float32(0))
    v = np.where(valid, v, np.float32(0))
    nb = max(1, -(-w // BLOCK))
    steps = min(BLOCK // 8, -(-w // 8))
    pad = nb * steps * 8 - w
    if pad:
        u = np.concatenate([u, np.zeros((g, pad), np.float32)], axis=1)
        v = np.concatenate([v, np.zeros((g, pad), np.float32)], axis=1)
    u = u.reshape(g, nb, steps, 8)
    v = v.reshape(g, nb, steps, 8)
    # an fma accumulation is sequential: one step of every lane of every block at a time
    acc = np.zeros((g, nb, 8), np.float32)
    for j in range(steps):
        acc = fma_f32(u[:, :, j], v[:, :, j], acc)
    # cumsum adds the blocks in order; as in lane_sums, adding +0.0 at the end gives the sign
    # of zero of a total started at +0.0
    with np.errstate(invalid="ignore"):
        return _combine8(np.cumsum(acc.astype(np.float64), axis=1)[:, -1] + 0.0)


def group_matrix(x32, starts, lens):
    """Groups as rows of one float32 matrix, each padded with its own last element (a value
    of the group, so padding never produces an overflow or NaN of its own), plus the mask of
    real elements."""
    w = int(lens.max()) if lens.size else 0
    j = np.arange(w, dtype=np.int64)
    valid = j[None, :] < lens[:, None]
    idx = starts[:, None] + np.minimum(j[None, :], lens[:, None] - 1)
    return x32[idx], valid


def _pass(X, valid, s, m, levels):
    """One coding pass of §4.1 step 3 over group rows: (codes, err)."""
    Q = affine_codes(X, s[:, None], m[:, None], levels)
    shape = X.shape
    xd = fma_f32(np.broadcast_to(s[:, None], shape), Q, np.broadcast_to(m[:, None], shape))
    with np.errstate(over="ignore"):
        e = X - xd  # binary32; past FLT_MAX it is infinite, and so is err
    return Q, fma_lane_sums(e, e, valid)


def group_sq_err(X, valid, s, m, bits):
    """The squared error of §4.1 for rows X coded with stored (s, m) widened to float32."""
    s = np.asarray(s).astype(np.float32)
    m = np.asarray(m).astype(np.float32)
    return _pass(X, valid, s, m, (1 << bits) - 1)[1]


def _widen(v):
    return np.asarray(v).astype(np.float32)


def mse_search(X, valid, lens, lo, hi, s0, m0, bits, scale_dtype):
    """§4.1 for group rows X (float32, padded, mask valid); s0/m0 are the min-max parameters
    in the stored dtype. Returns the chosen (scale, min) widened to float32. All groups run
    in lock step; a group whose candidate stopped or was dropped is masked out, so the per
    group decisions are exactly the sequential ones."""
    levels = (1 << bits) - 1
    L = np.float32(levels)
    nf = lens.astype(np.float64)
    Sx = lane_sums(np.where(valid, X.astype(np.float64), 0.0))
    s0, m0 = _widen(s0), _widen(m0)
    searched = s0 != 0
    cands = [(s0, m0, searched.copy())]
    with np.errstate(over="ignore", invalid="ignore"):
        mid = lo * np.float32(0.5) + hi * np.float32(0.5)
        wide = s0 * L
        for div in ((L - np.float32(1),) if bits >= 2 else ()) + (L + np.float32(1),):
            s = _widen(round_param(wide / div, scale_dtype))
            m = _widen(round_param(mid - s * np.float32(levels / 2), scale_dtype))
            cands.append((s, m, searched & np.isfinite(s) & np.isfinite(m) & (s > 0)))
    best_s, best_m = s0.copy(), m0.copy()
    best_err = np.full(len(s0), np.inf)
    first = True
    for s, m, act in cands:
        act = act.copy()
        # masked-out rows still go through the arithmetic; harmless values keep them quiet
        s = np.where(act, s, np.float32(1))
        m = np.where(act, m, np.float32(0))
        for p in range(5):
            if not act.any():
                break
            Q, err = _pass(X, valid, s, m, levels)
            # the first pass of min-max always sets the best: its err may be inf (x' can round
            # past FLT_MAX next to a huge hi), and inf < inf would leave no best at all
            better = act.copy() if first else act & (err < best_err)
            first = False
            best_s[better], best_m[better], best_err[better] = s[better], m[better], err[better]
            if p == 4:
                break
            Q64 = np.where(valid, Q.astype(np.float64), 0.0)
            Sq = lane_sums(Q64)  # integers: exact in any order
            Sqq = lane_sums(Q64 * Q64)
            Sqx = fma_lane_sums(Q, X, valid)
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                det = nf * Sqq - Sq * Sq
                act &= det > 0
                sp = (nf * Sqx - Sq * Sx) / det
                mp = (Sx - sp * Sq) / nf
                sr = _widen(round_param(sp.astype(np.float32), scale_dtype))
                mr = _widen(round_param(mp.astype(np.float32), scale_dtype))
            act &= np.isfinite(sr) & np.isfinite(mr) & (sr > 0)
            s = np.where(act, sr, s)
            m = np.where(act, mr, m)
    return best_s, best_m


def range_params(x32, starts, lens, bits, scale_dtype, method="minmax"):
    """Per-group (scale in the stored dtype, min) for a method. The min is in the stored
    dtype for minmax/mse and the derived float32 value for symmetric."""
    lo, hi = group_range(x32, starts)
    if method == "symmetric":
        return symmetric_params(lo, hi, bits, scale_dtype)
    s0, m0 = minmax_params(lo, hi, bits, scale_dtype)
    if method == "minmax":
        return s0, m0
    if method != "mse":
        raise UsageError(f"unknown method {method}")
    sdt = np.float16 if scale_dtype == "f16" else np.float32
    sc, mn = s0.astype(np.float32), m0.astype(np.float32)
    todo = np.flatnonzero(s0 != 0)
    # A tensor's groups have at most two lengths (full ones and the short last one of each
    # row); doing them apart keeps the padding small.
    for length in np.unique(lens[todo]):
        k = todo[lens[todo] == length]
        X, valid = group_matrix(x32, starts[k], lens[k])
        sc[k], mn[k] = mse_search(X, valid, lens[k], lo[k], hi[k], s0[k], m0[k], bits,
                                  scale_dtype)
    return sc.astype(sdt), mn.astype(sdt)  # exact: the values came from the stored dtype


def quantize(x32, starts, lens, bits, scale_dtype, method="minmax"):
    """§4. x32: flat float32. Returns (codes uint8, scale, min) where scale is the stored
    dtype (float32 or float16) and min is too, except for symmetric where it is the float32
    min a decoder derives (not stored)."""
    x32 = np.ascontiguousarray(x32, dtype=np.float32)
    if not np.isfinite(x32).all():
        i = int(np.flatnonzero(~np.isfinite(x32))[0])
        raise CannotQuantize(f"non-finite value {x32[i]} at element {i}")
    scale_s, min_s = range_params(x32, starts, lens, bits, scale_dtype, method)
    sc = np.repeat(scale_s.astype(np.float32), lens)
    mn = np.repeat(min_s.astype(np.float32), lens)
    return affine_codes(x32, sc, mn, (1 << bits) - 1).astype(np.uint8), scale_s, min_s


def fma_f32(a, b, c):
    """Correctly rounded float32 fma(a, b, c), elementwise, for float32 arrays of one shape.

    a*b is exact in float64 for any two float32 values: 24 + 24 significand bits fit in 53,
    and a product's magnitude (2^-298 to 2^256) lies far inside float64's normal range. TwoSum
    then gives s + e == a*b + c exactly (float64 cannot overflow here either). Rounding s to
    float32 is the right answer except when s is exactly halfway between two float32 values
    and e != 0: then the exact sum lies on e's side. That includes 2^128 - 2^103, halfway
    from FLT_MAX to 2^128, where the exact sum rounds to infinity only at or above it. An
    infinite or NaN operand makes s infinite or NaN as IEEE fma would (inf*0 and inf - inf
    are NaN), and s is kept as it is.
    """
    c64 = c.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        p = a.astype(np.float64) * b.astype(np.float64)
        s = p + c64
        bp = s - c64
        e = (p - bp) + (c64 - (s - bp))
        r = s.astype(np.float32)
    # 2^128 stands for the rounding to infinity of a finite s, so that FLT_MAX and infinity
    # have their midpoint like any two neighbours
    r64 = np.where(np.isinf(r) & np.isfinite(s), np.copysign(2.0 ** 128, s),
                   r.astype(np.float64))
    cand = np.isfinite(s) & (e != 0) & (r64 != s)
    if cand.any():
        rc, r64c, sc, ec = r[cand], r64[cand], s[cand], e[cand]
        toward = np.where(sc > r64c, np.float32(np.inf), np.float32(-np.inf))
        other = np.nextafter(rc, toward)
        other64 = np.where(np.isinf(other), np.copysign(2.0 ** 128, other),
                           other.astype(np.float64))
        on_mid = ((r64c + other64) * 0.5 == sc) & ((ec > 0) == (other64 > r64c))
        rc[on_mid] = other[on_mid]
        r[cand] = rc
    return r


def dequantize(codes, scale_s, min_s, lens):
    sc = np.repeat(np.asarray(scale_s).astype(np.float32), lens)
    mn = np.repeat(np.asarray(min_s).astype(np.float32), lens)
    return fma_f32(sc, codes.astype(np.float32), mn)


# --------------------------------------------------------------------------------------
# a second, literal reading of §4.1/§4.2, one group at a time in plain Python floats; the
# vectorised code above is checked against it, and the vector generator reads its trace


def _r_scalar(v, scale_dtype):
    """R on one float32 value -> (float32 value, has a finite stored value)."""
    with np.errstate(over="ignore", invalid="ignore"):
        r = np.float32(np.float16(v)) if scale_dtype == "f16" else np.float32(v)
    return r, bool(np.isfinite(r))


def _sum8(terms):
    """Binary64 lanes: Sx, and Sq and Sqq (exact)."""
    acc = [0.0] * 8
    for i, t in enumerate(terms):
        acc[i % 8] = acc[i % 8] + t
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))


def _fma32(a, b, c):
    """fma(a, b, c) rounded once to binary32, for Python floats holding binary32 values.

    a*b is exact in binary64 and TwoSum gives s + t == a*b + c exactly. The result is s + t
    rounded to a multiple of the binary32 unit in the last place at s's binade (2^-149 at
    least), half to even; t, smaller than half a binary64 unit of s, decides only when s
    lies exactly halfway.
    """
    p = a * b
    s = p + c
    if s == 0 or not math.isfinite(s):
        return s  # an exact zero has IEEE's sign; inf and NaN as IEEE fma gives them
    bp = s - c
    t = (p - bp) + (c - (s - bp))
    ex = max(math.frexp(s)[1] - 24, -149)
    u = math.ldexp(s, -ex)  # s in units of the last place: exact, at most 2^24
    k = math.floor(u)
    frac = u - k
    if frac > 0.5 or (frac == 0.5 and (t > 0 or (t == 0 and k % 2))):
        k += 1
    r = math.ldexp(k, ex) if k else math.copysign(0.0, s)
    return r if abs(r) < 2.0 ** 128 else math.copysign(math.inf, s)


def _sum8_f32(us, vs):
    """Binary32 lanes and blocks of fmas: err (us = vs = e) and Sqx (us = q, vs = x)."""
    tot = [0.0] * 8
    acc = [0.0] * 8
    n = len(us)
    for i in range(n):
        acc[i % 8] = _fma32(us[i], vs[i], acc[i % 8])
        if (i + 1) % BLOCK == 0 or i == n - 1:  # the end of a block
            tot = [tt + a for tt, a in zip(tot, acc)]
            acc = [0.0] * 8
    return ((tot[0] + tot[1]) + (tot[2] + tot[3])) + ((tot[4] + tot[5]) + (tot[6] + tot[7]))


def _codes_scalar(x, s, m, levels):
    out = []
    with np.errstate(all="ignore"):
        for v in x:
            q = np.rint((v - m) / s) if s != 0 else np.float32(0)
            out.append(np.float32(min(max(q, np.float32(0)), np.float32(levels))))
    return out


def mse_group_scalar(x, bits, scale_dtype, trace=None):
    """§4.1 for one group (a sequence of float32). Returns (scale, min) as float32 values of
    the stored dtype and the best err. trace, a list, receives what happened, for the vector
    generator: ('drop', c), ('stop', c, pass, why), ('best', c, pass)."""
    x = [np.float32(v) for v in x]
    n = len(x)
    levels = (1 << bits) - 1
    L = np.float32(levels)
    lo, hi = min(x) + np.float32(0), max(x) + np.float32(0)
    with np.errstate(over="ignore"):
        span = hi - lo
    if not np.isfinite(span):
        raise CannotQuantize("range hi - lo overflows binary32")
    s0, ok_s = _r_scalar(span / L, scale_dtype)
    m0, ok_m = _r_scalar(lo, scale_dtype)
    if not (ok_s and ok_m):
        raise CannotQuantize("scale or min overflows float16")
    trace = [] if trace is None else trace
    if s0 == 0:
        return s0, m0, None
    cands = [(0, s0, m0)]
    with np.errstate(over="ignore", invalid="ignore"):
        mid = lo * np.float32(0.5) + hi * np.float32(0.5)
        for c, div in ((1, L - np.float32(1)), (2, L + np.float32(1))):
            if c == 1 and bits < 2:
                continue
            s, ok_s = _r_scalar(s0 * L / div, scale_dtype)
            m, ok_m = _r_scalar(mid - s * np.float32(levels / 2), scale_dtype)
            if ok_s and ok_m and s > 0:
                cands.append((c, s, m))
            else:
                trace.append(("drop", c))
    best = None
    for c, s, m in cands:
        for p in range(5):
            q = _codes_scalar(x, s, m, levels)
            xd = fma_f32(np.full(n, s, np.float32), np.array(q, np.float32),
                         np.full(n, m, np.float32))
            with np.errstate(over="ignore"):
                e = [float(v - d) for v, d in zip(x, xd)]  # binary32 subtraction
            err = _sum8_f32(e, e)
            if best is None or err < best[2]:
                best = (s, m, err)
                trace.append(("best", c, p))
            if p == 4:
                break
            qf = [float(v) for v in q]
            sq = _sum8(qf)
            sqq = _sum8(v * v for v in qf)
            sx = _sum8(float(v) for v in x)
            sqx = _sum8_f32(qf, [float(v) for v in x])
            det = n * sqq - sq * sq
            if not det > 0:
                trace.append(("stop", c, p, "det"))
                break
            sp = (n * sqx - sq * sx) / det
            mp = (sx - sp * sq) / n
            with np.errstate(over="ignore", invalid="ignore"):
                s, ok_s = _r_scalar(np.float32(sp), scale_dtype)
                m, ok_m = _r_scalar(np.float32(mp), scale_dtype)
            if not (ok_s and ok_m):
                trace.append(("stop", c, p, "nonfinite"))
                break
            if not s > 0:
                trace.append(("stop", c, p, "scale"))
                break
    return best


def symmetric_group_scalar(x, bits, scale_dtype):
    """§4.2 for one group: (stored scale, derived min) as float32 values."""
    x = [np.float32(v) for v in x]
    k = np.float32(1 << (bits - 1))
    lo, hi = min(x) + np.float32(0), max(x) + np.float32(0)
    m = hi if hi >= -lo else lo
    s, ok = _r_scalar(m / -k, scale_dtype)
    if not ok:
        raise CannotQuantize("scale overflows float16")
    return s, -k * s


# --------------------------------------------------------------------------------------
# design §4: bit packing (own packer, LSB-first little-endian stream)


def pack_codes(codes, bits):
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    if codes.size == 0:
        return b""
    bitmat = np.unpackbits(codes[:, None], axis=1, bitorder="little")[:, :bits]
    stream = bitmat.reshape(-1)
    return np.packbits(stream, bitorder="little").tobytes()  # zero-pads the last byte


def unpack_codes(raw, n, bits):
    stream = np.unpackbits(np.frombuffer(raw, dtype=np.uint8), bitorder="little")
    if stream.size < n * bits:
        raise Mismatch(f"codes part too short: {len(raw)} bytes for {n} x {bits} bits")
    bitmat = stream[:n * bits].reshape(n, bits)
    weights = (1 << np.arange(bits, dtype=np.uint16)).astype(np.uint16)
    return (bitmat.astype(np.uint16) * weights).sum(axis=1).astype(np.uint8)


# --------------------------------------------------------------------------------------
# XXH3-64 (via the system library when present)

_XXH3 = None
_XXH3_TRIED = False


def xxh3_64(data):
    global _XXH3, _XXH3_TRIED
    if not _XXH3_TRIED:
        _XXH3_TRIED = True
        for name in (ctypes.util.find_library("xxhash"), "libxxhash.so.0", "libxxhash.so"):
            if not name:
                continue
            try:
                lib = ctypes.CDLL(name)
                f = lib.XXH3_64bits
            except (OSError, AttributeError):
                continue
            f.restype = ctypes.c_uint64
            f.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
            if f(b"", 0) == 0x2D06800538D394C2:  # published XXH3_64bits("") value
                _XXH3 = f
                break
    if _XXH3 is None:
        return None
    return _XXH3(bytes(data), len(data))


# --------------------------------------------------------------------------------------
# helpers

def first_diff(a, b):
    a = np.frombuffer(bytes(a), dtype=np.uint8)
    b = np.frombuffer(bytes(b), dtype=np.uint8)
    m = min(a.size, b.size)
    d = np.flatnonzero(a[:m] != b[:m])
    if d.size:
        return int(d[0])
    return m


def expect_bytes(what, got, want, itemsize=1):
    if bytes(got) == bytes(want):
        return
    i = first_diff(got, want)
    if len(got) != len(want) and i == min(len(got), len(want)):
        raise Mismatch(f"{what}: {len(got)} bytes, expected {len(want)}")
    elem = i // itemsize
    g = bytes(got)[elem * itemsize:(elem + 1) * itemsize].hex()
    w = bytes(want)[elem * itemsize:(elem + 1) * itemsize].hex()
    raise Mismatch(f"{what}: first difference at byte {i} (element {elem}): got {g}, "
                   f"expected {w}")


def expected_encoding(dtype, shape, all_floats):
    n = math.prod(shape)
    if dtype not in FLOAT_DTYPES:
        return "raw"
    weight = len(shape) >= 2 and n > 0
    return "affine" if weight or (all_floats and n >= 2) else "raw"


def load_wq_meta(cont):
    if cont.metadata.get("format") != "pt":
        raise Mismatch(f"{cont.path}: __metadata__['format'] is "
                       f"{cont.metadata.get('format')!r}, expected 'pt'")
    if "wq" not in cont.metadata:
        raise Mismatch(f"{cont.path}: __metadata__ has no 'wq' entry")
    try:
        meta = json.loads(cont.metadata["wq"])
    except json.JSONDecodeError as e:
        raise Mismatch(f"{cont.path}: __metadata__['wq'] is not JSON: {e}")
    version = meta.get("version")
    if type(version) is not int or version not in (1, 2):
        raise Mismatch(f"{cont.path}: wq version {version!r}, expected 1 or 2")
    if not isinstance(meta.get("producer"), str):
        raise Mismatch(f"{cont.path}: wq producer missing or not a string")
    src = meta.get("source")
    if not isinstance(src, dict) or not isinstance(src.get("file"), str) or \
            not isinstance(src.get("format"), str) or not isinstance(src.get("bytes"), int):
        raise Mismatch(f"{cont.path}: wq source must be {{file, format, bytes}}: {src!r}")
    if not isinstance(meta.get("tensors"), dict):
        raise Mismatch(f"{cont.path}: wq tensors missing")
    if version == 1:
        for name, e in meta["tensors"].items():
            if isinstance(e, dict) and e.get("encoding") == "symmetric":
                raise Mismatch(f"{cont.path}: tensor {name}: symmetric encoding in a "
                               f"version-1 container")
    return meta


def part_names(name, entry):
    enc = entry.get("encoding")
    if enc == "affine":
        return [entry.get("codes"), entry.get("scale"), entry.get("min")]
    if enc == "symmetric":
        return [entry.get("codes"), entry.get("scale")]
    if enc in ("raw", "cast"):
        return [entry.get("data")]
    raise Mismatch(f"tensor {name}: unknown encoding {enc!r}")


def check_checksum(cont, name, entry):
    x = entry.get("xxh3")
    if not isinstance(x, str) or not re.fullmatch(r"[0-9a-f]{16}", x):
        raise Mismatch(f"tensor {name}: xxh3 {x!r} is not 16 lowercase hex digits")
    data = b"".join(cont.raw(p) for p in part_names(name, entry))
    h = xxh3_64(data)
    if h is not None and f"{h:016x}" != x:
        raise Mismatch(f"tensor {name}: xxh3 {x} but parts hash to {h:016x}")
    return h is not None


def check_container_parts(cont, meta):
    """Every part listed exists, no unlisted parts, parts in source order."""
    listed = []
    for name, entry in meta["tensors"].items():
        for p in part_names(name, entry):
            if not isinstance(p, str) or p not in cont.entries:
                raise Mismatch(f"tensor {name}: part {p!r} missing from container")
            listed.append(p)
    extra = [p for p in cont.names() if p not in set(listed)]
    if extra:
        raise Mismatch(f"container has parts not listed in metadata: {extra[:5]}")
    if len(set(listed)) != len(listed):
        raise Mismatch("a part is listed by two tensors")
    by_offset = sorted(cont.names(), key=lambda p: cont.entries[p]["data_offsets"][0])
    if by_offset != listed:
        i = next(k for k, (a, b) in enumerate(zip(by_offset, listed)) if a != b)
        raise Mismatch(f"parts are not stored in source order: data position {i} holds "
                       f"{by_offset[i]!r}, expected {listed[i]!r}")


def expect_part(cont, pname, dtype, shape, what):
    if cont.dtype(pname) != dtype or cont.shape(pname) != list(shape):
        raise Mismatch(f"{what}: part {pname} is {cont.dtype(pname)} {cont.shape(pname)}, "
                       f"expected {dtype} {list(shape)}")


# --------------------------------------------------------------------------------------
# subcommand: check


def cmd_check(args):
    src = SafeTensorsFile(args.input)
    cont = SafeTensorsFile(args.container)
    meta = load_wq_meta(cont)
    if meta["source"]["bytes"] != len(src.blob):
        raise Mismatch(f"wq source.bytes is {meta['source']['bytes']}, input file has "
                       f"{len(src.blob)} bytes")
    check_container_parts(cont, meta)
    tensors = meta["tensors"]
    if list(tensors) != src.names():
        missing = [n for n in src.names() if n not in tensors]
        extra = [n for n in tensors if n not in src.entries]
        if missing or extra:
            raise Mismatch(f"tensor set differs: missing {missing[:5]}, extra {extra[:5]}")
        raise Mismatch("wq tensors are not in the input's order")
    sdt = "F16" if args.scale_dtype == "f16" else "F32"
    quantized = "symmetric" if args.method == "symmetric" else "affine"
    expected = {}
    for name in src.names():
        enc = expected_encoding(src.dtype(name), src.shape(name), args.all)
        expected[name] = quantized if enc == "affine" else enc
    # design §2: version 2 only when it is needed, so that files without symmetric tensors stay
    # byte for byte what version-1 writers produce
    want_version = 2 if "symmetric" in expected.values() else 1
    if meta["version"] != want_version:
        raise Mismatch(f"wq version is {meta['version']}, expected {want_version}")
    counts = {"affine": 0, "symmetric": 0, "raw": 0}
    hashed = False
    for name in src.names():
        e = tensors[name]
        dtype, shape = src.dtype(name), src.shape(name)
        if e.get("dtype") != dtype or e.get("shape") != shape:
            raise Mismatch(f"tensor {name}: metadata says {e.get('dtype')} {e.get('shape')},"
                           f" input is {dtype} {shape}")
        enc = expected[name]
        if e.get("encoding") != enc:
            raise Mismatch(f"tensor {name}: encoding {e.get('encoding')!r}, expected {enc!r}")
        counts[enc] += 1
        if enc == "raw":
            if e.get("data") != name:
                raise Mismatch(f"tensor {name}: data part is {e.get('data')!r}, expected "
                               f"{name!r}")
            expect_part(cont, name, dtype, shape, f"tensor {name}")
            expect_bytes(f"tensor {name} (raw data)", cont.raw(name), src.raw(name),
                         max(1, DTYPE_BITS[dtype] // 8))
        else:
            n = math.prod(shape)
            starts, lens, stored = group_layout(shape, args.granularity, args.group_size)
            sym = enc == "symmetric"
            for key, want in (("bits", args.bits), ("group_size", stored),
                              ("range", args.method), ("codes", name + ".__codes"),
                              ("scale", name + ".__scale"),
                              ("min", None if sym else name + ".__min")):
                if e.get(key) != want:
                    raise Mismatch(f"tensor {name}: {key} is {e.get(key)!r}, expected "
                                   f"{want!r}")
            if sym and "min" in e:
                raise Mismatch(f"tensor {name}: a symmetric tensor has no min, yet its entry "
                               f"has a 'min' field")
            try:
                codes, sc, mn = quantize(to_float32(src.raw(name), dtype), starts, lens,
                                         args.bits, args.scale_dtype, args.method)
            except CannotQuantize as ex:
                raise Mismatch(f"tensor {name}: the contract makes quantizing it an error "
                               f"({ex}), yet the container holds it")
            nbytes = -(-n * args.bits // 8)
            expect_part(cont, name + ".__codes", "U8", [nbytes], f"tensor {name}")
            expect_part(cont, name + ".__scale", sdt, [len(starts)], f"tensor {name}")
            if not sym:
                expect_part(cont, name + ".__min", sdt, [len(starts)], f"tensor {name}")
            got_codes = cont.raw(name + ".__codes")
            want_codes = pack_codes(codes, args.bits)
            if got_codes != want_codes:
                gq = unpack_codes(got_codes, n, args.bits) if len(got_codes) == nbytes \
                    else None
                if gq is not None and not np.array_equal(gq, codes):
                    i = int(np.flatnonzero(gq != codes)[0])
                    x = to_float32(src.raw(name), dtype)[i]
                    raise Mismatch(f"tensor {name}: code of element {i} (x={x!r}) is "
                                   f"{gq[i]}, expected {codes[i]}")
                expect_bytes(f"tensor {name} (codes)", got_codes, want_codes)
            isz = 2 if sdt == "F16" else 4
            expect_bytes(f"tensor {name} (scale)", cont.raw(name + ".__scale"),
                         sc.astype("<f2" if isz == 2 else "<f4").tobytes(), isz)
            if not sym:
                expect_bytes(f"tensor {name} (min)", cont.raw(name + ".__min"),
                             mn.astype("<f2" if isz == 2 else "<f4").tobytes(), isz)
        hashed = check_checksum(cont, name, e) or hashed
    print(f"ok: {len(src.names())} tensors ({counts['affine']} affine, "
          f"{counts['symmetric']} symmetric, {counts['raw']} raw), version {want_version}, "
          f"method={args.method} bits={args.bits} granularity={args.granularity}"
          + (f" G={args.group_size}" if args.granularity == "group" else "")
          + f" scale={args.scale_dtype}"
          + ("; xxh3 verified" if hashed else "; xxh3 format only (no libxxhash)"))
    return 0


# --------------------------------------------------------------------------------------
# subcommand: decode-check


def decode_tensor(cont, name, e):
    """Bytes the decoder must produce for one logical tensor, from the container alone."""
    dtype, shape = e.get("dtype"), e.get("shape")
    if dtype not in DTYPE_BITS or not isinstance(shape, list):
        raise Mismatch(f"tensor {name}: bad dtype/shape {dtype!r} {shape!r}")
    n = math.prod(shape)
    enc = e.get("encoding")
    if enc == "raw":
        return cont.raw(e["data"])
    if enc == "cast":
        pd = cont.dtype(e["data"])
        if pd not in ("F16", "BF16"):
            raise Mismatch(f"tensor {name}: cast part has dtype {pd}")
        return from_float32(to_float32(cont.raw(e["data"]), pd), dtype)
    if enc not in ("affine", "symmetric"):
        raise Mismatch(f"tensor {name}: unknown encoding {enc!r}")
    bits, g = e.get("bits"), e.get("group_size")
    if not isinstance(bits, int) or not 1 <= bits <= 8:
        raise Mismatch(f"tensor {name}: bits {bits!r} outside 1..8")
    if dtype not in FLOAT_DTYPES:
        raise Mismatch(f"tensor {name}: {enc} tensor of non-float dtype {dtype}")
    if g == 0:
        starts, lens, _ = group_layout(shape, "tensor", 0)
    else:
        starts, lens, _ = group_layout(shape, "group", g)
    craw = cont.raw(e["codes"])
    if len(craw) != -(-n * bits // 8):
        raise Mismatch(f"tensor {name}: codes part has {len(craw)} bytes, expected "
                       f"{-(-n * bits // 8)}")
    sd = cont.dtype(e["scale"])
    if sd not in ("F32", "F16") or (enc == "affine" and sd != cont.dtype(e["min"])):
        raise Mismatch(f"tensor {name}: scale/min dtypes {sd}/"
                       f"{cont.dtype(e['min']) if enc == 'affine' else '-'}")
    np_sd = "<f2" if sd == "F16" else "<f4"
    sc = np.frombuffer(cont.raw(e["scale"]), dtype=np_sd)
    if enc == "symmetric":
        mn = symmetric_min(sc, bits)  # §4.3: from the stored scale, in binary32
    else:
        mn = np.frombuffer(cont.raw(e["min"]), dtype=np_sd)
    if sc.size != len(starts) or mn.size != len(starts):
        raise Mismatch(f"tensor {name}: {sc.size} scales / {mn.size} mins, expected "
                       f"{len(starts)} groups")
    q = unpack_codes(craw, n, bits)
    return from_float32(dequantize(q, sc, mn, lens), dtype)


def cmd_decode_check(args):
    cont = SafeTensorsFile(args.container)
    dec = SafeTensorsFile(args.decoded)
    meta = load_wq_meta(cont)
    check_container_parts(cont, meta)
    tensors = meta["tensors"]
    if set(dec.names()) != set(tensors):
        missing = [n for n in tensors if n not in dec.entries]
        extra = [n for n in dec.names() if n not in tensors]
        raise Mismatch(f"decoded tensor set differs: missing {missing[:5]}, extra "
                       f"{extra[:5]}")
    if dec.names() != list(tensors):
        print("note: decoded file lists tensors in a different order than the container",
              file=sys.stderr)
    for name, e in tensors.items():
        check_checksum(cont, name, e)
        if dec.dtype(name) != e.get("dtype") or dec.shape(name) != e.get("shape"):
            raise Mismatch(f"tensor {name}: decoded as {dec.dtype(name)} {dec.shape(name)},"
                           f" expected {e.get('dtype')} {e.get('shape')}")
        want = decode_tensor(cont, name, e)
        expect_bytes(f"tensor {name} (decoded {e['encoding']})", dec.raw(name), want,
                     max(1, DTYPE_BITS[e["dtype"]] // 8))
    print(f"ok: {len(tensors)} tensors decode exactly")
    return 0


# --------------------------------------------------------------------------------------
# subcommand: assignment-check


def cmd_assignment_check(args):
    src = SafeTensorsFile(args.input)
    cont = SafeTensorsFile(args.container)
    meta = load_wq_meta(cont)
    total = same = 0
    worst = None
    for name, e in meta["tensors"].items():
        if e.get("encoding") != "affine":
            continue
        if e.get("bits") != 8 or e.get("group_size") != 0:
            raise UsageError(f"tensor {name}: assignment-check needs an 8-bit per-tensor "
                             f"container (bits={e.get('bits')}, group_size="
                             f"{e.get('group_size')})")
        if name not in src.entries:
            raise Mismatch(f"tensor {name} is not in the input")
        w = to_float64(src.raw(name), src.dtype(name))
        n = w.size
        lo, hi = w.min(), w.max()
        if hi > lo:
            ref = np.round((w - lo) / (hi - lo) * 255)
        else:
            ref = np.zeros_like(w)
        got = unpack_codes(cont.raw(e["codes"]), n, 8).astype(np.float64)
        eq = int((got == ref).sum())
        total += n
        same += eq
        if eq < n and (worst is None or n - eq > worst[1]):
            worst = (name, n - eq, int(np.flatnonzero(got != ref)[0]))
    if total == 0:
        raise UsageError("no affine tensors in the container")
    frac = same / total
    msg = f"{same}/{total} codes ({100 * frac:.4f} %) equal the assignment's formula"
    if worst:
        msg += f"; most differences in {worst[0]} ({worst[1]}, first at index {worst[2]})"
    print(msg)
    if frac < 0.9999:
        raise Mismatch("fewer than 99.99 % of codes agree with the assignment's formula")
    return 0


# --------------------------------------------------------------------------------------
# subcommand: selftest


def default_vectors_path():
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.join(here, "..", "data", "codec_vectors.json")


def hexf32(a):
    return np.asarray(a).astype("<f4").tobytes().hex()


def selftest_internal():
    failures = []

    def check(cond, what):
        if not cond:
            failures.append(what)

    # §4 worked example used in docs/container-format.md
    check(pack_codes(np.array([5, 1, 7, 2, 0, 3, 6, 4], np.uint8), 3).hex() == "cd8599",
          "pack 3-bit example")
    check(pack_codes(np.array([5, 1, 7], np.uint8), 3).hex() == "cd01", "pack short tail")
    for b in range(1, 9):
        rng = np.random.default_rng(b)
        q = rng.integers(0, 1 << b, size=1001).astype(np.uint8)
        p = pack_codes(q, b)
        check(len(p) == -(-1001 * b // 8), f"packed size b={b}")
        check(np.array_equal(unpack_codes(p, 1001, b), q), f"pack round trip b={b}")
        check(len(pack_codes(q[:8], b)) == b, f"8 codes fill b bytes b={b}")
    # fma, both spellings: cases where rounding the float64 sum to float32 would round twice.
    # (1 + 2^-23) * 3 = 3 + 1.5 ulp (ulp = 2^-22 in [2, 4)): an exact float32 midpoint.
    # (1 + 2^-22) * 5 = 5 + 2.5 ulp (ulp = 2^-21 in [4, 8)): the even neighbour is below.
    # 18631 * 1801 = 2^25 - 1, so 18631 * (1801 * 2^103) = 2^128 - 2^103, halfway from FLT_MAX
    # to 2^128 (where infinity begins).
    tiny, big, fmax = 2.0 ** -149, 1801 * 2.0 ** 103, float(np.finfo(np.float32).max)
    for a, b, c, want, what in (
            (1.0 + 2.0 ** -23, 3.0, 0.0, 3.0 + 2.0 ** -21, "exact midpoint ties to even"),
            (1.0 + 2.0 ** -23, 3.0, -tiny, 3.0 + 2.0 ** -22,
             "midpoint minus a subnormal rounds down"),
            (1.0 + 2.0 ** -22, 5.0, 0.0, 5.0 + 2 * 2.0 ** -21,
             "exact midpoint ties to even (down)"),
            (1.0 + 2.0 ** -22, 5.0, tiny, 5.0 + 3 * 2.0 ** -21,
             "midpoint plus a subnormal rounds up"),
            (18631.0, big, 0.0, math.inf, "halfway to 2^128 rounds to infinity"),
            (18631.0, big, -tiny, fmax, "just below halfway to 2^128 rounds to FLT_MAX"),
            (-18631.0, big, tiny, -fmax, "just above halfway to -2^128 rounds to -FLT_MAX"),
            (3e19, 3e19, -fmax, math.inf, "a product past FLT_MAX"),
            (math.inf, 0.0, 1.0, math.nan, "inf * 0"),
            (-0.0, 5.0, -0.0, -0.0, "-0 + -0"),
            (2.0 ** -80, -(2.0 ** -80), 0.0, -0.0, "an underflow keeps its sign")):
        got = fma_f32(*(np.array([v], np.float32) for v in (a, b, c)))[0]
        check(same_f64(got, want), f"fma {what}")
        check(same_f64(_fma32(a, b, c), want), f"literal fma {what}")
    # random agreement with exact rational arithmetic, for codes and any float32 as b
    from fractions import Fraction
    rng = np.random.default_rng(7)
    sc = (rng.standard_normal(2000) * 10.0 ** rng.integers(-40, 30, 2000)).astype(np.float32)
    mn = (rng.standard_normal(2000) * 10.0 ** rng.integers(-40, 30, 2000)).astype(np.float32)
    q = np.where(np.arange(2000) < 1000, rng.integers(0, 256, 2000),
                 rng.standard_normal(2000) * 10.0 ** rng.integers(-40, 30, 2000)
                 ).astype(np.float32)
    got = fma_f32(sc, q, mn)
    for i in range(2000):
        if not same_f64(_fma32(float(sc[i]), float(q[i]), float(mn[i])), got[i]):
            check(False, f"literal fma random case {i}")
            break
        if not np.isfinite(got[i]):
            continue
        exact = Fraction(float(sc[i])) * Fraction(float(q[i])) + Fraction(float(mn[i]))
        g = Fraction(float(got[i]))
        nb = [Fraction(float(np.nextafter(got[i], np.float32(t)))) for t in (-np.inf, np.inf)]
        err = abs(g - exact)
        if any(abs(v - exact) < err for v in nb) or \
                (any(abs(v - exact) == err for v in nb) and
                 int(got[i].view(np.uint32)) & 1):
            check(False, f"fma random case {i}")
            break
    # BF16 rounding
    x = np.array([1.0 + 2.0 ** -8, 1.0 + 3 * 2.0 ** -8, 1.0 + 2.0 ** -8 + 2.0 ** -20],
                 np.float32)
    check(list(f32_to_bf16_bits(x)) == [0x3F80, 0x3F82, 0x3F81], "bf16 RNE")
    # geometry
    s, l, g = group_layout([3, 10], "group", 4)
    check(list(s) == [0, 4, 8, 10, 14, 18, 20, 24, 28] and list(l) == [4, 4, 2] * 3
          and g == 4, "group geometry")
    s, l, g = group_layout([3, 10], "channel", 0)
    check(list(s) == [0, 10, 20] and g == 10, "channel geometry")
    s, l, g = group_layout([7], "channel", 0)
    check(list(s) == [0] and list(l) == [7] and g == 7, "1-d channel geometry")
    # §4.1's lane order: the matrix form must equal the literal loop, also for rows padded
    # with zeros, and sums that cancel must come out as +0.0
    rng = np.random.default_rng(11)
    for w in (1, 7, 8, 9, 23, 64, 77):
        t = rng.standard_normal((5, w)) * 10.0 ** rng.integers(-20, 20, (5, w))
        t[0] = -0.0
        t[1, ::2] = 1e30
        t[1, 1::2] = -1e30
        got = lane_sums(t)
        check(all(float(got[r]) == _sum8(list(t[r])) for r in range(5)), f"lane sums w={w}")
        check(np.signbit(got[0]) == np.signbit(_sum8(list(t[0]))), f"lane sum of -0.0 w={w}")
    # §4.1's binary32 lanes and blocks: the matrix form must equal the literal loop, for a row
    # alone as for the same row padded with masked garbage, across block ends, with the sign
    # of zero that sums started at +0.0 give (rows 0-1: products -0.0, and products that
    # underflow to -0.0), and overflows (row 3: +inf lanes; row 4: +inf and -inf lanes)
    rng = np.random.default_rng(12)
    for w in (1, 7, 8, 9, 77, 2047, 2048, 2049, 4103):
        u, v = (rng.standard_normal((2, 6, w)) * 10.0 ** rng.integers(-20, 20, (2, 6, w))
                ).astype(np.float32)
        u[0], v[0] = -0.0, 1.0
        u[1], v[1] = -(2.0 ** -80), 2.0 ** -80
        u[2], v[2] = np.where(np.arange(w) // 8 % 2, -1e30, 1e30), 1.0  # lanes cancel to 0
        u[3], v[3] = 3e19, 3e19
        u[4], v[4] = np.where(np.arange(w) % 2, -3e19, 3e19), 3e19
        got = fma_lane_sums(np.concatenate([u, np.full((6, 5), np.inf, np.float32)], axis=1),
                            np.concatenate([v, np.full((6, 5), np.nan, np.float32)], axis=1),
                            np.broadcast_to(np.arange(w + 5) < w, (6, w + 5)))
        for r in range(6):
            want = _sum8_f32([float(a) for a in u[r]], [float(b) for b in v[r]])
            alone = fma_lane_sums(u[r:r + 1], v[r:r + 1], np.ones((1, w), bool))[0]
            check(all(same_f64(g, want) for g in (got[r], alone)),
                  f"binary32 lane sums w={w} row {r}")
    # a lane's binary32 acc of 2^24 loses the 1s that follow in its block, not those of the
    # next block: each lane ends at 2^24 + 256 (2^24 + 511 exactly, 2^24 without blocks)
    u = np.ones((1, 4096), np.float32)
    u[0, :8] = 4096
    want = 8 * (2.0 ** 24 + 256)
    check(fma_lane_sums(u, u, np.ones(u.shape, bool))[0] == want
          and _sum8_f32([float(a) for a in u[0]], [float(a) for a in u[0]]) == want,
          "binary32 blocks end every 2048 elements")
    # §4.2: with b = 1 the two values are m and 0; a tie hi == -lo takes m = hi, so lo lies
    # beyond the last code
    for x, b, want in (([-3.0, 1.0, -1.0], 1, [-3.0, 0.0, 0.0]),
                       ([2.0, -0.5, 0.0, 1.1], 1, [2.0, 0.0, 0.0, 2.0]),
                       ([-2.0, 2.0, 0.0, 1.0], 2, [-1.0, 2.0, 0.0, 1.0])):  # -2 clipped
        x = np.array(x, np.float32)
        q, sc, mn = quantize(x, np.array([0]), np.array([x.size]), b, "f32", "symmetric")
        check(list(dequantize(q, sc, mn, np.array([x.size]))) == want,
              f"symmetric {b}-bit example {list(x)}")
    return failures


def hexf64(a):
    return np.asarray(a).astype("<f8").tobytes().hex()


def case_layout(shape, group_size):
    if group_size == 0:
        return group_layout(shape, "tensor", 0)[:2]
    return group_layout(shape, "group", group_size)[:2]


def encode_case(x, shape, bits, group_size, scale_dtype, method):
    """The computed fields of a known-answer vector case (tools/make_codec_vectors.py writes
    them, selftest compares them), plus (codes, starts, lens, scale, min)."""
    starts, lens = case_layout(shape, group_size)
    codes, sc, mn = quantize(x, starts, lens, bits, scale_dtype, method)
    out = {"codes_hex": pack_codes(codes, bits).hex(),
           "scale_f32_hex": hexf32(sc.astype(np.float32))}
    if method != "symmetric":
        out["min_f32_hex"] = hexf32(mn.astype(np.float32))
    out["decoded_f32_hex"] = hexf32(dequantize(codes, sc, mn, lens))
    if method == "mse":
        X, valid = group_matrix(x, starts, lens)
        s0, m0 = range_params(x, starts, lens, bits, scale_dtype, "minmax")
        out["minmax_sq_err_f64_hex"] = hexf64(group_sq_err(X, valid, s0, m0, bits))
        out["sq_err_f64_hex"] = hexf64(group_sq_err(X, valid, sc, mn, bits))
    return out, (codes, starts, lens, sc, mn)


def same_f32(a, b):
    return np.float32(a).view(np.uint32) == np.float32(b).view(np.uint32)


def same_f64(a, b):
    """Equal, with the same sign of zero, or both NaN (whose bits nothing specifies)."""
    a, b = float(a), float(b)
    return (a == b and math.copysign(1, a) == math.copysign(1, b)) or (a != a and b != b)


def scalar_disagreements(x, starts, lens, bits, scale_dtype, method, sc, mn):
    """Groups where the vectorised parameters differ (bit for bit) from the literal ones."""
    bad = []
    for k, (b, n) in enumerate(zip(starts, lens)):
        g = x[b:b + n]
        if method == "mse":
            s, m = mse_group_scalar(g, bits, scale_dtype)[:2]
        else:
            s, m = symmetric_group_scalar(g, bits, scale_dtype)
        if not (same_f32(sc[k], s) and same_f32(mn[k], m)):
            bad.append(k)
    return bad


def selftest_properties():
    """2000 random groups of varied length, bits, scale dtype and shape: mse never worse than
    minmax, symmetric decodes zero exactly, and the vectorised search agrees with the
    literal one; then a few groups longer than a §4.1 block, for mse."""
    failures = []
    rng = np.random.default_rng(20250412)
    groups = {}
    skipped = 0
    for i in range(2000):
        n = int(rng.integers(1, 97))
        bits = int(rng.integers(1, 9))
        sdt = "f16" if rng.random() < 0.3 else "f32"
        kind = i % 5
        if kind == 0:
            x = rng.standard_normal(n)
        elif kind == 1:
            x = rng.uniform(-1, 1, n) + rng.uniform(-1, 1)
        elif kind == 2:
            x = rng.standard_normal(n)
            x[rng.integers(n)] *= 25  # an outlier
        elif kind == 3:
            x = (np.abs(rng.standard_normal(n)) + rng.uniform(0, 3)) * rng.choice([-1, 1])
        else:
            x = np.round(rng.laplace(size=n) * 4) / 4  # many ties on the code grid
        x = x * 10.0 ** (rng.uniform(-5, 2.5) if sdt == "f16" else rng.uniform(-35, 35))
        x = x.astype(np.float32)
        if rng.random() < 0.5:
            x[rng.integers(n)] = rng.choice([0.0, -0.0])
        groups.setdefault((bits, sdt), []).append(x)
    checked_scalar = 0
    for (bits, sdt), xs in sorted(groups.items()):
        lens = np.array([len(g) for g in xs], np.int64)
        starts = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
        x = np.concatenate(xs)
        lo, hi = group_range(x, starts)
        try:
            s0, m0 = minmax_params(lo, hi, bits, sdt)
        except CannotQuantize:
            keep = [k for k, g in enumerate(xs) if np.isfinite(np.float16(g).astype(
                np.float32)).all() and np.isfinite(np.float16(g.max() - g.min()))]
            skipped += len(xs) - len(keep)
            xs = [xs[k] for k in keep]
            lens = lens[keep]
            starts = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
            x = np.concatenate(xs)
            lo, hi = group_range(x, starts)
            s0, m0 = minmax_params(lo, hi, bits, sdt)
        # all lengths in one padded matrix: the lock-step search must not depend on the
        # grouping that range_params uses
        X, valid = group_matrix(x, starts, lens)
        sc, mn = mse_search(X, valid, lens, lo, hi, s0, m0, bits, sdt)
        e_mse = group_sq_err(X, valid, sc, mn, bits)
        e_mm = group_sq_err(X, valid, s0, m0, bits)
        worse = np.flatnonzero(~(e_mse <= e_mm))
        if worse.size:
            failures.append(f"mse worse than minmax: bits={bits} {sdt} group {worse[0]}")
        k = len(xs)
        bad = scalar_disagreements(x, starts[:k], lens[:k], bits, sdt, "mse", sc, mn)
        if bad:
            failures.append(f"mse vectorised != literal: bits={bits} {sdt} group {bad[0]}")
        ss, smn = symmetric_params(lo, hi, bits, sdt)
        bad = scalar_disagreements(x, starts[:k], lens[:k], bits, sdt, "symmetric", ss, smn)
        if bad:
            failures.append(f"symmetric vectorised != literal: bits={bits} {sdt} "
                            f"group {bad[0]}")
        checked_scalar += k
        q = affine_codes(x, np.repeat(ss.astype(np.float32), lens), np.repeat(smn, lens),
                         (1 << bits) - 1)
        dec = dequantize(q.astype(np.uint8), ss, smn, lens)
        nz = np.repeat(ss != 0, lens)
        zero = nz & (x == 0)
        if not (np.all(dec[zero] == 0) and np.all(q[zero] == 1 << (bits - 1))):
            failures.append(f"symmetric zero not exact: bits={bits} {sdt}")
        # the larger-magnitude end gets code 0 (where the scale is normal, so that its rounding
        # is too small to move the code)
        tiny = np.float32(2.0 ** -14 if sdt == "f16" else 2.0 ** -126)
        m = np.where(hi >= -lo, hi, lo)
        normal = np.abs(ss.astype(np.float32)) >= tiny
        qm = affine_codes(m, ss.astype(np.float32), smn, (1 << bits) - 1)
        if np.any(qm[normal] != 0):
            failures.append(f"symmetric: m does not get code 0: bits={bits} {sdt}")
    if skipped > 20:
        failures.append(f"{skipped} random groups could not be quantized (expected a few)")
    # groups that end in a second or third block, padded in one matrix, against the literal
    # search: the same parameters and the same err
    lens = np.array([2049, 2100, 4103, 37], np.int64)
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
    for bits, sdt in ((4, "f32"), (3, "f16")):
        x = (rng.standard_normal(int(lens.sum())) * rng.uniform(0.01, 1)).astype(np.float32)
        x[rng.integers(x.size, size=4)] *= 30  # outliers
        lo, hi = group_range(x, starts)
        s0, m0 = minmax_params(lo, hi, bits, sdt)
        X, valid = group_matrix(x, starts, lens)
        sc, mn = mse_search(X, valid, lens, lo, hi, s0, m0, bits, sdt)
        e_mse = group_sq_err(X, valid, sc, mn, bits)
        if not np.all(e_mse <= group_sq_err(X, valid, s0, m0, bits)):
            failures.append(f"mse worse than minmax: long groups, bits={bits} {sdt}")
        for k, (b, n) in enumerate(zip(starts, lens)):
            s, m, err = mse_group_scalar(x[b:b + n], bits, sdt)
            if not (same_f32(sc[k], s) and same_f32(mn[k], m) and same_f64(e_mse[k], err)):
                failures.append(f"mse vectorised != literal: bits={bits} {sdt} group of {n}")
        checked_scalar += len(lens)
    return failures, 2000 - skipped + 2 * len(lens), checked_scalar


def check_vector_case(case):
    """Problems of one known-answer case (an empty list when it passes)."""
    name, shape, bits = case["name"], case["shape"], case["bits"]
    method = case.get("method", "minmax")
    if method not in METHODS:
        return [f"unknown method {method!r}"]
    sdt = case["scale_dtype"].lower()
    x = np.frombuffer(bytes.fromhex(case["input_f32_hex"]), dtype="<f4").astype(np.float32)
    if x.size != math.prod(shape):
        return [f"input has {x.size} elements for shape {shape}"]
    got, (codes, starts, lens, sc, mn) = encode_case(x, shape, bits, case["group_size"], sdt,
                                                   method)
    bad = [k for k, v in got.items() if v != case.get(k)]
    if method == "symmetric" and "min_f32_hex" in case:
        bad.append("min_f32_hex (a symmetric case has no min)")
    if list(codes[:len(case["codes"])]) != list(case["codes"]):
        bad.append("codes")
    # the packed bytes must also unpack to the same codes
    if not np.array_equal(unpack_codes(bytes.fromhex(case["codes_hex"]), x.size, bits), codes):
        bad.append("unpack(codes_hex)")
    if method == "mse":
        e_mm = np.frombuffer(bytes.fromhex(case["minmax_sq_err_f64_hex"]), "<f8")
        e = np.frombuffer(bytes.fromhex(case["sq_err_f64_hex"]), "<f8")
        if e.size != len(starts) or e_mm.size != len(starts) or not np.all(e <= e_mm):
            bad.append("mse error above the minmax one")
    if method != "minmax":
        k = scalar_disagreements(x, starts, lens, bits, sdt, method, sc, mn)
        if k:
            bad.append(f"literal {method} differs in group {k[0]}")
    return bad


def cmd_selftest(args):
    path = args.vectors or default_vectors_path()
    try:
        with open(path) as f:
            vec = json.load(f)
    except OSError as e:
        raise UsageError(f"{path}: {e}")
    failures = selftest_internal()
    prop_failures, n_groups, n_scalar = selftest_properties()
    failures += prop_failures
    n_internal = len(failures)
    for msg in failures:
        print(f"FAIL internal: {msg}")
    ok = 0
    by_method = {}
    for case in vec["cases"]:
        name = case["name"]
        method = case.get("method", "minmax")
        by_method[method] = by_method.get(method, 0) + 1
        bad = check_vector_case(case)
        if bad:
            failures.append(name)
            print(f"FAIL {name}: {', '.join(bad)}")
        else:
            ok += 1
            print(f"ok   {name}: method={method} shape={case['shape']} bits={case['bits']} "
                  f"group_size={case['group_size']} scale={case['scale_dtype']}")
    print(f"selftest: {ok}/{len(vec['cases'])} vector cases passed ("
          + ", ".join(f"{v} {k}" for k, v in sorted(by_method.items()))
          + f"), {n_internal} internal check failures; properties on {n_groups} random "
          f"groups, {n_scalar} of them also against the literal search")
    if xxh3_64(b"") is None:
        print("note: libxxhash not loadable; xxh3 fields will be format-checked only")
    else:
        print("xxh3: system libxxhash loaded (checksums will be verified)")
    return 1 if failures else 0


# --------------------------------------------------------------------------------------


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check", help="container vs. input, byte for byte")
    c.add_argument("--input", required=True)
    c.add_argument("--container", required=True)
    c.add_argument("--bits", type=int, required=True)
    c.add_argument("--granularity", choices=("tensor", "channel", "group"), required=True)
    c.add_argument("--group-size", type=int, default=0)
    c.add_argument("--scale-dtype", choices=("f32", "f16"), default="f32")
    c.add_argument("--method", choices=METHODS, default="minmax",
                   help="the --method given to wq-gpu quantize")
    c.add_argument("--all", action="store_true",
                   help="every floating tensor with >= 2 elements was quantized")
    d = sub.add_parser("decode-check", help="decoded file vs. container")
    d.add_argument("--container", required=True)
    d.add_argument("--decoded", required=True)
    a = sub.add_parser("assignment-check", help="8-bit codes vs. the seed formula")
    a.add_argument("--input", required=True)
    a.add_argument("--container", required=True)
    s = sub.add_parser("selftest", help="known-answer vectors and internal checks")
    s.add_argument("--vectors", help="default: tests/data/codec_vectors.json")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "check":
            if not 1 <= args.bits <= 8:
                raise UsageError("--bits must be 1..8")
            return cmd_check(args)
        if args.cmd == "decode-check":
            return cmd_decode_check(args)
        if args.cmd == "assignment-check":
            return cmd_assignment_check(args)
        return cmd_selftest(args)
    except Mismatch as e:
        print(f"MISMATCH: {e}", file=sys.stderr)
        return 1
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
