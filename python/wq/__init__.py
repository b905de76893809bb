"""wq: weight quantization of neural-network checkpoints, through the C++ library libwqcuda.

    import torch, wq
    wq.save(model.state_dict(), "model.wq.safetensors", bits=4)      # quantize, write atomically
    model.load_state_dict(wq.load("model.wq.safetensors", framework="torch"))

The file is a WQ container (docs/container-format.md), which `wq-gpu decode/inspect/verify`
read too. Arrays go to the library in place (numpy arrays, CPU torch tensors, anything with
the buffer protocol or `.numpy()`); only arrays that are not C-contiguous little-endian are
copied first. Long calls release the GIL, and Ctrl-C stops them with KeyboardInterrupt,
leaving no partial file. Errors are wq.Error subclasses, one per library error code.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import _wq

__version__: str = _wq.__version__

__all__ = [
    "__version__", "save", "load", "open", "quantize", "dequantize", "Quantized", "Reader",
    "quantize_file", "quantize_tree", "decode_file", "verify", "inspect",
    "Error", "UsageError", "InputMissingError", "BadFormatError", "BadDataError", "OutputError",
    "IntegrityError", "UnsupportedError", "CancelledError", "InternalError",
]


# ---- errors --------------------------------------------------------------------------------


class Error(Exception):
    """A libwqcuda error. The message names the file and the tensor; `code` is the library's
    short name for it ("usage", "bad-format", ...), the same as the CLI's JSON reports."""

    code: str = "internal"


class UsageError(Error, ValueError):
    """An invalid argument: bits outside 1..8, an unknown method, a wrong buffer size, ..."""


class InputMissingError(Error, FileNotFoundError):
    """An input file does not exist or cannot be read."""


class BadFormatError(Error):
    """An input is not a valid checkpoint or container (truncated, hostile, ...)."""


class BadDataError(Error):
    """Values that cannot be encoded: NaN/Inf, a range that overflows, F16 scales that overflow."""


class OutputError(Error, OSError):
    """The output cannot be written (folder missing or read-only, disk full, same as the input)."""


class IntegrityError(Error):
    """A container's checksum or metadata does not match its data."""


class UnsupportedError(Error):
    """Valid input that this build cannot handle (e.g. backend="cuda" without a GPU)."""


class CancelledError(Error):
    """The operation was cancelled."""


class InternalError(Error):
    """A bug in wq."""


_wq.set_error_types({2: UsageError, 3: InputMissingError, 4: BadFormatError, 5: BadDataError, 6: OutputError,
                     7: IntegrityError, 8: UnsupportedError, 130: CancelledError, 1: InternalError})


# ---- arrays --------------------------------------------------------------------------------

_NUMPY_TO_WQ = {
    np.dtype("float64"): "F64", np.dtype("float32"): "F32", np.dtype("float16"): "F16",
    np.dtype("int64"): "I64", np.dtype("int32"): "I32", np.dtype("int16"): "I16", np.dtype("int8"): "I8",
    np.dtype("uint8"): "U8", np.dtype("bool"): "BOOL",
}
_WQ_TO_NUMPY = {v: k for k, v in _NUMPY_TO_WQ.items()}


