"""An independent numpy decoder (no torch) for compressed-tensors' "pack-quantized" int
weights, the format vLLM loads: weight_packed, weight_scale, weight_zero_point.

    u  = unpack_rows(weight_packed, bits, cols)               # uint8 [R, C], q + 2^(b-1)
    zu = unpack_zero_points(weight_zero_point, bits, rows)    # uint8 [R, groups]
    w  = decode(weight_packed, scale, weight_zero_point or None, bits, (R, C), "bf16")

Bits: a row of C elements is ceil(C*b/32) int32 words; element e of the row is the b bits
starting at bit e*b of the row's little-endian bit string (word k holds bits 32k..32k+31,
least significant first). Zero points are the same, packed along dim 0: the transposed
[groups, R] matrix is packed row by row and transposed back, [ceil(R*b/32), groups].

Values: (u - zu) * scale, with zu = 2^(b-1) when symmetric, computed in float32 and rounded
once to the dtype. For bf16 and f16 the float32 product is exact (at most 8 + 11 significant
bits), so this is the single rounding that torch's bf16/f16 multiply makes; for f32 it is
the float32 multiply itself. bf16 rounding is round-to-nearest-even on the float32 bits
(any NaN becomes 0x7FC0, as in torch); f16 is numpy's float16 cast.

The groups of a row are cols / scale.shape[1] consecutive columns ("channel" = one group).
scale is given as its raw bits, uint16 for bf16/f16 (float16 arrays are accepted for f16)
or float32 for f32; decode returns the same kind: uint16 bits for bf16/f16, float32 for f32.

    /usr/bin/python3 tests/reference/ct_reference.py [vectors.json]
decodes every case of tests/data/compressed_tensors_vectors.json and compares the bytes
with its "decoded" field; exits 1 on any mismatch.
"""
import json
import os
import sys

import numpy as np

DTYPES = ("bf16", "f16", "f32")


def _check_bits(bits):
    if not 1 <= bits <= 8:
        raise ValueError("bits must be in 1..8, got %r" % (bits,))


