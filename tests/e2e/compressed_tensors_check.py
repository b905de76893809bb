"""wq-gpu's compressed-tensors export, end to end, against two independent implementations.

For a small llama-shaped Hugging Face folder (one safetensors file, and the same model in two
shards with an index) in bf16, fp16 and fp32, and every scheme (W4A16, W4A16_ASYM, W8A16,
W8A16_ASYM; groups of 32 and 128, and per channel):
- every Linear weight's weight_packed / weight_scale / weight_zero_point equal, byte for byte,
  compressed-tensors' round-to-nearest arithmetic emulated op for op in torch
  (tools/make_ct_vectors.py, which was checked against compressed-tensors' own functions);
- decoding them with the numpy-only reader of docs/compressed-tensors.md §2-3
  (tests/reference/ct_reference.py) gives compressed-tensors' dequantized values, and the values
  `wq-gpu decode` gives back from the exported folder;
- every other tensor is byte-identical, the index names every tensor's shard, config.json
  keeps every member and gains a quantization_config with exactly the long-standing fields
  (docs/compressed-tensors.md §4), other files are copied;
- a second run is up to date (the journal), `verify` checks the export and finds a corrupted
  scale, `--dry-run` writes nothing, and bad folders are refused with nothing written.

    /usr/bin/python3 tests/e2e/compressed_tensors_check.py build/host/wq-gpu SOURCE_DIR
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch

WQ = sys.argv[1]
ROOT = sys.argv[2]
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import make_ct_vectors as ct_torch  # noqa: E402  (the torch emulation of compressed-tensors)
import ct_reference  # noqa: E402  (numpy only)

ST = {torch.bfloat16: "BF16", torch.float16: "F16", torch.float32: "F32", torch.int32: "I32", torch.int64: "I64"}
NAMES = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}
failures = []


def check(ok, what):
    if not ok:
        failures.append(what)
        print("FAIL:", what)


def raw(t):
    t = t.contiguous()
    if t.dtype in (torch.bfloat16, torch.float16):
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def write_raw_safetensors(path, parts):
    """parts: name -> (dtype string, shape, bytes), laid out in that order."""
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, (dtype, shape, data) in parts.items():
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def write_safetensors(path, tensors):
    write_raw_safetensors(path, {name: (ST[t.dtype], t.shape, raw(t)) for name, t in tensors.items()})


def read_safetensors(path):
    """name -> (dtype string, shape, raw bytes), in file order."""
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    out = {}
    for name, e in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        a, b = e["data_offsets"]
        out[name] = (e["dtype"], e["shape"], data[8 + n + a:8 + n + b])
    return out


def model(dtype, seed):
    """A llama-shaped state dict: embeddings, two layers, norms, lm_head, one 1-D bias."""
    g = torch.Generator().manual_seed(seed)
    hidden, inter, vocab = 128, 256, 96

    def w(*shape):
        t = torch.randn(*shape, generator=g) * 0.02
        t.view(-1)[::97] *= 30  # outliers
        return t.to(dtype)
    sd = {"model.embed_tokens.weight": w(vocab, hidden)}
    for i in range(2):
        p = "model.layers.%d." % i
        sd[p + "input_layernorm.weight"] = torch.ones(hidden, dtype=dtype)
        for m in ("q_proj", "k_proj", "v_proj", "o_proj"):
            sd[p + "self_attn.%s.weight" % m] = w(hidden, hidden)
        sd[p + "self_attn.q_proj.bias"] = w(hidden)
        sd[p + "mlp.gate_proj.weight"] = w(inter, hidden)
        sd[p + "mlp.up_proj.weight"] = w(inter, hidden)
        sd[p + "mlp.down_proj.weight"] = w(hidden, inter)
    sd["model.layers.1.mlp.down_proj.weight"][5].zero_()  # an all-zero row
    sd["model.norm.weight"] = torch.ones(hidden, dtype=dtype)
    sd["lm_head.weight"] = w(vocab, hidden)
    return sd


CONFIG = {"architectures": ["LlamaForCausalLM"], "hidden_size": 128, "model_type": "llama",
          "num_hidden_layers": 2, "torch_dtype": "bfloat16", "vocab_size": 96}


def make_folder(path, sd, sharded):
    os.makedirs(path)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(CONFIG, f, indent=2)
    with open(os.path.join(path, "tokenizer.json"), "w") as f:
        f.write('{"version": "1.0"}\n')
    if not sharded:
        write_safetensors(os.path.join(path, "model.safetensors"), sd)
        return
    names = list(sd)
    half = len(names) // 2
    shards = {"model-00001-of-00002.safetensors": names[:half], "model-00002-of-00002.safetensors": names[half:]}
    weight_map = {}
    for shard, keys in shards.items():
        write_safetensors(os.path.join(path, shard), {k: sd[k] for k in keys})
        weight_map.update({k: shard for k in keys})
    with open(os.path.join(path, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": 0}, "weight_map": weight_map}, f)


def run(*args, expect=0):
    r = subprocess.run([WQ, *args], capture_output=True, text=True)
    if r.returncode != expect:
        print(r.stdout, r.stderr)
    check(r.returncode == expect, "exit %d (expected %d): %s" % (r.returncode, expect, " ".join(args)))
    return r


def output_tensors(folder):
    out = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(".safetensors"):
            for k, v in read_safetensors(os.path.join(folder, name)).items():
                out[k] = v + (name,)
    return out


LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
CONFIG_FIELDS = {"quant_method", "format", "quantization_status", "version", "config_groups", "ignore",
                 "kv_cache_scheme", "global_compression_ratio", "sparsity_config", "transform_config"}
WEIGHT_FIELDS = {"num_bits", "type", "symmetric", "strategy", "group_size", "dynamic", "actorder",
                 "block_structure", "observer", "observer_kwargs"}


def check_export(src, out, sd, dtype_name, scheme, group):
    bits = 8 if scheme.startswith("W8") else 4
    symmetric = not scheme.endswith("_ASYM")
    tag = "%s %s g%d %s" % (dtype_name, scheme, group, os.path.basename(src))
    tensors = output_tensors(out)
    for name, t in sd.items():
        module = name[:-len(".weight")]
        linear = name.endswith(".weight") and module.split(".")[-1] in LINEAR
        if not linear:
            check(name in tensors and tensors[name][2] == raw(t), "%s: %s kept unchanged" % (tag, name))
            continue
        check(name not in tensors, "%s: %s replaced" % (tag, name))
        scale, zp = ct_torch.qparams(t, bits, symmetric, group)
        q = ct_torch.quantize(t, scale, zp, bits, group)
        packed = tensors[module + ".weight_packed"]
        check(packed[0] == "I32" and packed[2] == ct_torch.pack_weight(q, bits).tobytes(), "%s: %s packed" % (tag, module))
        sc = tensors[module + ".weight_scale"]
        check(sc[0] == ST[t.dtype] and sc[1] == list(scale.shape) and sc[2] == raw(scale), "%s: %s scale" % (tag, module))
        shape = tensors[module + ".weight_shape"]
        check(shape[0] == "I64" and np.frombuffer(shape[2], "<i8").tolist() == list(t.shape), "%s: %s shape" % (tag, module))
        zname = module + ".weight_zero_point"
        if symmetric:
            check(zname not in tensors, "%s: no zero point for a symmetric scheme" % tag)
            zp_words = None
        else:
            check(tensors[zname][0] == "I32" and tensors[zname][2] == ct_torch.pack_zero_point(zp, bits).tobytes(),
                  "%s: %s zero point" % (tag, module))
            zp_words = np.frombuffer(tensors[zname][2], "<i4").reshape(tensors[zname][1])
        # The numpy reader of the format gives compressed-tensors' dequantized values.
        words = np.frombuffer(packed[2], "<i4").reshape(packed[1])
        scale_raw = np.frombuffer(sc[2], "<u2" if dtype_name != "f32" else "<f4").reshape(sc[1])
        decoded = ct_reference.decode(words, scale_raw, zp_words, bits, tuple(t.shape), dtype_name)
        expected = ct_torch.dequantize(q, scale, None if symmetric else zp, group)
        check(decoded.tobytes() == raw(expected), "%s: %s decodes as compressed-tensors" % (tag, module))
    # config.json: the model's members, then exactly the long-standing fields.
    with open(os.path.join(out, "config.json")) as f:
        config = json.load(f)
    qc = config.pop("quantization_config", {})
    check(config == CONFIG, "%s: config members kept" % tag)
    check(set(qc) == CONFIG_FIELDS, "%s: quantization_config fields %s" % (tag, sorted(qc)))
    weights = qc.get("config_groups", {}).get("group_0", {}).get("weights", {})
    check(set(weights) == WEIGHT_FIELDS, "%s: weights fields %s" % (tag, sorted(weights)))
    check(weights.get("num_bits") == bits and weights.get("symmetric") == symmetric
          and weights.get("strategy") == ("channel" if group == 0 else "group")
          and weights.get("group_size") == (None if group == 0 else group), "%s: weights args %s" % (tag, weights))
    check(qc.get("quant_method") == "compressed-tensors" and qc.get("format") == "pack-quantized"
          and "lm_head" in qc.get("ignore", []), "%s: quantization_config %s" % (tag, qc))
    with open(os.path.join(out, "tokenizer.json")) as f:
        check(f.read() == '{"version": "1.0"}\n', "%s: other files copied" % tag)
    if os.path.exists(os.path.join(src, "model.safetensors.index.json")):
        with open(os.path.join(out, "model.safetensors.index.json")) as f:
            index = json.load(f)
        check(index["weight_map"] == {k: v[3] for k, v in tensors.items()}, "%s: index names every tensor" % tag)
        check(index["metadata"]["total_size"] == sum(len(v[2]) for v in tensors.values()), "%s: total_size" % tag)
    # wq-gpu decode reads the export back: the values compressed-tensors decodes.
    back = os.path.join(out + "-decoded.safetensors")
    run("decode", out, "-o", back, "-q")  # the folder: its index, or its one file
    if os.path.exists(back):
        got = read_safetensors(back)
        for name, t in sd.items():
            module = name[:-len(".weight")]
            if not (name.endswith(".weight") and module.split(".")[-1] in LINEAR):
                check(got[name][2] == raw(t), "%s: decode keeps %s" % (tag, name))
                continue
            scale, zp = ct_torch.qparams(t, bits, symmetric, group)
            q = ct_torch.quantize(t, scale, zp, bits, group)
            expected = ct_torch.dequantize(q, scale, None if symmetric else zp, group)
            check(got[name][0] == ST[t.dtype] and got[name][2] == raw(expected), "%s: wq-gpu decode of %s" % (tag, name))


def main():
    tmp = tempfile.mkdtemp(prefix="wq-ct-")
    try:
        for i, dtype_name in enumerate(("bf16", "f16", "f32")):
            sd = model(NAMES[dtype_name], 7 + i)
            for sharded in (False, True):
                src = os.path.join(tmp, "%s-%s" % (dtype_name, "sharded" if sharded else "single"))
                make_folder(src, sd, sharded)
                for scheme, group in (("W4A16", 128), ("W4A16_ASYM", 32), ("W8A16", 0), ("W8A16_ASYM", 128),
                                      ("W4A16_ASYM", 0)):
                    out = "%s-%s-g%d" % (src, scheme, group)
                    flags = ["--granularity", "channel"] if group == 0 else ["--group-size", str(group)]
                    run("quantize", src, "-o", out, "--to", "compressed-tensors", "--scheme", scheme, "-q", *flags)
                    check_export(src, out, sd, dtype_name, scheme, group)
        # --method mse: the same format (the numpy reader decodes it, as wq-gpu decode does), a
        # least-error search within it: no tensor worse than compressed-tensors' own.
        for scheme in ("W4A16", "W8A16_ASYM"):
            bits = 8 if scheme.startswith("W8") else 4
            symmetric = not scheme.endswith("_ASYM")
            src = os.path.join(tmp, "bf16-single")
            out = os.path.join(tmp, "mse-" + scheme)
            run("quantize", src, "-o", out, "--to", "compressed-tensors", "--scheme", scheme, "--method", "mse", "-q")
            run("decode", out, "-o", out + ".safetensors", "-q")
            tensors, back = output_tensors(out), read_safetensors(out + ".safetensors")
            sd = model(torch.bfloat16, 7)
            with open(os.path.join(out, "config.json")) as f:
                observer = json.load(f)["quantization_config"]["config_groups"]["group_0"]["weights"]["observer"]
            check(observer == "mse", "mse observer: %s" % observer)
            gained = 0
            for name, t in sd.items():
                module = name[:-len(".weight")]
                if not (name.endswith(".weight") and module.split(".")[-1] in LINEAR):
                    continue
                packed, sc = tensors[module + ".weight_packed"], tensors[module + ".weight_scale"]
                zp = None if symmetric else np.frombuffer(tensors[module + ".weight_zero_point"][2], "<i4").reshape(
                    tensors[module + ".weight_zero_point"][1])
                decoded = ct_reference.decode(np.frombuffer(packed[2], "<i4").reshape(packed[1]),
                                              np.frombuffer(sc[2], "<u2").reshape(sc[1]), zp, bits, tuple(t.shape), "bf16")
                check(decoded.tobytes() == back[name][2], "mse %s: %s decodes alike" % (scheme, name))
                scale, z = ct_torch.qparams(t, bits, symmetric, 128)
                rtn = ct_torch.dequantize(ct_torch.quantize(t, scale, z, bits, 128), scale, None if symmetric else z, 128)
                x = t.float().numpy()
                err_mse = float(((x - ct_reference.to_f32(decoded, "bf16")) ** 2).sum())
                err_rtn = float(((x - rtn.float().numpy()) ** 2).sum())
                check(err_mse <= err_rtn, "mse %s: %s error %g <= %g" % (scheme, name, err_mse, err_rtn))
                gained += err_mse < err_rtn
            check(gained > 0, "mse %s: some tensor gains" % scheme)

        # Resume: the same command again finds everything up to date and rewrites nothing.
        src = os.path.join(tmp, "bf16-sharded")
        out = src + "-W4A16-g128"
        before = {n: os.stat(os.path.join(out, n)).st_mtime_ns for n in os.listdir(out)}
        r = run("quantize", src, "-o", out, "--to", "compressed-tensors", "--json")
        rows = json.loads(r.stdout)["files"] if r.returncode == 0 else []
        check(rows and all(row["action"] == "up to date" for row in rows), "second run up to date: %s" % rows)
        check(before == {n: os.stat(os.path.join(out, n)).st_mtime_ns for n in os.listdir(out)}, "nothing rewritten")

        # Every command reads the export as the weights it decodes to: inspect lists them, and
        # quantizing them again needs --allow-requantize (a second rounding).
        r = run("inspect", os.path.join(out, "model.safetensors.index.json"))
        check("compressed-tensors" in r.stdout and "model.layers.0.self_attn.q_proj.weight" in r.stdout
              and "weight_packed" not in r.stdout, "inspect: %s" % r.stdout[:300])
        again = os.path.join(tmp, "again.wq.safetensors")
        r = run("quantize", os.path.join(out, "model-00001-of-00002.safetensors"), "-o", again, expect=2)
        check("int4 pack-quantized" in r.stderr and "--allow-requantize" in r.stderr, "requantize: %s" % r.stderr)
        run("quantize", os.path.join(out, "model-00001-of-00002.safetensors"), "-o", again, "--allow-requantize", "-q")
        check(os.path.exists(again), "requantized with --allow-requantize")

        # verify: the structure, and every weight decodes to finite values.
        r = run("verify", out)
        check("2 containers checked, 0 bad" in r.stdout and "compressed-tensors" in r.stdout, "verify: %s" % r.stdout)
        shard = os.path.join(out, "model-00001-of-00002.safetensors")
        with open(shard, "rb") as f:
            data = bytearray(f.read())
        n = struct.unpack("<Q", data[:8])[0]
        header = json.loads(data[8:8 + n])
        first_scale = min(v["data_offsets"][0] for k, v in header.items() if k.endswith(".weight_scale"))
        data[8 + n + first_scale:8 + n + first_scale + 2] = b"\x80\x7f"  # a bf16 infinity
        with open(shard, "wb") as f:
            f.write(data)
        r = run("verify", out, expect=5)
        check("decodes to an infinity" in r.stderr, "verify names the bad weight: %s" % r.stderr)
        # --dry-run writes nothing and names the scheme.
        r = run("quantize", src, "-o", out + "-dry", "--to", "compressed-tensors", "--scheme", "W8A16", "--dry-run")
        check("W8A16" in r.stdout and not os.path.exists(out + "-dry"), "dry run: %s" % r.stdout[-300:])

        def refused(folder, want, *extra):
            dest = folder + "-out"
            r = run("quantize", folder, "-o", dest, "--to", "compressed-tensors", *extra, expect=r_code(want))
            check(want in r.stderr, "message for %s: %s" % (os.path.basename(folder), r.stderr.strip()))
            check(not os.path.exists(dest) or not os.listdir(dest), "nothing written for %s" % os.path.basename(folder))
        sd = model(torch.bfloat16, 3)
        no_config = os.path.join(tmp, "no-config")
        make_folder(no_config, sd, False)
        os.remove(os.path.join(no_config, "config.json"))
        refused(no_config, "no config.json beside it")
        quantized = os.path.join(tmp, "quantized")
        make_folder(quantized, sd, False)
        with open(os.path.join(quantized, "config.json"), "w") as f:
            json.dump(dict(CONFIG, quantization_config={"quant_method": "awq"}), f)
        refused(quantized, "quantized already")
        mismatched = os.path.join(tmp, "mismatched")
        make_folder(mismatched, sd, True)
        index_path = os.path.join(mismatched, "model.safetensors.index.json")
        with open(index_path) as f:
            index = json.load(f)
        index["weight_map"]["model.norm.weight"] = "model-00001-of-00002.safetensors"  # in shard 2 really
        with open(index_path, "w") as f:
            json.dump(index, f)
        refused(mismatched, "model.norm.weight")
        refused(os.path.join(tmp, "bf16-single"), "not whole groups of 96", "--group-size", "96")
        # Malformed compressed-tensors files: a clear error naming the module, nothing written.
        words = ("I32", [2, 16], bytes(128))
        scale = ("BF16", [2, 4], bytes(16))
        shape = ("I64", [2], np.array([2, 128], "<i8").tobytes())
        hostile = {
            "huge columns": ({"a.weight_packed": words, "a.weight_scale": scale,
                              "a.weight_shape": ("I64", [2], np.array([2, 2 ** 62], "<i8").tobytes())},
                             "do not fit", 4),
            "no scale": ({"a.weight_packed": words, "a.weight_shape": shape}, "without weight_scale", 4),
            "zero point of the wrong shape": ({"a.weight_packed": words, "a.weight_scale": scale, "a.weight_shape": shape,
                                               "a.weight_zero_point": ("I32", [3, 4], bytes(48))}, "weight_zero_point", 4),
            "activation ordering": ({"a.weight_packed": words, "a.weight_scale": scale, "a.weight_shape": shape,
                                     "a.weight_g_idx": ("I32", [128], bytes(512))}, "weight_g_idx", 8),
        }
        bad_dir = os.path.join(tmp, "hostile")
        os.makedirs(bad_dir)
        with open(os.path.join(bad_dir, "config.json"), "w") as f:  # 4 bits: 128 columns in 16 words
            json.dump({"quantization_config": {"config_groups": {"g": {"weights": {"num_bits": 4}}}}}, f)
        for what, (parts, want, status) in hostile.items():
            path = os.path.join(bad_dir, "model.safetensors")
            write_raw_safetensors(path, parts)
            for command in (["decode", path, "-o", path + ".out"], ["verify", path], ["inspect", path]):
                r = run(*command, expect=status)
                check("module 'a'" in r.stderr and want in r.stderr and not os.path.exists(path + ".out"),
                      "%s, %s: %s" % (what, command[0], r.stderr.strip()))

        # Flags that the scheme decides, or that need --to compressed-tensors.
        single = os.path.join(tmp, "bf16-single")
        for args, want in ((["--to", "compressed-tensors", "--bits", "4"], "--scheme chooses the bits"),
                           (["--to", "compressed-tensors", "--scheme", "W3A16"], "takes W4A16, W4A16_ASYM"),
                           (["--to", "compressed-tensors", "--method", "symmetric"], "minmax (compressed-tensors' own"),
                           (["--scheme", "W4A16"], "add --to compressed-tensors")):
            r = run("quantize", single, "-o", single + "-flags", *args, expect=2)
            check(want in r.stderr and not os.path.exists(single + "-flags"), "%s: %s" % (args, r.stderr.strip()))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        print("%d checks failed" % len(failures))
        sys.exit(1)
    print("compressed-tensors export: every check passed")


def r_code(want):
    """The exit status of each refusal: usage (2), except an inconsistent index (4)."""
    return 4 if want == "model.norm.weight" else 2


if __name__ == "__main__":
    main()