def _is_torch_tensor(value: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def _as_buffer(value: Any, what: str) -> Tuple[str, Tuple[int, ...], Any]:
    """(wq dtype name, shape, buffer) of an array-like, without a copy where the library can
    read it as it is: C-contiguous, little-endian."""
    if _is_torch_tensor(value):
        import torch
        t = value.detach()
        if t.device.type != "cpu":
            raise UsageError(f"{what}: a torch tensor on {t.device}; move it to the CPU first (.cpu())")
        if not t.is_contiguous():
            t = t.contiguous()
        if t.dtype == torch.bfloat16:  # numpy has no bfloat16: hand over its bits
            return "BF16", tuple(t.shape), t.view(torch.int16).numpy()
        value = t.numpy()
    elif not isinstance(value, np.ndarray):
        if hasattr(value, "numpy") and callable(value.numpy):  # Paddle, TensorFlow eager, ...
            value = value.numpy()
        value = np.asarray(value)
    dtype = value.dtype
    if dtype.byteorder == ">" or (dtype.byteorder == "=" and sys.byteorder == "big"):
        value = value.astype(dtype.newbyteorder("<"))
        dtype = value.dtype
    name = _NUMPY_TO_WQ.get(dtype.newbyteorder("="))
    if name is None:
        raise UsageError(f"{what}: dtype {dtype} is not one wq reads "
                         "(float64/32/16, bfloat16 via torch, int64/32/16/8, uint8, bool)")
    if not value.flags.c_contiguous:
        value = np.ascontiguousarray(value)
    return name, tuple(value.shape), value


def _spec(method: str, bits: int, granularity: str, group_size: int, scale_dtype: str) -> Dict[str, Any]:
    return {"method": method, "bits": int(bits), "granularity": granularity, "group_size": int(group_size),
            "scale_dtype": scale_dtype}


def _empty(dtype: str, shape: Tuple[int, ...], framework: str):
    """A fresh array of a tensor's dtype and shape, and the buffer the library writes into."""
    if framework == "torch":
        import torch
        tdtype = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                  "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
                  "U8": torch.uint8, "BOOL": torch.bool}[dtype]
        t = torch.empty(shape, dtype=tdtype)
        return t, (t.view(torch.int16) if dtype == "BF16" else t).numpy()
    if framework != "numpy":
        raise UsageError(f"framework must be 'numpy' or 'torch', not {framework!r}")
    if dtype == "BF16":
        raw = np.empty(shape, dtype=np.uint16)
        return raw, raw
    a = np.empty(shape, dtype=_WQ_TO_NUMPY[dtype])
    return a, a


def _finish(array, dtype: str, framework: str):
    if framework == "numpy" and dtype == "BF16":  # numpy has no bfloat16: widen exactly to float32
        return (array.astype(np.uint32) << 16).view(np.float32)
    return array


# ---- files ---------------------------------------------------------------------------------


def save(state_dict: Mapping[str, Any], path: str | os.PathLike, *, bits: int = 8, method: str = "minmax",
         granularity: str = "channel", group_size: int = 128, scale_dtype: str = "f32",
         rules: Optional[Mapping[str, Any]] = None, all: bool = False, keep_nonfinite: bool = False,
         backend: str = "auto", progress: Optional[Callable[[int, int, str], None]] = None,
         durable: bool = True) -> Dict[str, Any]:
    """Quantizes a state dict into a WQ container at `path`, as `wq-gpu quantize` does, with
    the CLI's defaults (8 bits per channel; `granularity="group"` uses `group_size`).

    Values: numpy arrays, CPU torch tensors (any dtype wq reads, bfloat16 included), or
    anything with `.numpy()` or the array interface. Floating tensors of 2 or more dimensions
    are quantized with the method (minmax, mse, symmetric; or fp16/bf16 casts); 0-d and 1-d
    ones (biases, norms) and integer tensors are stored as they are, unless `all=True`.
    `rules` maps glob patterns to "keep" or to a dict of changes ({"bits": 4}); the first
    matching pattern decides. The file appears only complete (temporary file, fsync, rename);
    `durable=False` skips the fsync, as torch.save and pickle.dump do: still never seen
    half-written, but a crash of the machine may lose it (faster by the disk's write time).
    Returns the report: per tensor its encoding, bytes and SQNR. `progress(done, total,
    tensor)` is called between tensors and chunks.
    """
    tensors = []
    torch_only = bool(state_dict)
    for name, value in state_dict.items():
        torch_only = torch_only and _is_torch_tensor(value)
        dtype, shape, buf = _as_buffer(value, f"tensor '{name}'")
        tensors.append((str(name), dtype, shape, buf))
    return _wq.save(tensors, os.fspath(path), _spec(method, bits, granularity, group_size, scale_dtype), _rules(rules),
                    all, keep_nonfinite, "torch" if torch_only else "safetensors", backend, progress, durable)


