#!/usr/bin/env python3
"""Craft the hostile checkpoints of fuzz/regressions/: one small file per parser defect.

Each file reproduces a defect found by fuzzing and review (issue "Untrusted checkpoints must
never crash wq"): zip bounds that wrapped around, torch views checked in wrapping arithmetic,
shapes of 2^62 elements in 0 bytes, a Paddle big parameter with too few slices, pickles whose
memory grew quadratically, sizes claimed by a zip header, broadcast views, a corrupt deflated
storage, and container metadata whose integers were truncated or wrapped. Every one must get
a clear error from wq-gpu (exit 2-8, naming the file), leave no output, and stay within the
memory rule of docs/input-limits.md; tests/e2e/cli_hostile_files_test.cpp checks that, using
fuzz/regressions/manifest.json, which this script writes too. The fuzz replay
(scripts/fuzz-replay.sh) runs the same files through the libFuzzer targets under ASan/UBSan.

Deterministic (no clock, no randomness): rerunning it rewrites the same bytes.

    /usr/bin/python3 tools/make_hostile_files.py [--out fuzz/regressions]
"""

import argparse
import ctypes
import ctypes.util
import io
import json
import os
import struct
import zipfile
import zlib

# ---- a small pickle assembler (protocol 2), so that no framework is needed ----------------


class Pickle:
    """Emits pickle opcodes; memo indices are handed out by put()."""

    def __init__(self):
        self.out = bytearray(b"\x80\x02")
        self.memo = 0

    def op(self, raw):
        self.out += raw
        return self

    def int(self, v):
        if 0 <= v < 256:
            return self.op(b"K" + bytes([v]))
        if 0 <= v < 65536:
            return self.op(b"M" + struct.pack("<H", v))
        if -(2**31) <= v < 2**31:
            return self.op(b"J" + struct.pack("<i", v))
        raw = v.to_bytes(9, "little", signed=True).rstrip(b"\x00" if v >= 0 else b"\xff")
        if v >= 0 and (not raw or raw[-1] & 0x80):
            raw += b"\x00"
        if v < 0 and (not raw or not raw[-1] & 0x80):
            raw += b"\xff"
        return self.op(b"\x8a" + bytes([len(raw)]) + raw)

    def str(self, s):
        b = s.encode()
        return self.op(b"X" + struct.pack("<I", len(b)) + b)

    def bytes(self, b):
        return self.op(b"C" + bytes([len(b)]) + b if len(b) < 256 else b"B" + struct.pack("<I", len(b)) + b)

    def glob(self, module, name):
        return self.op(b"c" + module.encode() + b"\n" + name.encode() + b"\n")

    def mark(self):
        return self.op(b"(")

    def tuple(self):
        return self.op(b"t")

    def ints(self, values):
        self.mark()
        for v in values:
            self.int(v)
        return self.tuple()

    def put(self):
        index = self.memo
        self.memo += 1
        self.op(b"q" + bytes([index]) if index < 256 else b"r" + struct.pack("<I", index))
        return index

    def get(self, index):
        return self.op(b"h" + bytes([index]) if index < 256 else b"j" + struct.pack("<I", index))

    def stop(self):
        return bytes(self.out + b".")


def ordered_dict(p):
    p.glob("collections", "OrderedDict").op(b")R")


def torch_tensor(p, key, numel, offset, shape, stride, storage="FloatStorage", view=None, legacy=False):
    """_rebuild_tensor_v2(persistent storage, offset, size, stride, False, OrderedDict())."""
    p.glob("torch._utils", "_rebuild_tensor_v2").mark()
    p.mark().str("storage").glob("torch", storage).str(key).str("cpu").int(numel)
    if legacy:
        if view is None:
            p.op(b"N")
        else:
            p.mark().str(key + "_view").int(view[0]).int(view[1]).tuple()
    p.tuple().op(b"Q")
    p.int(offset).ints(shape).ints(stride).op(b"\x89")
    ordered_dict(p)
    p.tuple().op(b"R")


def torch_state_dict(tensors, legacy=False, storage="FloatStorage"):
    """data.pkl of {name: tensor}; tensors are (name, key, numel, offset, shape, stride[, view])."""
    p = Pickle()
    ordered_dict(p)
    for t in tensors:
        name, key, numel, offset, shape, stride = t[:6]
        view = t[6] if len(t) > 6 else None
        p.str(name)
        torch_tensor(p, key, numel, offset, shape, stride, storage=storage, view=view, legacy=legacy)
        p.op(b"s")
    return p.stop()


