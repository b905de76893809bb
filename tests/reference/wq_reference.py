#!/usr/bin/env python3
"""Independent numpy reference for the wq codec and the WQ container, version 1.

This file shares no code with the C++ implementation. It re-derives, from the
written contract, what a container must hold, and compares byte for byte.

Subcommands
  check            input safetensors + container: every part must be the expected bytes
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


def quantize(x32, starts, lens, bits, scale_dtype):
    """§3. x32: flat float32. Returns (codes uint8, scale, min) where scale/min are
    float32 or float16 arrays (the stored dtype)."""
    x32 = np.ascontiguousarray(x32, dtype=np.float32)
    if not np.isfinite(x32).all():
        i = int(np.flatnonzero(~np.isfinite(x32))[0])
        raise CannotQuantize(f"non-finite value {x32[i]} at element {i}")
    lo = np.minimum.reduceat(x32, starts)
    hi = np.maximum.reduceat(x32, starts)
    # design: -0.0 and +0.0 compare equal, so a reduction may return either; the stored range
    # is canonical (+0.0), which adding +0.0 gives in binary32.
    lo = lo + np.float32(0)
    hi = hi + np.float32(0)
    levels = np.float32((1 << bits) - 1)
    with np.errstate(over="ignore"):
        span = hi - lo  # float32 subtraction
    if not np.isfinite(span).all():
        g = int(np.flatnonzero(~np.isfinite(span))[0])
        raise CannotQuantize(f"range hi - lo of group {g} overflows binary32")
    scale32 = span / levels  # float32 division
    if scale_dtype == "f16":
        with np.errstate(over="ignore"):
            scale_s = scale32.astype(np.float16)
            min_s = lo.astype(np.float16)
        if not (np.isfinite(scale_s).all() and np.isfinite(min_s).all()):
            raise CannotQuantize("scale or min overflows float16")
    elif scale_dtype == "f32":
        scale_s, min_s = scale32, lo
    else:
        raise UsageError(f"unknown scale dtype {scale_dtype}")
    sc = np.repeat(scale_s.astype(np.float32), lens)
    mn = np.repeat(min_s.astype(np.float32), lens)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        t = np.rint((x32 - mn) / sc)  # float32 sub, float32 div, half-to-even
    t = np.clip(t, np.float32(0), levels)
    t[sc == 0] = 0
    return t.astype(np.uint8), scale_s, min_s


def fma_f32(a, b, c):
    """Correctly rounded float32 fma(a, b, c) for float32 a, c and small-integer b.

    a*b is exact in float64 (24-bit x 8-bit significands). TwoSum then gives s + e ==
    a*b + c exactly. Rounding s to float32 is the right answer except when s is exactly
    halfway between two float32 values and e != 0: then the exact sum lies on e's side.
    """
    p = a.astype(np.float64) * b.astype(np.float64)
    c64 = c.astype(np.float64)
    s = p + c64
    bp = s - c64
    e = (p - bp) + (c64 - (s - bp))
    with np.errstate(over="ignore"):
        r = s.astype(np.float32)
    r64 = r.astype(np.float64)
    cand = (r64 != s) & (e != 0) & np.isfinite(r)
    if cand.any():
        idx = np.flatnonzero(cand)
        rs = r[idx]
        toward = np.where(s[idx] > r64[idx], np.float32(np.inf), np.float32(-np.inf))
        other = np.nextafter(rs, toward.astype(np.float32))
        mid = (rs.astype(np.float64) + other.astype(np.float64)) * 0.5
        on_mid = (mid == s[idx]) & np.isfinite(other)
        if on_mid.any():
            k = idx[on_mid]
            lo_v = np.minimum(rs[on_mid], other[on_mid])
            hi_v = np.maximum(rs[on_mid], other[on_mid])
            r[k] = np.where(e[k] > 0, hi_v, lo_v)
    return r


def dequantize(codes, scale_s, min_s, lens):
    sc = np.repeat(np.asarray(scale_s).astype(np.float32), lens)
    mn = np.repeat(np.asarray(min_s).astype(np.float32), lens)
    return fma_f32(sc, codes.astype(np.float32), mn)


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
    if meta.get("version") != 1:
        raise Mismatch(f"{cont.path}: wq version {meta.get('version')!r}, expected 1")
    if not isinstance(meta.get("producer"), str):
        raise Mismatch(f"{cont.path}: wq producer missing or not a string")
    src = meta.get("source")
    if not isinstance(src, dict) or not isinstance(src.get("file"), str) or \
            not isinstance(src.get("format"), str) or not isinstance(src.get("bytes"), int):
        raise Mismatch(f"{cont.path}: wq source must be {{file, format, bytes}}: {src!r}")
    if not isinstance(meta.get("tensors"), dict):
        raise Mismatch(f"{cont.path}: wq tensors missing")
    return meta


def part_names(name, entry):
    enc = entry.get("encoding")
    if enc == "affine":
        return [entry.get("codes"), entry.get("scale"), entry.get("min")]
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
    counts = {"affine": 0, "raw": 0}
    hashed = False
    for name in src.names():
        e = tensors[name]
        dtype, shape = src.dtype(name), src.shape(name)
        if e.get("dtype") != dtype or e.get("shape") != shape:
            raise Mismatch(f"tensor {name}: metadata says {e.get('dtype')} {e.get('shape')},"
                           f" input is {dtype} {shape}")
        enc = expected_encoding(dtype, shape, args.all)
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
            for key, want in (("bits", args.bits), ("group_size", stored),
                              ("range", "minmax"), ("codes", name + ".__codes"),
                              ("scale", name + ".__scale"), ("min", name + ".__min")):
                if e.get(key) != want:
                    raise Mismatch(f"tensor {name}: {key} is {e.get(key)!r}, expected "
                                   f"{want!r}")
            try:
                codes, sc, mn = quantize(to_float32(src.raw(name), dtype), starts, lens,
                                         args.bits, args.scale_dtype)
            except CannotQuantize as ex:
                raise Mismatch(f"tensor {name}: the contract makes quantizing it an error "
                               f"({ex}), yet the container holds it")
            nbytes = -(-n * args.bits // 8)
            expect_part(cont, name + ".__codes", "U8", [nbytes], f"tensor {name}")
            expect_part(cont, name + ".__scale", sdt, [len(starts)], f"tensor {name}")
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
            expect_bytes(f"tensor {name} (min)", cont.raw(name + ".__min"),
                         mn.astype("<f2" if isz == 2 else "<f4").tobytes(), isz)
        hashed = check_checksum(cont, name, e) or hashed
    print(f"ok: {len(src.names())} tensors ({counts['affine']} affine, {counts['raw']} raw), "
          f"bits={args.bits} granularity={args.granularity}"
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
    if enc != "affine":
        raise Mismatch(f"tensor {name}: unknown encoding {enc!r}")
    bits, g = e.get("bits"), e.get("group_size")
    if not isinstance(bits, int) or not 1 <= bits <= 8:
        raise Mismatch(f"tensor {name}: bits {bits!r} outside 1..8")
    if dtype not in FLOAT_DTYPES:
        raise Mismatch(f"tensor {name}: affine tensor of non-float dtype {dtype}")
    if g == 0:
        starts, lens, _ = group_layout(shape, "tensor", 0)
    else:
        starts, lens, _ = group_layout(shape, "group", g)
    craw = cont.raw(e["codes"])
    if len(craw) != -(-n * bits // 8):
        raise Mismatch(f"tensor {name}: codes part has {len(craw)} bytes, expected "
                       f"{-(-n * bits // 8)}")
    sd = cont.dtype(e["scale"])
    if sd != cont.dtype(e["min"]) or sd not in ("F32", "F16"):
        raise Mismatch(f"tensor {name}: scale/min dtypes {sd}/{cont.dtype(e['min'])}")
    np_sd = "<f2" if sd == "F16" else "<f4"
    sc = np.frombuffer(cont.raw(e["scale"]), dtype=np_sd)
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
    # fma: cases where rounding the float64 sum to float32 would round twice.
    # (1 + 2^-23) * 3 = 3 + 1.5 ulp (ulp = 2^-22 in [2, 4)): an exact float32 midpoint.
    sc = np.array([1.0 + 2.0 ** -23], np.float32)
    q = np.array([3.0], np.float32)
    tiny = np.array([2.0 ** -149], np.float32)
    check(fma_f32(sc, q, np.zeros(1, np.float32))[0] == np.float32(3.0 + 2.0 ** -21),
          "fma exact midpoint ties to even")
    check(fma_f32(sc, q, -tiny)[0] == np.float32(3.0 + 2.0 ** -22),
          "fma midpoint minus a subnormal rounds down")
    # (1 + 2^-22) * 5 = 5 + 2.5 ulp (ulp = 2^-21 in [4, 8)): the even neighbour is below.
    sc = np.array([1.0 + 2.0 ** -22], np.float32)
    q = np.array([5.0], np.float32)
    check(fma_f32(sc, q, np.zeros(1, np.float32))[0] == np.float32(5.0 + 2 * 2.0 ** -21),
          "fma exact midpoint ties to even (down)")
    check(fma_f32(sc, q, tiny)[0] == np.float32(5.0 + 3 * 2.0 ** -21),
          "fma midpoint plus a subnormal rounds up")
    # random agreement with exact rational arithmetic
    from fractions import Fraction
    rng = np.random.default_rng(7)
    sc = (rng.standard_normal(2000) * 10.0 ** rng.integers(-40, 30, 2000)).astype(np.float32)
    mn = (rng.standard_normal(2000) * 10.0 ** rng.integers(-40, 30, 2000)).astype(np.float32)
    q = rng.integers(0, 256, 2000).astype(np.float32)
    got = fma_f32(sc, q, mn)
    for i in range(2000):
        exact = Fraction(float(sc[i])) * int(q[i]) + Fraction(float(mn[i]))
        if not np.isfinite(got[i]):
            continue
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
    return failures


def cmd_selftest(args):
    path = args.vectors or default_vectors_path()
    try:
        with open(path) as f:
            vec = json.load(f)
    except OSError as e:
        raise UsageError(f"{path}: {e}")
    failures = selftest_internal()
    n_internal = len(failures)
    for msg in failures:
        print(f"FAIL internal: {msg}")
    ok = 0
    for case in vec["cases"]:
        name, shape, bits = case["name"], case["shape"], case["bits"]
        g = case["group_size"]
        sdt = case["scale_dtype"].lower()
        x = np.frombuffer(bytes.fromhex(case["input_f32_hex"]), dtype="<f4").astype(
            np.float32)
        if x.size != math.prod(shape):
            failures.append(f"{name}: input size")
            print(f"FAIL {name}: input has {x.size} elements for shape {shape}")
            continue
        if g == 0:
            starts, lens, _ = group_layout(shape, "tensor", 0)
        else:
            starts, lens, _ = group_layout(shape, "group", g)
        codes, sc, mn = quantize(x, starts, lens, bits, sdt)
        dec = dequantize(codes, sc, mn, lens)
        got = {
            "codes_hex": pack_codes(codes, bits).hex(),
            "scale_f32_hex": hexf32(sc.astype(np.float32)),
            "min_f32_hex": hexf32(mn.astype(np.float32)),
            "decoded_f32_hex": hexf32(dec),
        }
        bad = [k for k, v in got.items() if v != case[k]]
        if list(codes[:len(case["codes"])]) != list(case["codes"]):
            bad.append("codes")
        # the packed bytes must also unpack to the same codes
        if not np.array_equal(unpack_codes(bytes.fromhex(case["codes_hex"]), x.size, bits),
                              codes):
            bad.append("unpack(codes_hex)")
        if bad:
            failures.append(name)
            print(f"FAIL {name}: {', '.join(bad)}")
        else:
            ok += 1
            print(f"ok   {name}: shape={shape} bits={bits} group_size={g} "
                  f"scale={case['scale_dtype']} groups={len(starts)}")
    print(f"selftest: {ok}/{len(vec['cases'])} vector cases passed, "
          f"{n_internal} internal check failures")
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