def _rules(rules: Optional[Mapping[str, Any]]):
    """{pattern: "keep" | {changes}} as the library's (pattern, changes or None, text) list."""
    out = []
    for pattern, change in (rules or {}).items():
        if change == "keep":
            out.append((pattern, None, f"{pattern}=keep"))
        elif isinstance(change, Mapping):
            text = ",".join(f"{k}:{v}" for k, v in change.items())
            out.append((pattern, dict(change), f"{pattern}={text}"))
        else:
            raise UsageError(f"rule {pattern!r}: 'keep' or a dict of changes such as {{'bits': 4}}, not {change!r}")
    return out


def _output_settings(to, type, scheme, ignore, bits, method, granularity, group_size, scale_dtype, rules, all,
                     allow_requantize):
    """(spec, format) for the extension from quantize_file()'s and quantize_tree()'s arguments,
    with the ones that do not apply to the output format refused."""
    given = {k for k, v in (("bits", bits), ("method", method), ("granularity", granularity),
                            ("group_size", group_size), ("scale_dtype", scale_dtype)) if v is not None}
    if to not in ("wq", "gguf", "compressed-tensors"):
        raise UsageError(f"to must be 'wq', 'gguf' or 'compressed-tensors', not {to!r}")
    if to != "compressed-tensors" and (scheme is not None or ignore):
        raise UsageError(f"{'scheme' if scheme is not None else 'ignore'} is for to='compressed-tensors'")
    channel = False
    if to == "compressed-tensors":
        refused = sorted(given & {"bits", "scale_dtype"}) + (["type"] if type is not None else []) + \
            (["rules"] if rules else []) + (["all"] if all else [])
        if refused:
            raise UsageError(f"{', '.join(refused)} do not apply to compressed-tensors output: the scheme decides "
                             "(bits: W4A16 or W8A16; scales in the model's dtype; modules left out with ignore)")
        if method not in (None, "minmax", "mse"):
            raise UsageError(f"compressed-tensors output takes method 'minmax' or 'mse', not {method!r}")
        if granularity not in (None, "group", "channel"):
            raise UsageError(f"compressed-tensors output takes granularity 'group' or 'channel', not {granularity!r}")
        channel = granularity == "channel"
        if channel and group_size is not None:
            raise UsageError("group_size and granularity='channel': give one")
        spec = {"method": method or "minmax", "group_size": int(group_size or 128)}
    elif to == "gguf" and given - {"method"}:
        raise UsageError(f"{', '.join(sorted(given - {'method'}))}: a GGUF file's ggml type decides them; give "
                         "type= (and method='mse' for wq's search in a legacy type's layout) only")
    else:
        spec = _spec(method or "minmax", 8 if bits is None else bits, granularity or "channel",
                     128 if group_size is None else group_size, scale_dtype or "f32")
    if to == "gguf":
        spec = {"method": method} if method is not None else {}
    fmt = {"to": to, "type": type or "", "scheme": scheme or "W4A16", "ignore": [str(g) for g in ignore],
           "channel": channel, "allow_requantize": bool(allow_requantize)}
    return spec, fmt


