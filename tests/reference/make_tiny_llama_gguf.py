"""A tiny llama-architecture GGUF (float32) that the real llama.cpp loads and runs.

usage: make_tiny_llama_gguf.py OUT.gguf [--seed N] [--layers N]

Written here with the standard library and numpy only (no wq code), following the GGUF v3
layout and llama.cpp's llama loader (docs/gguf.md): 2 layers, n_embd 256, 4 heads of 64
(2 KV heads), n_ff 512, so that every weight's rows are whole k-quant super-blocks; a
byte-complete SPM vocabulary of 320 tokens (<unk>, <s>, </s>, the 256 byte tokens, then
pieces), which node-llama-cpp needs to load a model at all. Weights are random with a fixed
seed, scaled like a trained network's (unit-variance activations), so the next-token
distribution is neither flat nor one-hot.
"""
import struct
import sys

import numpy as np

N_EMBD, N_HEAD, N_HEAD_KV, N_FF, N_LAYER, N_VOCAB, N_CTX = 256, 4, 2, 512, 2, 320, 64
HEAD_DIM = N_EMBD // N_HEAD

U32, F32, STRING, ARRAY, I32 = 4, 6, 8, 9, 5


def gguf_string(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def kv(key, vtype, value):
    out = gguf_string(key) + struct.pack("<I", vtype)
    if vtype == U32:
        return out + struct.pack("<I", value)
    if vtype == F32:
        return out + struct.pack("<f", value)
    if vtype == STRING:
        return out + gguf_string(value)
    etype, items = value
    out += struct.pack("<IQ", etype, len(items))
    if etype == STRING:
        return out + b"".join(gguf_string(s) for s in items)
    fmt = {F32: "<f", I32: "<i"}[etype]
    return out + b"".join(struct.pack(fmt, v) for v in items)


def vocabulary():
    tokens = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)]
    types = [2, 3, 3] + [6] * 256
    letters = "abcdefghijklmnopqrstuvwxyz"
    pieces = ["\u2581" + c for c in letters] + list(letters) + ["\u2581the", "\u2581of", "\u2581to", "in", "er",
                                                               "on", "an", "th", "\u2581"]
    for p in pieces:
        if len(tokens) == N_VOCAB:
            break
        tokens.append(p)
        types.append(1)
    assert len(tokens) == N_VOCAB == len(set(tokens)), len(tokens)
    scores = [0.0] * 259 + [-float(i) for i in range(N_VOCAB - 259)]
    return tokens, scores, types


def tensors(seed, n_layer):
    rng = np.random.default_rng(seed)

    def w(rows, cols, scale=None):  # numpy shape [rows, cols] = ggml ne [cols, rows]
        s = scale if scale is not None else 1.0 / np.sqrt(cols)
        return (rng.standard_normal((rows, cols)) * s).astype(np.float32)

    out = [("token_embd.weight", w(N_VOCAB, N_EMBD, 1.0))]
    for i in range(n_layer):
        p = "blk.%d." % i
        out += [
            (p + "attn_norm.weight", (1.0 + 0.1 * rng.standard_normal(N_EMBD)).astype(np.float32)),
            (p + "attn_q.weight", w(N_HEAD * HEAD_DIM, N_EMBD)),
            (p + "attn_k.weight", w(N_HEAD_KV * HEAD_DIM, N_EMBD)),
            (p + "attn_v.weight", w(N_HEAD_KV * HEAD_DIM, N_EMBD)),
            (p + "attn_output.weight", w(N_EMBD, N_HEAD * HEAD_DIM)),
            (p + "ffn_norm.weight", (1.0 + 0.1 * rng.standard_normal(N_EMBD)).astype(np.float32)),
            (p + "ffn_gate.weight", w(N_FF, N_EMBD)),
            (p + "ffn_up.weight", w(N_FF, N_EMBD)),
            (p + "ffn_down.weight", w(N_EMBD, N_FF)),
        ]
    out += [("output_norm.weight", np.ones(N_EMBD, dtype=np.float32)),
            ("output.weight", w(N_VOCAB, N_EMBD, 2.0 / np.sqrt(N_EMBD)))]
    return out


def write(path, seed, n_layer=N_LAYER):
    tokens, scores, types = vocabulary()
    kvs = [
        kv("general.architecture", STRING, "llama"),
        kv("general.name", STRING, "wq tiny llama"),
        kv("llama.context_length", U32, N_CTX),
        kv("llama.embedding_length", U32, N_EMBD),
        kv("llama.block_count", U32, n_layer),
        kv("llama.feed_forward_length", U32, N_FF),
        kv("llama.attention.head_count", U32, N_HEAD),
        kv("llama.attention.head_count_kv", U32, N_HEAD_KV),
        kv("llama.rope.dimension_count", U32, HEAD_DIM),
        kv("llama.attention.layer_norm_rms_epsilon", F32, 1e-5),
        kv("llama.vocab_size", U32, N_VOCAB),
        kv("general.file_type", U32, 0),
        kv("tokenizer.ggml.model", STRING, "llama"),
        kv("tokenizer.ggml.tokens", ARRAY, (STRING, tokens)),
        kv("tokenizer.ggml.scores", ARRAY, (F32, scores)),
        kv("tokenizer.ggml.token_type", ARRAY, (I32, types)),
        kv("tokenizer.ggml.bos_token_id", U32, 1),
        kv("tokenizer.ggml.eos_token_id", U32, 2),
        kv("tokenizer.ggml.unknown_token_id", U32, 0),
    ]
    ts = tensors(seed, n_layer)
    infos, blobs, offset = [], [], 0
    for name, a in ts:
        ne = list(reversed(a.shape))
        infos.append(gguf_string(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", n) for n in ne) +
                     struct.pack("<IQ", 0, offset))
        data = a.tobytes()
        pad = (-len(data)) % 32
        blobs.append(data + b"\0" * pad)
        offset += len(data) + pad
    header = b"GGUF" + struct.pack("<IQQ", 3, len(ts), len(kvs)) + b"".join(kvs) + b"".join(infos)
    header += b"\0" * ((-len(header)) % 32)
    with open(path, "wb") as f:
        f.write(header + b"".join(blobs))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__)
        sys.exit(2)
    seed = int(sys.argv[sys.argv.index("--seed") + 1]) if "--seed" in sys.argv else 1
    layers = int(sys.argv[sys.argv.index("--layers") + 1]) if "--layers" in sys.argv else N_LAYER
    write(sys.argv[1], seed, layers)
