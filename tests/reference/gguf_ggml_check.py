"""GGUF files written by wq-gpu, read back by ggml's own loader, byte for byte.

usage: gguf_ggml_check.py WQ_GPU

For every type --type accepts, wq-gpu quantizes a safetensors checkpoint (made here with numpy:
weights with rows of 256 and 512, a matrix whose rows are whole blocks of 32 but not of 256, one
whose rows are neither, an F16 weight, 1-d vectors, an int64 counter) into GGUF. Then ggml's
gguf_init_from_file() of libggml-base.so (npm @node-llama-cpp/linux-x64, pinned in tests/npm)
loads the file with its strict checks and reads every tensor's data, and:
- each quantized tensor's bytes must equal ggml's quantize_row_*_ref of the source values (what
  llama-quantize writes without an importance matrix), in the type wq chose (the fallbacks
  included);
- F16/F32 tensors must equal the source rounded once; 1-d and integer tensors are unchanged;
- the shapes are the source's in ggml order, and general.file_type and
  general.quantization_version are set.
A GGUF in, GGUF out run (F32 -> Q4_K) must keep every metadata pair and the tensor order.
Exit 77 (skipped) when libggml-base.so is not installed (scripts/install-npm-tools.sh).
"""
import ctypes
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ggml_oracle  # noqa: E402

GGML_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 10: "Q2_K",
              11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 27: "I64", 30: "BF16"}
FALLBACK = {"Q2_K": "Q4_0", "Q3_K": "Q4_0", "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}
FILE_TYPE = {"F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9, "Q2_K": 10,
             "Q3_K": 11, "Q4_K": 14, "Q5_K": 16, "Q6_K": 18}


class GgufInitParams(ctypes.Structure):
    _fields_ = [("no_alloc", ctypes.c_bool), ("ctx", ctypes.POINTER(ctypes.c_void_p))]


class Ggml:
    def __init__(self, path):
        lib = ctypes.CDLL(path)
        self.lib = lib
        lib.gguf_init_from_file.argtypes = [ctypes.c_char_p, GgufInitParams]
        lib.gguf_init_from_file.restype = ctypes.c_void_p
        for name, res, args in [
            ("gguf_get_n_tensors", ctypes.c_int64, [ctypes.c_void_p]),
            ("gguf_get_n_kv", ctypes.c_int64, [ctypes.c_void_p]),
            ("gguf_get_key", ctypes.c_char_p, [ctypes.c_void_p, ctypes.c_int64]),
            ("gguf_get_tensor_name", ctypes.c_char_p, [ctypes.c_void_p, ctypes.c_int64]),
            ("gguf_get_tensor_type", ctypes.c_int, [ctypes.c_void_p, ctypes.c_int64]),
            ("gguf_find_key", ctypes.c_int64, [ctypes.c_void_p, ctypes.c_char_p]),
            ("gguf_get_val_u32", ctypes.c_uint32, [ctypes.c_void_p, ctypes.c_int64]),
            ("gguf_free", None, [ctypes.c_void_p]),
            ("ggml_free", None, [ctypes.c_void_p]),
            ("ggml_get_tensor", ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_char_p]),
            ("ggml_get_data", ctypes.c_void_p, [ctypes.c_void_p]),
            ("ggml_nbytes", ctypes.c_size_t, [ctypes.c_void_p]),
            ("ggml_n_dims", ctypes.c_int, [ctypes.c_void_p]),
        ]:
            f = getattr(lib, name)
            f.restype = res
            f.argtypes = args

    def load(self, path):
        """Every tensor as (type name, ne, bytes) in file order, and the KV keys; raises if ggml refuses."""
        ctx = ctypes.c_void_p()
        gguf = self.lib.gguf_init_from_file(path.encode(), GgufInitParams(False, ctypes.pointer(ctx)))
        if not gguf:
            raise RuntimeError("ggml refused %s (its reason is on stderr)" % path)
        try:
            tensors = []
            for i in range(self.lib.gguf_get_n_tensors(gguf)):
                name = self.lib.gguf_get_tensor_name(gguf, i).decode()
                t = self.lib.ggml_get_tensor(ctx, name.encode())
                # struct ggml_tensor: type (4 bytes, padded to 8), buffer pointer, then int64 ne[4].
                ne = list(struct.unpack_from("<4q", ctypes.string_at(t + 16, 32)))
                data = ctypes.string_at(self.lib.ggml_get_data(t), self.lib.ggml_nbytes(t))
                tensors.append((name, GGML_TYPES.get(self.lib.gguf_get_tensor_type(gguf, i), "?"),
                                ne[:max(1, self.lib.ggml_n_dims(t))], data))
            kv = {}
            for i in range(self.lib.gguf_get_n_kv(gguf)):
                kv[self.lib.gguf_get_key(gguf, i).decode()] = i
            u32 = {k: self.lib.gguf_get_val_u32(gguf, i) for k, i in kv.items()
                   if k in ("general.file_type", "general.quantization_version")}
            return tensors, list(kv), u32
        finally:
            self.lib.gguf_free(gguf)
            if ctx:
                self.lib.ggml_free(ctx)