def quantize_file(input: str | os.PathLike, output: str | os.PathLike, *, to: Optional[str] = None,
                  type: Optional[str] = None, scheme: Optional[str] = None, ignore: Sequence[str] = (),
                  bits: Optional[int] = None, method: Optional[str] = None, granularity: Optional[str] = None,
                  group_size: Optional[int] = None, scale_dtype: Optional[str] = None,
                  rules: Optional[Mapping[str, Any]] = None, all: bool = False, keep_nonfinite: bool = False,
                  allow_requantize: bool = False, backend: str = "auto",
                  progress: Optional[Callable[[int, int, str], None]] = None) -> Dict[str, Any]:
    """`wq-gpu quantize INPUT -o OUTPUT` on one checkpoint file (or a sharded index), the same
    bytes as the CLI with the same settings. The report as for save().

    to: the output format, as the CLI's --to:
    - "wq" (the default; "gguf" when `output` ends in .gguf): a WQ container, with the options
      of save() (bits 8, minmax, per channel unless given), or ggml blocks with `type`.
    - "gguf": a GGUF file of the ggml `type` ("Q8_0", "Q4_K", "F16", ...) or llama-quantize
      preset ("Q4_K_M", ...); the type decides the bits and layout. method="mse" with Q4_0,
      Q4_1, Q5_0, Q5_1 or Q8_0 (here or into a WQ container) searches each block for the least
      error within the same layout (docs/ggml-types.md §4.1).
    - "compressed-tensors": the `scheme` ("W4A16" by default, "W4A16_ASYM", "W8A16",
      "W8A16_ASYM") in groups of `group_size` (128) or granularity="channel", method "minmax"
      (compressed-tensors' own round to nearest) or "mse"; `ignore` adds module globs to leave
      out. The report's "quantization_config" is the JSON to add to the model's config.json
      (the CLI's tree mode rewrites a whole model folder).
    allow_requantize: quantize tensors the input stores quantized (GGUF blocks,
    compressed-tensors weights) from their decoded values."""
    out = os.fspath(output)
    to = to or ("gguf" if out.lower().endswith(".gguf") else "wq")
    spec, fmt = _output_settings(to, type, scheme, ignore, bits, method, granularity, group_size, scale_dtype, rules,
                                 all, allow_requantize)
    report = _wq.quantize_file(os.fspath(input), out, spec, _rules(rules), all, keep_nonfinite, backend, progress, fmt)
    if "quantization_config" in report:
        import json
        report["quantization_config"] = json.loads(report["quantization_config"])
    return report


def quantize_tree(inputs: str | os.PathLike | Sequence[str | os.PathLike], output: str | os.PathLike, *,
                  to: str = "wq", type: Optional[str] = None, scheme: Optional[str] = None, ignore: Sequence[str] = (),
                  bits: Optional[int] = None, method: Optional[str] = None, granularity: Optional[str] = None,
                  group_size: Optional[int] = None, scale_dtype: Optional[str] = None,
                  rules: Optional[Mapping[str, Any]] = None, all: bool = False, keep_nonfinite: bool = False,
                  allow_requantize: bool = False, jobs: int = 0, shard: Union[None, str, Tuple[int, int]] = None,
                  force: bool = False, copy_unreadable: bool = False, dry_run: bool = False, backend: str = "auto",
                  threads: int = 0, devices: Sequence[int] = (),
                  progress: Optional[Callable[[int, int, str], None]] = None) -> Dict[str, Any]:
    """`wq-gpu quantize DIR -o OUT`: every checkpoint under the input folders (or files) into
    the folder `output`, mirrored, with every other file copied, so that `output` is a complete
    model folder. The settings are quantize_file()'s; `to` is "wq" (a container per checkpoint,
    NAME.wq.safetensors), "gguf" (NAME.gguf, with `type`) or "compressed-tensors" (the model
    folder rewritten for vLLM: same names, config.json with its quantization_config).

    Resumable: each output is journaled (OUT/.wq-journal*.jsonl) once it is in place, and a call
    with the same settings skips what is done and unchanged (force=True redoes it). Ctrl-C stops
    cleanly with nothing half-written; the same call then resumes.
    jobs: files worked on at once (0: one per core, at most 4). threads: CPU threads shared
    among them (0: every core). devices: CUDA devices to spread the jobs over.
    shard: this process's share when several split the tree: "I/N" or (I, N); "env" reads a
    Slurm array or Kubernetes Indexed Job from the environment, as wq-gpu does.
    copy_unreadable: copy files that look like checkpoints but cannot be read as one.
    dry_run: write nothing; the report lists what would be done ("action" per file) with sizes.
    progress(bytes_done, bytes_total, file): the whole tree's input bytes.

    Returns {"files": [...], "totals": {...}, "settings": {...}, "journal": path, "notes": [...]},
    a dict per output file as `wq-gpu quantize --json` reports it."""
    import json
    paths = [os.fspath(inputs)] if isinstance(inputs, (str, os.PathLike)) else [os.fspath(p) for p in inputs]
    if not paths:
        raise UsageError("inputs: give at least one folder or file")
    if to not in ("wq", "gguf", "compressed-tensors"):
        raise UsageError(f"to must be 'wq', 'gguf' or 'compressed-tensors', not {to!r}")
    spec, fmt = _output_settings(to, type, scheme, ignore, bits, method, granularity, group_size, scale_dtype, rules,
                                 all, allow_requantize)
    if isinstance(shard, tuple):
        shard = f"{int(shard[0])}/{int(shard[1])}"
    run = {"backend": backend, "threads": int(threads), "devices": [int(d) for d in devices], "jobs": int(jobs),
           "shard": shard or "", "force": bool(force), "copy_unreadable": bool(copy_unreadable)}
    args = (paths, os.fspath(output), spec, _rules(rules), all, keep_nonfinite, fmt, run)
    if dry_run:
        return _wq.plan_tree(*args)
    report = _wq.quantize_tree(*args, progress)
    report["settings"] = json.loads(report["settings"])
    files = report["files"]
    for f in files:
        f["ratio"] = f["original_bytes"] / f["output_bytes"] if f["output_bytes"] else 0.0
    written = sum(f["action"] != "up to date" for f in files)
    original = sum(f["original_bytes"] for f in files)
    out_bytes = sum(f["output_bytes"] for f in files)
    report["totals"] = {"files": len(files), "written": written, "up_to_date": len(files) - written,
                        "original_bytes": original, "output_bytes": out_bytes,
                        "ratio": original / out_bytes if out_bytes else 0.0,
                        "seconds": sum(f["seconds"] for f in files)}
    return report


