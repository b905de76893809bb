"""The Python package against the CLI and the frameworks: run by ctest (python.pytest) with
PYTHONPATH=build/python, WQ_GPU = the CLI and WQ_SOURCE_DIR = the repository."""

import os
import signal
import subprocess

import numpy as np
import pytest
import torch

import wq

WQ_GPU = os.environ.get("WQ_GPU", "wq-gpu")
SOURCE = os.environ.get("WQ_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3)
        self.fc1 = torch.nn.Linear(200, 96)
        self.norm = torch.nn.LayerNorm(96)
        self.fc2 = torch.nn.Linear(96, 10)

    def forward(self, x):
        return self.fc2(self.norm(self.fc1(x)))


def net(seed=0):
    torch.manual_seed(seed)
    return Net()


def cli(*args):
    return subprocess.run([WQ_GPU, *args], check=True, capture_output=True, text=True).stdout


def bits_equal(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def test_version_is_the_clis():
    assert wq.__version__ in cli("--version")


@pytest.mark.parametrize("method", ["minmax", "mse", "symmetric"])
@pytest.mark.parametrize("granularity", ["tensor", "channel", "group"])
def test_torch_state_dict_round_trip_equals_the_cli(tmp_path, method, granularity):
    model = net()
    sd = model.state_dict()
    ours = tmp_path / "py.wq.safetensors"
    report = wq.save(sd, ours, bits=4, method=method, granularity=granularity, group_size=32)
    assert [t["name"] for t in report["tensors"]] == list(sd)
    # The CLI on the same weights, from a .pt file: the same codes and parameters.
    torch.save(sd, tmp_path / "model.pt")
    theirs = tmp_path / "cli.wq.safetensors"
    cli("quantize", str(tmp_path / "model.pt"), "-o", str(theirs), "--bits", "4", "--method", method,
        "--granularity", granularity, "--group-size", "32", "-q")
    a, b = wq.load(ours), wq.load(theirs)
    assert list(a) == list(b) == list(sd)
    for name in sd:
        assert bits_equal(a[name], b[name]), name
    # Back into the model, strictly; 1-d tensors are stored as they are.
    loaded = wq.load(ours, framework="torch")
    fresh = net(seed=1)
    fresh.load_state_dict(loaded, strict=True)
    assert torch.equal(fresh.fc1.bias, model.fc1.bias)
    x = torch.randn(4, 200)
    err = (fresh(x) - model(x)).abs().max().item()
    assert 0 < err < 1.0


def test_the_assignments_encode8_decode8_flow(tmp_path):
    model = net()
    sd = model.state_dict()
    path = tmp_path / "params.wq"
    wq.save(sd, path, bits=8)                                   # encode8(params, fname)
    decoded = wq.load(path, framework="torch")                  # decode8(fname)
    model2 = net(seed=3)
    model2.load_state_dict(decoded, strict=True)
    x = torch.randn(8, 200)
    assert torch.allclose(model2(x), model(x), atol=2e-2)
    for name, value in sd.items():  # 1-d tensors (all-zero biases too) come back exactly
        assert (decoded[name] - value).norm() <= 1e-2 * value.norm(), name
    # The same through the lazy reader, one tensor at a time.
    with wq.open(path, framework="torch") as r:
        assert r.keys() == list(sd)
        assert r.metadata()["format"] == "wq"
        assert r.metadata()["tensors"]["fc1.weight"]["bits"] == 8
        for name in r:
            assert torch.equal(r.get_tensor(name), decoded[name])


def test_a_save_without_fsync_writes_the_same_file(tmp_path):
    sd = net().state_dict()
    wq.save(sd, tmp_path / "durable.wq", bits=4, granularity="group", group_size=32)
    wq.save(sd, tmp_path / "fast.wq", bits=4, granularity="group", group_size=32, durable=False)
    assert (tmp_path / "fast.wq").read_bytes() == (tmp_path / "durable.wq").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["durable.wq", "fast.wq"]  # no temporary left


def test_cli_decodes_and_inspects_what_python_saved(tmp_path):
    sd = {"w": np.random.default_rng(1).standard_normal((64, 48)).astype(np.float32)}
    path = tmp_path / "w.wq.safetensors"
    wq.save(sd, path, bits=6, method="mse")
    cli("verify", str(path))
    cli("decode", str(path), "-o", str(tmp_path / "w.safetensors"))
    assert bits_equal(wq.load(tmp_path / "w.safetensors")["w"], wq.load(path)["w"])


def test_quantize_and_dequantize_one_array_equal_save_and_load(tmp_path):
    x = np.random.default_rng(2).standard_normal((37, 130)).astype(np.float32)
    for method in ("minmax", "mse", "symmetric"):
        q = wq.quantize(x, bits=3, method=method, granularity="group", group_size=16)
        assert q.codes.dtype == np.uint8 and q.codes.size == (x.size * 3 + 7) // 8
        assert (q.mins is None) == (method == "symmetric")
        y = q.dequantize()
        assert y.shape == x.shape and y.dtype == x.dtype
        wq.save({"x": x}, tmp_path / "x.wq", bits=3, method=method, granularity="group", group_size=16)
        assert bits_equal(y, wq.load(tmp_path / "x.wq")["x"]), method
        assert 5 < q.sqnr_db < 30


def test_every_input_dtype_and_bfloat16(tmp_path):
    rng = np.random.default_rng(3)
    sd = {
        "f64": rng.standard_normal((8, 16)),
        "f16": rng.standard_normal((8, 16)).astype(np.float16),
        "bf16": torch.randn(8, 16).to(torch.bfloat16),
        "i64": np.arange(12, dtype=np.int64).reshape(3, 4),
        "u8": np.arange(6, dtype=np.uint8),
        "bool": np.array([True, False]),
    }
    path = tmp_path / "mix.wq"
    wq.save(sd, path, bits=8)
    out = wq.load(path, framework="torch")
    assert out["bf16"].dtype == torch.bfloat16 and out["f16"].dtype == torch.float16
    assert torch.equal(out["i64"], torch.from_numpy(sd["i64"]))
    assert torch.equal(out["bool"], torch.from_numpy(sd["bool"]))
    as_numpy = wq.load(path)
    assert as_numpy["bf16"].dtype == np.float32  # numpy has no bfloat16: widened exactly
    assert np.array_equal(as_numpy["bf16"], out["bf16"].float().numpy())


def test_non_contiguous_and_big_endian_arrays_give_the_same_file(tmp_path):
    x = np.random.default_rng(4).standard_normal((64, 32)).astype(np.float32)
    wq.save({"x": x}, tmp_path / "a.wq", bits=4)
    wq.save({"x": np.asfortranarray(x)}, tmp_path / "b.wq", bits=4)
    wq.save({"x": x.astype(">f4")}, tmp_path / "c.wq", bits=4)
    wq.save({"x": torch.from_numpy(np.ascontiguousarray(x.T)).t()}, tmp_path / "d.wq", bits=4)
    want = wq.load(tmp_path / "a.wq")["x"]
    for f in "bcd":
        assert bits_equal(wq.load(tmp_path / f"{f}.wq")["x"], want), f


def test_reads_every_checkpoint_format_the_cli_reads(tmp_path):
    sd = net().state_dict()
    torch.save(sd, tmp_path / "m.pt")
    loaded = wq.load(tmp_path / "m.pt", framework="torch")
    assert list(loaded) == list(sd)
    for name in sd:
        assert torch.equal(loaded[name], sd[name])
    np.savez(tmp_path / "m.npz", a=np.arange(6.0).reshape(2, 3), b=np.int32(7))
    npz = wq.load(tmp_path / "m.npz")
    assert np.array_equal(npz["a"], np.arange(6.0).reshape(2, 3)) and npz["b"] == 7
    example = os.path.join(SOURCE, "examples", "student_net.safetensors")
    if os.path.exists(example):
        with wq.open(example) as r:
            assert len(r) > 0 and r.metadata()["format"] == "safetensors"


def test_reads_a_compressed_tensors_export_as_its_decoded_weights(tmp_path):
    # A model folder exported for vLLM: wq.load gives every weight as compressed-tensors
    # decodes it (the values wq-gpu decode writes), under the original names.
    model = tmp_path / "model"
    model.mkdir()
    sd = {k: v.to(torch.bfloat16) for k, v in net().state_dict().items() if k.startswith("fc")}
    sd["fc1.weight"] = torch.randn(96, 256, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)
    wq.save(sd, model / "model.safetensors", method="bf16")
    wq.decode_file(model / "model.safetensors", model / "plain.safetensors", format="safetensors")
    os.replace(model / "plain.safetensors", model / "model.safetensors")
    (model / "config.json").write_text('{"model_type": "tiny"}')
    out = tmp_path / "w4a16"
    cli("quantize", str(model), "-o", str(out), "--to", "compressed-tensors", "--scheme", "W4A16", "--group-size",
        "32", "-q")
    cli("decode", str(out), "-o", str(tmp_path / "back.safetensors"), "-q")
    loaded = wq.load(out / "model.safetensors", framework="torch")
    back = wq.load(tmp_path / "back.safetensors", framework="torch")
    assert list(loaded) == list(sd)
    for name in sd:
        assert loaded[name].dtype == torch.bfloat16 and torch.equal(loaded[name], back[name])
    assert not torch.equal(loaded["fc1.weight"], sd["fc1.weight"])  # quantized: 4 bits
    with wq.open(out / "model.safetensors") as r:
        assert r.metadata()["format"] == "compressed-tensors"


def peak_rss_kib():
    """VmHWM: this process's peak resident memory since the last reset_peak_rss()."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


def reset_peak_rss():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def test_the_input_is_not_copied(tmp_path):
    x = np.random.default_rng(5).standard_normal((4096, 8192)).astype(np.float32)  # 128 MiB
    _, _, buf = wq._as_buffer(x, "x")
    assert buf is x  # handed over as it is
    reset_peak_rss()
    before = peak_rss_kib()
    wq.save({"x": x}, tmp_path / "big.wq", bits=4, backend="cpu")
    grown_mib = (peak_rss_kib() - before) / 1024
    assert grown_mib < 96, f"peak memory grew by {grown_mib:.0f} MiB saving a 128 MiB tensor"
    # The check can fail: a copy of the input shows.
    reset_peak_rss()
    before = peak_rss_kib()
    wq.save({"x": x.copy()}, tmp_path / "big2.wq", bits=4, backend="cpu")
    assert (peak_rss_kib() - before) / 1024 > 120


def test_errors_are_exceptions_naming_file_and_tensor(tmp_path):
    with pytest.raises(wq.InputMissingError) as e:
        wq.load(tmp_path / "nothing.wq")
    assert e.value.code == "input-missing" and "nothing.wq" in str(e.value)
    bad = np.ones((4, 8), np.float32)
    bad[1, 2] = np.nan
    out = tmp_path / "nan.wq"
    with pytest.raises(wq.BadDataError) as e:
        wq.save({"layer.weight": bad}, out)
    assert "layer.weight" in str(e.value)
    # The hint names this package's keyword, not the CLI's flag.
    assert "keep_nonfinite=True" in str(e.value) and "--" not in str(e.value)
    assert not out.exists() and os.listdir(tmp_path) == []
    with pytest.raises(wq.UsageError):
        wq.save({"w": np.ones((4, 8), np.float32)}, tmp_path / "x.wq", bits=9)
    with pytest.raises(wq.UsageError):
        wq.save({"w": np.ones((4, 8), np.complex64)}, tmp_path / "x.wq")
    with pytest.raises(wq.UsageError):
        wq.quantize(np.ones(8, np.float32), method="nope")
    (tmp_path / "junk.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(wq.BadFormatError):
        wq.open(tmp_path / "junk.bin")
    with pytest.raises(wq.Error):
        wq.save({"w": np.ones((4, 8), np.float32)}, tmp_path / "no" / "such" / "dir.wq")


def test_ctrl_c_stops_a_save_and_leaves_nothing(tmp_path):
    sd = {f"w{i}": np.random.default_rng(i).standard_normal((256, 256)).astype(np.float32) for i in range(64)}
    out = tmp_path / "big.wq"
    calls = []

    def press_ctrl_c(done, total, tensor):
        calls.append(done)
        signal.raise_signal(signal.SIGINT)  # as a terminal would: Python's handler flags it

    with pytest.raises(KeyboardInterrupt):
        wq.save(sd, out, bits=4, method="mse", progress=press_ctrl_c)
    assert calls and not out.exists() and os.listdir(tmp_path) == []

    def fail(done, total, tensor):
        raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        wq.save(sd, out, bits=4, progress=fail)
    assert os.listdir(tmp_path) == []


def test_progress_reaches_the_total(tmp_path):
    sd = {f"w{i}": np.ones((64, 64), np.float32) * i for i in range(5)}
    seen = []
    wq.save(sd, tmp_path / "p.wq", progress=lambda done, total, tensor: seen.append((done, total)))
    assert seen and seen[-1][0] == seen[-1][1] == sum(v.nbytes for v in sd.values())


def test_file_calls_write_the_clis_bytes(tmp_path):
    torch.save(net().state_dict(), tmp_path / "m.pt")
    report = wq.quantize_file(tmp_path / "m.pt", tmp_path / "py.wq", bits=4, method="mse", granularity="group",
                              group_size=64, rules={"fc2.*": {"bits": 8}, "conv.*": "keep"})
    cli("quantize", str(tmp_path / "m.pt"), "-o", str(tmp_path / "cli.wq"), "--bits", "4", "--method", "mse",
        "--granularity", "group", "--group-size", "64", "--rule", "fc2.*=bits:8", "--rule", "conv.*=keep", "-q")
    assert (tmp_path / "py.wq").read_bytes() == (tmp_path / "cli.wq").read_bytes()
    encodings = {t["name"]: (t["encoding"], t["bits"]) for t in report["tensors"]}
    assert encodings["fc2.weight"] == ("affine", 8) and encodings["conv.weight"][0] == "raw"
    wq.decode_file(tmp_path / "py.wq", tmp_path / "py.pt")
    cli("decode", str(tmp_path / "cli.wq"), "-o", str(tmp_path / "cli.pt"))
    assert (tmp_path / "py.pt").read_bytes() == (tmp_path / "cli.pt").read_bytes()
    assert wq.verify(tmp_path / "py.wq") == len(report["tensors"])
    info = wq.inspect(tmp_path / "py.wq")
    assert info["tensors"]["fc1.weight"]["range"] == "mse" and info["shapes"]["fc1.weight"]["shape"] == (96, 200)


def test_verify_reports_progress_and_stops_on_ctrl_c(tmp_path):
    path = tmp_path / "w.wq"
    wq.save({f"w{i}": np.random.default_rng(i).standard_normal((64, 64)).astype(np.float32) for i in range(4)}, path,
            bits=4)
    seen = []
    assert wq.verify(path, progress=lambda done, total, name: seen.append((done, total, name))) == 4
    assert [name for _, _, name in seen] == ["w0", "w1", "w2", "w3", ""]
    assert seen[-1][0] == seen[-1][1] > 0 and [d for d, _, _ in seen] == sorted(d for d, _, _ in seen)
    with pytest.raises(KeyboardInterrupt):
        wq.verify(path, progress=lambda *a: signal.raise_signal(signal.SIGINT))


def test_verify_finds_a_flipped_byte(tmp_path):
    path = tmp_path / "w.wq"
    wq.save({"w": np.random.default_rng(6).standard_normal((64, 64)).astype(np.float32)}, path, bits=4)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(wq.IntegrityError) as e:
        wq.verify(path)
    assert str(path) in str(e.value) and e.value.code == "integrity"


def test_ctrl_c_stops_quantize_file_and_leaves_nothing(tmp_path):
    sd = {f"w{i}": np.random.default_rng(i).standard_normal((256, 256)).astype(np.float32) for i in range(32)}
    wq.save(sd, tmp_path / "in.wq", bits=8)
    wq.decode_file(tmp_path / "in.wq", tmp_path / "in.safetensors")
    with pytest.raises(KeyboardInterrupt):
        wq.quantize_file(tmp_path / "in.safetensors", tmp_path / "out.wq", bits=4, method="mse",
                         progress=lambda *a: signal.raise_signal(signal.SIGINT))
    assert sorted(os.listdir(tmp_path)) == ["in.safetensors", "in.wq"]


def test_objects_with_numpy_like_paddle_tensors(tmp_path):
    class PaddleLike:  # paddle.Tensor offers .numpy(); so do TensorFlow's eager tensors
        def __init__(self, a):
            self._a = a

        def numpy(self):
            return self._a

    x = np.random.default_rng(7).standard_normal((32, 48)).astype(np.float32)
    wq.save({"w": PaddleLike(x)}, tmp_path / "p.wq", bits=4)
    wq.save({"w": x}, tmp_path / "n.wq", bits=4)
    assert bits_equal(wq.load(tmp_path / "p.wq")["w"], wq.load(tmp_path / "n.wq")["w"])


def write_safetensors(path, tensors):
    """A safetensors file of numpy arrays (F32 or BF16 as uint16 bits) in the given order."""
    import json
    import struct
    header, blobs, offset = {}, [], 0
    for name, (dtype, a) in tensors.items():
        blob = np.ascontiguousarray(a).tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def test_quantize_file_writes_gguf_and_compressed_tensors_as_the_cli_does(tmp_path):
    rng = np.random.default_rng(21)
    weight = rng.standard_normal((64, 256)).astype(np.float32) * 0.05
    bf16 = (weight.view(np.uint32) >> 16).astype(np.uint16)  # truncated: any bf16 values do
    src = tmp_path / "m.safetensors"
    write_safetensors(src, {"layer.q_proj.weight": ("BF16", bf16), "layer.norm.weight": ("BF16", bf16[0])})
    # GGUF: a ggml type, or a llama-quantize preset.
    for type_name in ("Q8_0", "Q4_K"):
        wq.quantize_file(src, tmp_path / f"py-{type_name}.gguf", type=type_name)
        cli("quantize", str(src), "-o", str(tmp_path / f"cli-{type_name}.gguf"), "--type", type_name, "-q")
        assert (tmp_path / f"py-{type_name}.gguf").read_bytes() == (tmp_path / f"cli-{type_name}.gguf").read_bytes()
    # inspect lists a GGUF's metadata pairs as the CLI shows them; a safetensors source has none.
    pairs = {key: (kind, value) for key, kind, value in wq.inspect(tmp_path / "py-Q8_0.gguf")["gguf_metadata"]}
    assert pairs["general.file_type"] == ("UINT32", "7") and pairs["general.quantized_by"][0] == "STRING"
    assert "gguf_metadata" not in wq.inspect(src)
    # compressed-tensors, asymmetric groups of 64, and per channel with the mse search.
    report = wq.quantize_file(src, tmp_path / "py-ct.safetensors", to="compressed-tensors", scheme="W4A16_ASYM",
                              group_size=64)
    cli("quantize", str(src), "-o", str(tmp_path / "cli-ct.safetensors"), "--to", "compressed-tensors",
        "--scheme", "W4A16_ASYM", "--group-size", "64", "-q")
    assert (tmp_path / "py-ct.safetensors").read_bytes() == (tmp_path / "cli-ct.safetensors").read_bytes()
    config = report["quantization_config"]
    assert config["format"] == "pack-quantized"
    assert config["config_groups"]["group_0"]["weights"]["group_size"] == 64
    wq.quantize_file(src, tmp_path / "py-ch.safetensors", to="compressed-tensors", scheme="w8a16",
                     granularity="channel", method="mse", ignore=["other.*"])
    cli("quantize", str(src), "-o", str(tmp_path / "cli-ch.safetensors"), "--to", "compressed-tensors",
        "--scheme", "W8A16", "--granularity", "channel", "--method", "mse", "--ignore", "other.*", "-q")
    assert (tmp_path / "py-ch.safetensors").read_bytes() == (tmp_path / "cli-ch.safetensors").read_bytes()
    # ggml blocks in a WQ container, as --type does there.
    wq.quantize_file(src, tmp_path / "py-q8.wq", type="Q8_0")
    cli("quantize", str(src), "-o", str(tmp_path / "cli-q8.wq"), "--type", "Q8_0", "-q")
    assert (tmp_path / "py-q8.wq").read_bytes() == (tmp_path / "cli-q8.wq").read_bytes()
    # wq's search in a legacy layout, as --method mse does there.
    wq.quantize_file(src, tmp_path / "py-q4_1-mse.gguf", type="Q4_1", method="mse")
    cli("quantize", str(src), "-o", str(tmp_path / "cli-q4_1-mse.gguf"), "--type", "Q4_1", "--method", "mse", "-q")
    assert (tmp_path / "py-q4_1-mse.gguf").read_bytes() == (tmp_path / "cli-q4_1-mse.gguf").read_bytes()
    # What does not apply is refused before anything is written.
    for kwargs, says in [({"to": "gguf"}, "type="), ({"to": "gguf", "type": "Q8_0", "bits": 4}, "type decides"),
                         ({"to": "compressed-tensors", "bits": 4}, "scheme decides"),
                         ({"scheme": "W4A16"}, "compressed-tensors"), ({"to": "bogus"}, "to must be"),
                         ({"to": "compressed-tensors", "scheme": "W3A16"}, "takes W4A16"),
                         ({"to": "gguf", "type": "Q9_K"}, "neither a ggml type"),
                         ({"to": "gguf", "type": "Q4_K", "method": "mse"}, "has no Q4_K form"),
                         ({"to": "gguf", "type": "Q4_K_M", "method": "mse"}, "llama-quantize mix"),
                         ({"to": "gguf", "type": "Q4_0", "method": "symmetric"},
                          "type='Q4_0' with method='symmetric': method symmetric does not apply to a ggml type"),
                         ({"to": "gguf", "type": "BF16", "method": "mse"}, "does not apply to a float type"),
                         ({"to": "compressed-tensors", "granularity": "channel", "group_size": 64}, "give one")]:
        out = tmp_path / "refused.out"
        with pytest.raises(wq.UsageError) as e:
            wq.quantize_file(src, out, **kwargs)
        assert says in str(e.value), (kwargs, str(e.value))
        assert not out.exists()
