"""ggml's own quantizers and decoders, called in the real library, as the independent reference
for wq's ggml block types.

The library is `libggml-base.so` of the npm package `@node-llama-cpp/linux-x64` (llama.cpp
built for the CPU; tests/npm/package-lock.json pins it). Its `quantize_row_*_ref` functions are
what `llama-quantize` runs when no importance matrix is given, and `dequantize_row_*` is how
ggml reads the blocks back. This module only loads and calls them (ctypes, numpy); it
reimplements nothing.

    oracle = GgmlOracle()                      # or GgmlOracle("/path/to/libggml-base.so")
    blocks = oracle.quantize("Q4_K", x)        # float32 array, len % block == 0 -> bytes
    values = oracle.dequantize("Q4_K", blocks) # -> float32 array
"""
import ctypes
import glob
import os

import numpy as np

# name: (ggml type id, elements per block, bytes per block, C name suffix)
TYPES = {
    "Q4_0": (2, 32, 18, "q4_0"),
    "Q4_1": (3, 32, 20, "q4_1"),
    "Q5_0": (6, 32, 22, "q5_0"),
    "Q5_1": (7, 32, 24, "q5_1"),
    "Q8_0": (8, 32, 34, "q8_0"),
    "Q2_K": (10, 256, 84, "q2_K"),
    "Q3_K": (11, 256, 110, "q3_K"),
    "Q4_K": (12, 256, 144, "q4_K"),
    "Q5_K": (13, 256, 176, "q5_K"),
    "Q6_K": (14, 256, 210, "q6_K"),
}

_HERE = os.path.dirname(os.path.abspath(__file__))
_DEFAULT_GLOB = os.path.join(_HERE, "..", "npm", "node_modules", "@node-llama-cpp", "linux-x64", "bins",
                             "linux-x64", "libggml-base.so")


def find_library():
    """The path of libggml-base.so: $WQ_GGML_BASE_LIB, else tests/npm's install; None if absent."""
    env = os.environ.get("WQ_GGML_BASE_LIB")
    if env:
        return env
    found = glob.glob(_DEFAULT_GLOB)
    return os.path.abspath(found[0]) if found else None


class GgmlOracle:
    def __init__(self, path=None):
        path = path or find_library()
        if not path or not os.path.exists(path):
            raise FileNotFoundError("libggml-base.so not found: run scripts/install-npm-tools.sh "
                                    "or set WQ_GGML_BASE_LIB")
        self.path = path
        self._lib = ctypes.CDLL(path)
        self._quantize = {}
        self._dequantize = {}
        for name, (_, _, _, suffix) in TYPES.items():
            q = getattr(self._lib, "quantize_row_%s_ref" % suffix)
            q.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
            q.restype = None
            d = getattr(self._lib, "dequantize_row_%s" % suffix)
            d.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
            d.restype = None
            self._quantize[name] = q
            self._dequantize[name] = d

    def quantize(self, type_name, x):
        _, block, size, _ = TYPES[type_name]
        x = np.ascontiguousarray(x, dtype="<f4")
        if x.size % block:
            raise ValueError("%s needs a multiple of %d elements, got %d" % (type_name, block, x.size))
        out = np.zeros(x.size // block * size, dtype=np.uint8)
        self._quantize[type_name](x.ctypes.data, out.ctypes.data, x.size)
        return out.tobytes()

    def dequantize(self, type_name, blocks):
        _, block, size, _ = TYPES[type_name]
        src = np.frombuffer(blocks, dtype=np.uint8).copy()
        if src.size % size:
            raise ValueError("%s data must be whole blocks of %d bytes" % (type_name, size))
        out = np.zeros(src.size // size * block, dtype="<f4")
        self._dequantize[type_name](src.ctypes.data, out.ctypes.data, out.size)
        return out