def decode_file(input: str | os.PathLike, output: str | os.PathLike, *, format: str = "", backend: str = "auto",
                progress: Optional[Callable[[int, int, str], None]] = None) -> None:
    """`wq-gpu decode`: a WQ container back to a checkpoint of its original tensors, in
    `format` ("safetensors", "pt", "pdparams", "npz"; default: the source's own kind)."""
    _wq.decode_file(os.fspath(input), os.fspath(output), format, backend, progress)


def verify(path: str | os.PathLike, *, progress: Optional[Callable[[int, int, str], None]] = None) -> int:
    """`wq-gpu verify`: recomputes every tensor's checksum of a container; returns how many
    tensors were checked, raises IntegrityError at the first mismatch. `progress(done, total,
    tensor)` gets the stored bytes checked, between tensors; Ctrl-C stops it."""
    return _wq.verify(os.fspath(path), progress)


def inspect(path: str | os.PathLike) -> Dict[str, Any]:
    """What a container or checkpoint holds: its metadata (format, producer, source; per
    tensor of a container its encoding), its tensors' names, dtypes and shapes, and for a GGUF
    (or a container made from one) its metadata pairs under "gguf_metadata", as (key, type,
    value) text the way `wq-gpu inspect` shows them."""
    with Reader(path) as r:
        info = r.metadata()
        info["shapes"] = {name: {"dtype": r.dtype(name), "shape": r.shape(name)} for name in r.keys()}
        return info