def unpack_rows(words, bits, cols):
    """int32 [R, W] -> uint8 [R, cols]: element e from bits e*bits.. of the row."""
    _check_bits(bits)
    words = np.asarray(words)
    if words.ndim != 2:
        raise ValueError("words must be 2-D")
    rows, n_words = words.shape
    if n_words != -(-cols * bits // 32):
        raise ValueError("%d words for %d elements of %d bits" % (n_words, cols, bits))
    w = words.astype(np.int64) & 0xFFFFFFFF                      # as unsigned 32-bit
    start = np.arange(cols, dtype=np.int64) * bits
    k, off = start // 32, start % 32
    low = w[:, k] >> off                                         # bits from word k
    k1 = np.minimum(k + 1, n_words - 1)
    # bits that spill into word k+1 (never for 4 or 8 bits; kept for 3, 5, 6, 7)
    spill = np.where(off + bits > 32, w[:, k1] << (32 - off), 0)
    return ((low | spill) & ((1 << bits) - 1)).astype(np.uint8)


def unpack_zero_points(words, bits, rows):
    """int32 [ceil(rows*bits/32), groups] (packed along dim 0) -> uint8 [rows, groups]."""
    words = np.asarray(words)
    if words.ndim != 2:
        raise ValueError("words must be 2-D")
    return np.ascontiguousarray(unpack_rows(words.T, bits, rows).T)


def to_f32(raw, dtype):
    """Raw bits (uint16 for bf16/f16) or float32 -> float32 values."""
    raw = np.asarray(raw)
    if dtype == "bf16":
        return (raw.astype(np.uint16).astype(np.uint32) << 16).view(np.float32)
    if dtype == "f16":
        if raw.dtype != np.float16:
            raw = raw.astype(np.uint16).view(np.float16)
        return raw.astype(np.float32)
    if dtype == "f32":
        return raw.astype(np.float32)
    raise ValueError("dtype must be one of %s" % (DTYPES,))


def from_f32(x, dtype):
    """float32 -> raw bits of the dtype (uint16) or float32, rounding to nearest even."""
    x = np.asarray(x, dtype=np.float32)
    if dtype == "bf16":
        b = x.view(np.uint32).astype(np.uint64)
        r = (b + 0x7FFF + ((b >> 16) & 1)) >> 16
        nan = np.isnan(x)
        r = np.where(nan, 0x7FC0, r)                  # torch's (c10) bf16 NaN
        return r.astype(np.uint16)
    if dtype == "f16":
        return x.astype(np.float16).view(np.uint16)
    if dtype == "f32":
        return x
    raise ValueError("dtype must be one of %s" % (DTYPES,))


def decode(packed, scale, zero_point, bits, shape, dtype):
    """packed: int32 [R, ceil(C*bits/32)]; scale: raw [R, groups]; zero_point: packed int32
    [ceil(R*bits/32), groups] or None (symmetric); shape (R, C). Returns raw bits (uint16)
    for bf16/f16, float32 for f32, shaped (R, C)."""
    rows, cols = shape
    u = unpack_rows(packed, bits, cols)
    s = to_f32(scale, dtype)
    if s.ndim != 2 or s.shape[0] != rows or cols % s.shape[1]:
        raise ValueError("scale shape %r does not fit %r" % (s.shape, shape))
    group = cols // s.shape[1]
    if zero_point is None:
        zu = np.full(s.shape, 1 << (bits - 1), dtype=np.int32)
    else:
        zu = unpack_zero_points(zero_point, bits, rows).astype(np.int32)
        if zu.shape != s.shape:
            raise ValueError("zero point shape %r, scale shape %r" % (zu.shape, s.shape))
    g = np.arange(cols) // group
    diff = (u.astype(np.int32) - zu[:, g]).astype(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):    # inf and NaN scales decode too
        return from_f32(diff * s[:, g], dtype)


def _raw(hexstr, dtype, shape):
    b = bytes.fromhex(hexstr)
    kind = {"bf16": "<u2", "f16": "<u2", "f32": "<f4", "i32": "<i4"}[dtype]
    return np.frombuffer(b, dtype=kind).reshape(shape)


def case_arrays(case):
    """The packed, scale and zero-point arrays of a vectors-file case."""
    rows, cols, bits, dt = case["rows"], case["cols"], case["bits"], case["dtype"]
    groups = 1 if case["group_size"] == 0 else cols // case["group_size"]
    packed = _raw(case["packed"], "i32", (rows, -(-cols * bits // 32)))
    scale = _raw(case["scale"], dt, (rows, groups))
    zp = None
    if "zero_point" in case:
        zp = _raw(case["zero_point"], "i32", (-(-rows * bits // 32), groups))
    return packed, scale, zp


def decode_case(case):
    packed, scale, zp = case_arrays(case)
    if case["symmetric"] != (zp is None):
        raise ValueError("%s: zero_point present iff asymmetric" % case["name"])
    out = decode(packed, scale, zp, case["bits"], (case["rows"], case["cols"]), case["dtype"])
    kind = "<f4" if case["dtype"] == "f32" else "<u2"
    return out.astype(kind).tobytes()


def main(argv):
    path = argv[1] if len(argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "data",
        "compressed_tensors_vectors.json")
    with open(path) as f:
        doc = json.load(f)
    bad = 0
    for case in doc["cases"]:
        got = decode_case(case)
        want = bytes.fromhex(case["decoded"])
        if got != want:
            bad += 1
            n = 4 if case["dtype"] == "f32" else 2
            first = next(i for i in range(0, len(want), n) if got[i:i + n] != want[i:i + n])
            print("MISMATCH %s: element %d got %s want %s" % (
                case["name"], first // n, got[first:first + n].hex(), want[first:first + n].hex()))
    print("%d cases, %d mismatches" % (len(doc["cases"]), bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