# ---- zip files with fixed dates, as torch.save and np.savez write them ----------------------

DATE = (2020, 1, 1, 0, 0, 0)


def zip_bytes(members, compress=False, comment=b""):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members:
            info = zipfile.ZipInfo(name, DATE)
            info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
            z.writestr(info, data)
        z.comment = comment
    return bytearray(buf.getvalue())


def torch_zip(tensors, records):
    members = [("archive/data.pkl", torch_state_dict(tensors))]
    members += [("archive/data/" + k, v) for k, v in records.items()]
    members.append(("archive/version", b"3\n"))
    return zip_bytes(members)


def floats(*values):
    return struct.pack("<%df" % len(values), *values)


def end_record_offset(data):
    return data.rindex(b"PK\x05\x06")


# ---- legacy torch: five pickles, then each storage's int64 count and elements ---------------

LEGACY_MAGIC = bytes.fromhex("80028a0a6cfc9c46f9206aa850192e")


def torch_legacy(tensors, storages, element=4, storage="FloatStorage"):
    out = bytearray(LEGACY_MAGIC)
    out += Pickle().int(1001).stop()
    p = Pickle().op(b"}").str("protocol_version").int(1001).op(b"s").str("little_endian").op(b"\x88s")
    out += p.stop()
    out += torch_state_dict(tensors, legacy=True, storage=storage)
    keys = Pickle().op(b"]").mark()
    for k in storages:
        keys.str(k)
    out += keys.op(b"e").stop()
    for k, data in storages.items():
        out += struct.pack("<q", len(data) // element) + data
    return bytes(out)


# ---- Paddle: a pickled dict of numpy arrays -------------------------------------------------


def ndarray(p, shape, raw, descr="f4"):
    """numpy.core.multiarray._reconstruct(ndarray, (0,), b'b') + BUILD (1, shape, dtype, False, raw)."""
    p.glob("numpy.core.multiarray", "_reconstruct").glob("numpy", "ndarray").ints([0]).bytes(b"b").op(b"\x87R")
    p.mark().int(1).ints(shape)
    p.glob("numpy", "dtype").str(descr).op(b"\x89\x88\x87R")
    p.mark().int(3).str("<").op(b"NNN").int(-1).int(-1).int(0).tuple().op(b"b")
    p.op(b"\x89").bytes(raw).tuple().op(b"b")


def paddle(entries):
    p = Pickle().op(b"}")
    for name, build in entries:
        p.str(name)
        build(p)
        p.op(b"s")
    return p.stop()


# ---- WQ containers (safetensors files with "wq" metadata) -----------------------------------


def safetensors(header, data):
    text = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(text)) + text + data


def container(tensor_meta, parts, version=1):
    """parts: (name, dtype, shape, bytes) in data order."""
    header, data = {}, b""
    for name, dtype, shape, raw in parts:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    meta = {"version": version, "producer": "crafted", "source": {"file": "x", "format": "safetensors", "bytes": 0},
            "tensors": tensor_meta}
    header["__metadata__"] = {"format": "pt", "wq": json.dumps(meta, separators=(",", ":"))}
    return safetensors(header, data)


def affine_meta(shape, bits, group_size, checksum="0" * 16):
    return {"dtype": "F32", "shape": shape, "encoding": "affine", "bits": bits, "group_size": group_size,
            "range": "minmax", "codes": "w.__codes", "scale": "w.__scale", "min": "w.__min", "xxh3": checksum}


def xxh3_of(*chunks):
    """XXH3-64 of the parts in order, as 16 hex digits, through libxxhash (which wq links)."""
    lib = ctypes.CDLL(ctypes.util.find_library("xxhash") or "libxxhash.so.0")
    lib.XXH3_64bits.restype = ctypes.c_uint64
    lib.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    data = b"".join(chunks)
    return "%016x" % lib.XXH3_64bits(data, len(data))


# ---- the files ------------------------------------------------------------------------------


def inspect_quantize(code, text):
    return [("inspect", code, text), ("quantize", code, text)]


HUGE = 2**62