class Reader:
    """A checkpoint or WQ container opened for reading one tensor at a time (like
    safetensors.safe_open): memory stays at one decoded tensor plus the file's pages."""

    def __init__(self, path: str | os.PathLike, framework: str = "numpy", backend: str = "auto"):
        if framework not in ("numpy", "torch"):
            raise UsageError(f"framework must be 'numpy' or 'torch', not {framework!r}")
        self._reader = _wq.Reader(os.fspath(path))
        self._framework = framework
        self._backend = backend
        self._infos = {name: (i, dtype, tuple(shape)) for i, (name, dtype, shape) in enumerate(self._reader.tensors())}

    def keys(self):
        """Tensor names, in the file's order."""
        return list(self._infos)

    def metadata(self) -> Dict[str, Any]:
        """The file's format and, for a container, how each tensor is stored."""
        return self._reader.metadata()

    def dtype(self, name: str) -> str:
        return self._infos[name][1]

    def shape(self, name: str) -> Tuple[int, ...]:
        return self._infos[name][2]

    def get_tensor(self, name: str, framework: Optional[str] = None):
        """Decodes (a container) or reads (a checkpoint) one tensor into a new array."""
        if name not in self._infos:
            raise KeyError(name)
        index, dtype, shape = self._infos[name]
        framework = framework or self._framework
        array, buf = _empty(dtype, shape, framework)
        self._reader.read_into(index, buf.reshape(-1) if buf.ndim == 0 else buf, self._backend)
        return _finish(array, dtype, framework)

    def __getitem__(self, name: str):
        return self.get_tensor(name)

    def __contains__(self, name: object) -> bool:
        return name in self._infos

    def __iter__(self) -> Iterator[str]:
        return iter(self._infos)

    def __len__(self) -> int:
        return len(self._infos)

    def close(self) -> None:
        self._reader = None

    def __enter__(self) -> "Reader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open(path: str | os.PathLike, framework: str = "numpy", backend: str = "auto") -> Reader:  # noqa: A001
    """Opens a WQ container or any checkpoint the CLI reads (safetensors, .pt, .pdparams,
    .npy/.npz, GGUF; pickles through wq's restricted reader, never executed) for reading one
    tensor at a time."""
    return Reader(path, framework, backend)


def load(path: str | os.PathLike, framework: str = "numpy", backend: str = "auto") -> Dict[str, Any]:
    """Every tensor of a container (decoded) or checkpoint, as a dict in the file's order."""
    with Reader(path, framework, backend) as r:
        return {name: r.get_tensor(name) for name in r.keys()}


# ---- one array -----------------------------------------------------------------------------


class Quantized:
    """An array quantized with wq's affine arithmetic (docs/container-format.md §3-4): packed
    `codes` (uint8), per-group `scales` and `mins` (float32 or float16; mins is None for the
    symmetric method), and the spec that made them."""

    def __init__(self, result: Dict[str, Any], spec: Dict[str, Any], dtype: str, shape: Tuple[int, ...]):
        param = np.float16 if spec["scale_dtype"] == "f16" else np.float32
        self.codes = np.frombuffer(result["codes"], dtype=np.uint8)
        self.scales = np.frombuffer(result["scales"], dtype=param)
        self.mins = None if result["mins"] is None else np.frombuffer(result["mins"], dtype=param)
        self.spec = dict(spec)
        self.dtype = dtype
        self.shape = shape
        self.sqnr_db = result["sqnr_db"]
        self.max_abs_error = result["max_abs_error"]

    def dequantize(self, framework: str = "numpy", backend: str = "auto"):
        return dequantize(self, framework=framework, backend=backend)

    def __repr__(self) -> str:
        return (f"Quantized(shape={self.shape}, dtype={self.dtype}, method={self.spec['method']}, "
                f"bits={self.spec['bits']}, groups={self.scales.size}, sqnr_db={self.sqnr_db})")


def quantize(array: Any, *, bits: int = 8, method: str = "minmax", granularity: str = "channel",
             group_size: int = 128, scale_dtype: str = "f32", backend: str = "auto") -> Quantized:
    """Quantizes one floating array (float64/32/16, bfloat16) in memory, with the CLI's
    defaults (rows are shape[0]; docs/container-format.md §3)."""
    dtype, shape, buf = _as_buffer(array, "array")
    spec = _spec(method, bits, granularity, group_size, scale_dtype)
    return Quantized(_wq.quantize(buf, dtype, shape, spec, backend), spec, dtype, shape)


def dequantize(q: Quantized, framework: str = "numpy", backend: str = "auto"):
    """The decoded values of a Quantized, in its original dtype and shape."""
    array, buf = _empty(q.dtype, q.shape, framework)
    _wq.dequantize(q.codes, q.scales, q.mins, q.spec, q.dtype, q.shape, buf.reshape(-1) if buf.ndim == 0 else buf,
                   backend)
    return _finish(array, q.dtype, framework)