def write_safetensors(path, tensors):
    header, offset, blobs = {}, 0, []
    for name, a in tensors:
        dtype = {"float32": "F32", "float16": "F16", "int64": "I64"}[str(a.dtype)]
        b = np.ascontiguousarray(a).tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def source_tensors():
    rng = np.random.default_rng(2026)
    w = lambda *s: (rng.standard_t(4, s) * 0.02).astype(np.float32)  # noqa: E731
    return [
        ("blk.0.attn_q.weight", w(64, 256)),
        ("blk.0.ffn_up.weight", w(24, 512)),
        ("blk.0.rows_of_96.weight", w(16, 96)),       # whole blocks of 32, not of 256
        ("blk.0.rows_of_100.weight", w(8, 100)),      # neither: F16
        ("blk.0.conv.weight", w(4, 2, 3, 64)),        # 4-d, rows of 64
        ("blk.0.half.weight", w(8, 256).astype(np.float16)),
        ("blk.0.attn_norm.weight", w(256)),
        ("step", np.array(7, dtype=np.int64)),
    ]


def expected_type(requested, rows):
    if requested in ("F32", "F16", "BF16"):
        return requested
    block = 256 if requested.endswith("_K") else 32
    if rows % block == 0:
        return requested
    fallback = FALLBACK.get(requested, requested)
    return fallback if rows % 32 == 0 else "F16"


def check_file(ggml, oracle, path, requested, sources, failures):
    tensors, keys, u32 = ggml.load(path)
    if [t[0] for t in tensors] != [n for n, _ in sources]:
        failures.append("%s: tensor order %s" % (requested, [t[0] for t in tensors]))
        return
    for (name, gtype, ne, data), (_, a) in zip(tensors, sources):
        where = "%s %s" % (requested, name)
        if ne != list(reversed(a.shape)) and not (a.ndim == 0 and ne == [1]):
            failures.append("%s: ne %s for shape %s" % (where, ne, a.shape))
        if a.ndim < 2 or a.dtype == np.int64:  # kept as they are
            want_type = {"float32": "F32", "float16": "F16", "int64": "I64"}[str(a.dtype)]
            want = a.tobytes()
        else:
            want_type = expected_type(requested, a.shape[-1])
            x = a.astype(np.float32).ravel()
            if want_type == "F32":
                want = x.tobytes()
            elif want_type == "F16":
                want = x.astype(np.float16).tobytes()
            elif want_type == "BF16":
                want = None  # numpy has no bfloat16: the type is checked, the bytes by the backend suites
            else:
                want = oracle.quantize(want_type, x)
        if gtype != want_type:
            failures.append("%s: type %s, expected %s" % (where, gtype, want_type))
        elif want is not None and data != want:
            failures.append("%s: %s bytes differ from ggml's" % (where, gtype))
    if requested in FILE_TYPE and u32.get("general.file_type") != FILE_TYPE[requested]:
        failures.append("%s: general.file_type %s" % (requested, u32.get("general.file_type")))
    quantized = requested not in ("F32", "F16", "BF16")
    if quantized and u32.get("general.quantization_version") != 2:
        failures.append("%s: general.quantization_version %s" % (requested, u32.get("general.quantization_version")))
    return keys


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    wq = sys.argv[1]
    lib = ggml_oracle.find_library()
    if not lib or not os.path.exists(lib):
        print("SKIP: libggml-base.so not installed (scripts/install-npm-tools.sh installs it)")
        return 77
    ggml = Ggml(lib)
    oracle = ggml_oracle.GgmlOracle(lib)
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        sources = source_tensors()
        src = os.path.join(tmp, "model.safetensors")
        write_safetensors(src, sources)
        for requested in ["F32", "F16", "BF16"] + list(ggml_oracle.TYPES):
            out = os.path.join(tmp, requested + ".gguf")
            subprocess.run([wq, "quantize", src, "-o", out, "--type", requested, "--backend", "cpu", "-q"], check=True)
            check_file(ggml, oracle, out, requested, sources, failures)
            print("%-5s %s" % (requested, "ok" if not failures else "FAILED"))
            if failures:
                break
        # GGUF in, GGUF out: the F32 file becomes Q4_K; its pairs and order stay.
        f32 = os.path.join(tmp, "F32.gguf")
        q4 = os.path.join(tmp, "requant.gguf")
        subprocess.run([wq, "quantize", f32, "-o", q4, "--type", "Q4_K", "--backend", "cpu", "-q"], check=True)
        keys_in = Ggml.load(ggml, f32)[1]
        keys_out = check_file(ggml, oracle, q4, "Q4_K", sources, failures)
        if keys_out is not None and [k for k in keys_in] != [k for k in keys_out if k in keys_in]:
            failures.append("GGUF -> GGUF: metadata keys %s became %s" % (keys_in, keys_out))
        print("GGUF -> GGUF %s" % ("ok" if not failures else "FAILED"))
    for f in failures:
        print("FAIL", f)
    print("%d failures" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