def build():
    # (target folder, file name, bytes, [("command [flags]", exit status, message substring)], why)
    files = []

    def add(target, name, data, checks, why):
        files.append((target, name, bytes(data), checks, why))


    # 1. Zip bounds that wrapped: an end record and a zip64 locator hidden in the comment of
    # the real end record. libzip rejects that candidate and uses the real one; the old reader
    # took the last end record and followed the locator to an offset near 2^64.
    sd = [("w", "0", 4, 0, [2, 2], [2, 1])]
    base = torch_zip(sd, {"0": floats(1, 2, 3, 4)})
    fake = struct.pack("<IIQI", 0x07064B50, 0, 2**64 - 16, 1)  # locator -> a zip64 record at 2^64 - 16
    fake += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, 0, 0xFFFFFFFF, 0)  # end record, cd at 0xffffffff
    eocd = end_record_offset(base)
    data = base[: eocd + 20] + struct.pack("<H", len(fake)) + fake
    add("fuzz_torch_zip", "zip_fake_zip64_locator.pt", data, inspect_quantize(4, "zip"),
        "a second end record in the comment whose zip64 locator points near 2^64")

    # The same trap with a zip64 record that exists, whose central directory offset wraps.
    rec = struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, 1, 1, 0, 2**64 - 40)
    npz_base = zip_bytes([("x.npy", b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }"
                           .ljust(128 - 1, b" ") + b"\n" + floats(1, 2))])
    eocd = end_record_offset(npz_base)
    rec_at = eocd + 22
    fake = rec + struct.pack("<IIQI", 0x07064B50, 0, rec_at, 1)
    fake += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, 0, 0xFFFFFFFF, 0)
    data = npz_base[: eocd + 20] + struct.pack("<H", len(fake)) + fake
    add("fuzz_npz", "zip_cd_offset_wraps.npz", data, inspect_quantize(4, "zip"),
        "a zip64 record in the comment whose central directory offset is 2^64 - 40")

    # 2. The dense copy of a stride-0 view of 2^62 + 1 elements: its size in bytes wrapped to
    # 4, and copying wrote past the buffer.
    data = torch_zip([("w", "0", 1, 0, [HUGE + 1], [0])], {"0": floats(1)})
    add("fuzz_torch_zip", "view_dense_size_wraps.pt", data, inspect_quantize(4, "too large"),
        "a broadcast view of 2^62 + 1 elements of one float: 4 bytes after wrapping")

    # 3. View bounds in wrapping arithmetic: a storage offset that puts the view 16 bytes
    # before its storage (quantize used to succeed with the zip header's bytes).
    data = torch_zip([("w", "0", 4, HUGE - 4, [2, 2], [2, 1])], {"0": floats(1, 2, 3, 4)})
    add("fuzz_torch_zip", "view_offset_wraps.pt", data, inspect_quantize(4, "reaches past the end of its storage"),
        "storage offset 2^62 - 4: (offset + extent) * 4 wraps to 0")
    # A stride so large that the view's extent wraps.
    data = torch_zip([("w", "0", 4, 0, [3, 2], [2**63 - 1, 1])], {"0": floats(1, 2, 3, 4)})
    add("fuzz_torch_zip", "view_stride_wraps.pt", data, inspect_quantize(4, "too large"),
        "a stride of 2^63 - 1: the view's last offset wraps")
    # A legacy storage view at offset -2^30 of a 16-byte storage, read by a tensor of 2^30 + 16
    # bytes: (offset + extent) wrapped to 16, and the copy read the gigabyte before the storage.
    data = torch_legacy([("w", "0", 16, 0, [2**30 + 16], [1], (-(2**30), 2**30 + 16))], {"0": bytes(range(16))},
                        element=1, storage="ByteStorage")
    add("fuzz_torch_legacy", "legacy_negative_view_offset.pt", data, inspect_quantize(4, "storage view"),
        "a legacy storage view at offset -2^30, read by a tensor of 2^30 + 16 bytes")
    # A legacy storage view of elements [1, 3) read by a tensor of 3 elements: inside the root
    # storage, so it used to pass, but past the end of the view the tensor is built on.
    data = torch_legacy([("w", "0", 4, 0, [3], [1], (1, 2))], {"0": floats(1, 2, 3, 4)})
    add("fuzz_torch_legacy", "legacy_tensor_past_view.pt", data, inspect_quantize(4, "reaches past the end"),
        "a 3-element tensor on a 2-element legacy storage view")
    # A legacy storage view that runs past its root storage.
    data = torch_legacy([("w", "0", 4, 0, [2], [1], (3, 2))], {"0": floats(1, 2, 3, 4)})
    add("fuzz_torch_legacy", "legacy_view_past_storage.pt", data, inspect_quantize(4, "storage view"),
        "a legacy storage view of elements [3, 5) of a 4-element storage")

    # 4. 2^62 elements in 0 bytes: accepted, and quantize wrote a container wq cannot read.
    data = torch_zip([("w", "0", 0, 0, [HUGE], [1])], {"0": b""})
    add("fuzz_torch_zip", "huge_shape_empty_storage.pt", data, inspect_quantize(4, "too large"),
        "shape (2^62,) of F32 from an empty storage: (0 + 2^62) * 4 wraps to 0")
    data = paddle([("w", lambda p: ndarray(p, [HUGE], b""))])
    add("fuzz_pdparams", "huge_shape_empty.pdparams", data, inspect_quantize(4, "2^64"),
        "a numpy array of shape (2^62,) float32 holding 0 bytes")

    # 5. A Paddle big parameter declared 1000 x 1000 with one slice of 2 x 2.
    def big_param_info(p):
        p.op(b"}").str("w").op(b"}").str("OriginShape").ints([1000, 1000]).op(b"s")
        p.str("slices").op(b"]").str("w@@.0").op(b"a").op(b"s").op(b"s")

    data = paddle([("UnpackBigParamInfor@@", big_param_info), ("w@@.0", lambda p: ndarray(p, [2, 2], floats(1, 2, 3, 4)))])
    add("fuzz_pdparams", "big_param_one_slice.pdparams", data, inspect_quantize(4, "slices hold 16 bytes"),
        "OriginShape (1000, 1000) with one slice of 16 bytes")

    # 6. Memory. A pickle whose size grows linearly and whose memory grew quadratically: one
    # list of 12,000 pairs (memo references), passed to OrderedDict 8,000 times.
    p = Pickle().op(b"}")
    p.put()
    p.glob("collections", "OrderedDict")
    od = p.put()
    p.op(b"0]")
    pairs = p.put()
    p.str("k").op(b"N").op(b"\x86")
    pair = p.put()
    p.op(b"0").mark()
    for _ in range(12000):
        p.get(pair)
    p.op(b"e0")  # the list of pairs is filled and popped: only the dict stays
    for i in range(8000):
        p.get(od).get(pairs).op(b"\x85R0")
    data = p.stop()
    add("fuzz_pdparams", "quadratic_ordereddict.pdparams", data, inspect_quantize(4, "more memory"),
        "OrderedDict(pairs) 8,000 times over one list of 12,000 pairs: 96 M entries from 80 KB")
    # The same with one long string encoded 4,000 times by _codecs.encode.
    p = Pickle().op(b"}")
    p.put()
    p.glob("_codecs", "encode")
    enc = p.put()
    p.op(b"0").str("a" * 30000)
    text = p.put()
    p.op(b"0").str("latin1")
    codec = p.put()
    p.op(b"0")
    for _ in range(4000):
        p.get(enc).get(text).get(codec).op(b"\x86R0")
    data = p.stop()
    add("fuzz_pdparams", "quadratic_codecs_encode.pdparams", data, inspect_quantize(4, "more memory"),
        "_codecs.encode of one 30,000-character string 4,000 times: 120 MB from 60 KB")
    # A dict referring to the same dict twice, 60 levels deep: 2^60 paths to walk.
    p = Pickle()
    p.op(b"}")
    prev = p.put()
    p.op(b"0")
    for level in range(60):
        p.op(b"}").mark().str("a").get(prev).str("b").get(prev).op(b"u")
        prev = p.put()
        p.op(b"0")
    p.get(prev)
    data = p.stop()
    add("fuzz_pdparams", "exponential_state_dict.pdparams", data, inspect_quantize(4, "too many times"),
        "60 nested dicts, each referring to the one below twice: 2^60 paths")

    # A 370-byte .pt whose data.pkl claims 4 GiB uncompressed from a few deflated bytes.
    raw = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = raw.compress(b"\x80\x02}q\x00.") + raw.flush()
    data = zip_bytes([("archive/data.pkl", b"\x80\x02}q\x00."), ("archive/version", b"3\n")], compress=True)
    # Rewrite the uncompressed size of data.pkl in its local header and central directory.
    for sig, size_at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.index(sig)
        data[at + size_at: at + size_at + 4] = struct.pack("<I", 0xFFFFFFF0)
    add("fuzz_torch_zip", "zip_claims_4g_pickle.pt", data, inspect_quantize(4, "more than deflate can produce"),
        "data.pkl deflated to a few bytes whose headers claim 4 GiB")
    # A broadcast view of one float as a 16 GiB tensor: refused by the expansion limit.
    data = torch_zip([("w", "0", 1, 0, [2**16, 2**16], [0, 0])], {"0": floats(1)})
    add("fuzz_torch_zip", "broadcast_16g.pt", data, inspect_quantize(8, "expanded views"),
        "a stride-0 view of one float as 65536 x 65536 (16 GiB dense)")
    # A legitimate broadcast (4 MiB from one float) is read, unless the limit is lowered.
    data = torch_zip([("w", "0", 1, 0, [1024, 1024], [0, 0])], {"0": floats(0.5)})
    add("fuzz_torch_zip", "broadcast_4m.pt", data,
        [("inspect", 0, ""), ("quantize", 0, ""), ("inspect --max-view-expansion 1M", 8, "expanded views"),
         ("quantize --max-view-expansion 1M", 8, "--max-view-expansion")],
        "a stride-0 view of one float as 1024 x 1024 (4 MiB dense): within the default limit")

    # 100 broadcast views of 2 MiB each: --keep-nonfinite's check used to hold every dense copy
    # at once (200 MiB); now one at a time.
    data = torch_zip([("w%d" % i, "0", 1, 0, [512, 1024], [0, 0]) for i in range(100)], {"0": floats(0.25)})
    add("fuzz_torch_zip", "broadcast_100_views.pt", data,
        [("quantize", 0, ""), ("quantize --keep-nonfinite", 0, "")],
        "100 stride-0 views of one float, 2 MiB each: read one at a time, also by --keep-nonfinite")

    # 7. A storage whose deflated bytes are corrupt: tensor() fails, and must fail again when
    # retried (it used to return a view of an empty buffer kept from the failed read).
    good = torch_zip([("w", "0", 4, 0, [2, 2], [2, 1])], {"0": floats(1, 2, 3, 4)})
    members = []
    with zipfile.ZipFile(io.BytesIO(bytes(good))) as z:
        for info in z.infolist():
            members.append((info.filename, z.read(info)))
    data = zip_bytes(members, compress=True)
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as z:
        info = z.getinfo("archive/data/0")
        start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start: start + info.compress_size] = b"\xff" * info.compress_size  # an invalid deflate block
    add("fuzz_torch_zip", "corrupt_deflated_storage.pt", data, [("inspect", 0, ""), ("quantize", 4, "corrupt")],
        "a deflated storage record whose data is not deflate")

    # 8. Containers. A shape of 2^61 elements at 8 bits with no code bytes: the code size
    # (2^61 * 8 + 7) / 8 wrapped to 0, verify passed, decode died with std::length_error.
    meta = {"w": affine_meta([2**61], 8, 0)}
    parts = [("w.__codes", "U8", [0], b""), ("w.__scale", "F32", [1], floats(1)), ("w.__min", "F32", [1], floats(0))]
    meta["w"]["xxh3"] = xxh3_of(floats(1), floats(0))
    data = container(meta, parts)
    add("fuzz_container", "codes_size_wraps.wq.safetensors", data,
        [("inspect", 4, "w.__codes"), ("verify", 4, "w.__codes"), ("decode", 4, "w.__codes")],
        "an affine tensor of 2^61 elements at 8 bits whose codes part is empty")
    # bits 4294967300, read as 4 before.
    meta = {"w": affine_meta([2, 2], 4294967300, 2)}
    parts = [("w.__codes", "U8", [2], b"\x10\x32"), ("w.__scale", "F32", [2], floats(1, 1)),
             ("w.__min", "F32", [2], floats(0, 0))]
    data = container(meta, parts)
    add("fuzz_container", "bits_truncated.wq.safetensors", data,
        [("inspect", 4, "4294967300"), ("verify", 4, "4294967300"), ("decode", 4, "4294967300")],
        "\"bits\": 4294967300, which int truncation read as 4")
    data = container({"w": dict(affine_meta([2, 2], 4, 2))}, parts, version=4294967297)
    add("fuzz_container", "version_truncated.wq.safetensors", data,
        [("inspect", 4, "4294967297"), ("verify", 4, "4294967297"), ("decode", 4, "4294967297")],
        "\"version\": 4294967297, which int truncation read as 1")

    # Two tensors of one name (a pickle may repeat a key; nested dicts flatten to dotted names).
    data = paddle([("a.b", lambda p: ndarray(p, [2, 2], floats(1, 2, 3, 4))),
                   ("a", lambda p: (p.op(b"}").str("b"), ndarray(p, [2, 2], floats(1, 2, 3, 4)), p.op(b"s")))])
    add("fuzz_pdparams", "duplicate_names.pdparams", data, inspect_quantize(4, "two tensors are named 'a.b'"),
        "'a.b' at the top and 'b' inside 'a'")
    # Tensor names that are not UTF-8 (they end up in the container's JSON, whose writer
    # throws: "internal error", exit 1): a pickle string in an overlong encoding (which the
    # unpickler's own check lets through), and an .npz member name with the UTF-8 flag set.
    data = zip_bytes([("w.npy", b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }"
                       .ljust(128 - 1, b" ") + b"\n" + floats(1, 2))])
    for sig, name_at in ((b"PK\x03\x04", 30), (b"PK\x01\x02", 46)):
        at = data.index(sig)
        data[at + name_at] = 0xFF  # "w.npy" -> "\xff.npy"
        flags_at = at + (6 if sig == b"PK\x03\x04" else 8)
        data[flags_at + 1] |= 0x08  # general purpose bit 11: the name is UTF-8
    add("fuzz_npz", "name_not_utf8.npz", data, inspect_quantize(4, "not a readable zip archive"),
        "a member named b'\\xff.npy', flagged as UTF-8 (libzip's consistency check refuses it)")
    p = Pickle().op(b"}")
    p.op(b"X" + struct.pack("<I", 3) + b"w\xc0\x80")  # 'w' + an overlong NUL
    ndarray(p, [2], floats(1, 2))
    data = p.op(b"s").stop()
    add("fuzz_pdparams", "name_overlong_utf8.pdparams", data, inspect_quantize(4, "not valid UTF-8"),
        "a tensor named 'w' + C0 80 (an overlong NUL, which JSON cannot hold)")
    return files


# Inputs the fuzzers found (fuzz/README.md), kept as they were found: (target, name, checks,
# why). "keep" passes the file's text as a --keep pattern to quantize the bundled example.
FOUND = [
    ("fuzz_rules", "found-keep-non-utf8-pattern", [("keep", 2, "not valid UTF-8")],
     "a --keep pattern that is not UTF-8: rule_json().dump() threw (internal error, exit 1)"),
    ("fuzz_torch_zip", "found-null-view.pt", inspect_quantize(4, "zip member"),
     "a stored record whose sizes differ: a null view of a non-empty tensor"),
    ("fuzz_torch_zip", "found-claimed-size-2g.pt", inspect_quantize(4, "zip member"),
     "a record whose header claims 2 GiB: allocated before reading"),
    ("fuzz_torch_zip", "found-archive-leak.pt", inspect_quantize(4, "zip member"),
     "an archive rejected after libzip opened it: the archive leaked"),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("--out", default=os.path.join(here, "..", "fuzz", "regressions"))
    args = parser.parse_args()
    # Entries for files this script does not make (inputs found by the fuzzers, added by hand
    # under fuzz/regressions/<target>/) are kept.
    manifest_path = os.path.join(args.out, "manifest.json")
    made = build()
    names = {target + "/" + name for target, name, _, _, _ in made} | {t + "/" + n for t, n, _, _ in FOUND}
    manifest = []
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            manifest = [e for e in json.load(f)["files"] if e["file"] not in names]
    for target, name, checks, why in FOUND:
        path = os.path.join(args.out, target, name)
        if not os.path.exists(path):
            raise SystemExit("missing found input " + path)
        with open(path, "rb") as f:
            made.append((target, name, f.read(), checks, why))
    for target, name, data, checks, why in made:
        os.makedirs(os.path.join(args.out, target), exist_ok=True)
        path = os.path.join(args.out, target, name)
        with open(path, "wb") as f:
            f.write(data)
        manifest.append({"file": target + "/" + name, "bytes": len(data), "why": why,
                         "checks": [{"command": c.split()[0], "args": c.split()[1:], "exit": e, "message": m}
                                    for c, e, m in checks]})
    manifest.sort(key=lambda e: e["file"])
    with open(manifest_path, "w") as f:
        json.dump({"files": manifest}, f, indent=1)
        f.write("\n")
    print("wrote %d files to %s (%d in the manifest)" % (len(made), os.path.normpath(args.out), len(manifest)))


if __name__ == "__main__":
    main()
