#!/usr/bin/env python3
"""Writes the committed seed corpora of the fuzz targets, fuzz/corpus/<target>/: small valid
files of each format, made with the real torch and numpy (Debian's python3-torch and
python3-numpy: run it with /usr/bin/python3) and, for the container target, by the real
`wq-gpu quantize`. Deterministic: fixed values and seeds, fixed zip timestamps, and the storages
of legacy torch files (keyed by memory address) renumbered and reordered, so a rerun gives the
same bytes.

usage: /usr/bin/python3 tools/make_fuzz_corpus.py [--wq-gpu PATH] [--only TARGET,...]

Every target's folder is emptied and rewritten. --wq-gpu defaults to build/host/wq-gpu, else
build-clang/host/wq-gpu.
"""
import argparse
import collections
import io
import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, 'fuzz', 'corpus')
FIXTURES = os.path.join(ROOT, 'tests', 'data', 'fixtures')
SHARD_SEPARATOR = b'\n--wq-shard--\n'  # fuzz/fuzz_sharded_index.cpp
SHARD_NAMES = ['model-%05d-of-00003.safetensors' % k for k in (1, 2, 3)]
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
MAX_SEED_BYTES = 8192


def rng(seed):
    return np.random.default_rng(seed)


def weights(seed, *shape, dtype=np.float32):
    return (rng(seed).standard_normal(shape) * 0.5).astype(dtype)


# --- safetensors ------------------------------------------------------------------------------

def bf16_bytes(a):
    """float32 array -> bfloat16 bytes (round to nearest even), little-endian."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7fff + ((u >> 16) & 1)) >> 16
    return u.astype('<u2').tobytes()


ST_NAMES = {np.float64: 'F64', np.float32: 'F32', np.float16: 'F16', np.int64: 'I64', np.int32: 'I32',
            np.int16: 'I16', np.int8: 'I8', np.uint8: 'U8', np.bool_: 'BOOL'}


def st_tensor(name, a):
    return (name, ST_NAMES[a.dtype.type], list(a.shape), np.ascontiguousarray(a).astype(a.dtype.newbyteorder('<')).tobytes())


def safetensors(tensors, metadata=None):
    """tensors: [(name, dtype name, shape, raw bytes)], packed in order, header padded to 8."""
    header = {}
    if metadata is not None:
        header['__metadata__'] = metadata
    data = b''
    for name, dtype, shape, raw in tensors:
        header[name] = {'dtype': dtype, 'shape': shape, 'data_offsets': [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header, separators=(',', ':')).encode()
    h += b' ' * (-len(h) % 8)
    return struct.pack('<Q', len(h)) + h + data


def safetensors_seeds():
    seeds = {}
    seeds['mlp_f32.safetensors'] = safetensors(
        [st_tensor('fc1.weight', weights(1, 6, 4)), st_tensor('fc1.bias', weights(2, 6)),
         st_tensor('fc2.weight', weights(3, 2, 6)), st_tensor('fc2.bias', weights(4, 2))], {'format': 'pt'})
    f = weights(5, 2, 3)
    seeds['every_dtype.safetensors'] = safetensors([
        st_tensor('f64', weights(6, 2, 2, dtype=np.float64)), st_tensor('f32', f),
        st_tensor('f16', weights(7, 3, 2, dtype=np.float16)), ('bf16', 'BF16', [2, 3], bf16_bytes(f)),
        st_tensor('i64', np.array(7, dtype=np.int64)), st_tensor('i32', np.array([-1, 2], dtype=np.int32)),
        st_tensor('i16', np.array([3, -4], dtype=np.int16)), st_tensor('i8', np.array([-5, 6, 7], dtype=np.int8)),
        st_tensor('u8', np.array([0, 1, 254, 255], dtype=np.uint8)),
        st_tensor('bool', np.array([True, False], dtype=np.bool_))])
    seeds['empty_tensors.safetensors'] = safetensors([
        st_tensor('none', np.zeros((0,), np.float32)), st_tensor('rows', np.zeros((2, 0), np.float16)),
        st_tensor('scalar', np.array(1.5, dtype=np.float32))])
    seeds['metadata_only.safetensors'] = safetensors([], {'format': 'pt', 'note': 'no tensors'})
    # Real names and values: the small tensors of the bundled example (examples/).
    example = os.path.join(ROOT, 'examples', 'student_net.safetensors')
    with open(example, 'rb') as fp:
        blob = fp.read()
    n = struct.unpack('<Q', blob[:8])[0]
    header = json.loads(blob[8:8 + n])
    picked, total = [], 0
    for name, e in header.items():
        if name == '__metadata__':
            continue
        b, end = e['data_offsets']
        if end - b <= 512 and total + end - b <= 2500:
            picked.append((name, e['dtype'], e['shape'], blob[8 + n + b:8 + n + end]))
            total += end - b
    seeds['student_net_small.safetensors'] = safetensors(picked, header.get('__metadata__'))
    return seeds


# --- sharded safetensors ------------------------------------------------------------------------

def shard_seed(shards, metadata=True):
    """shards: a list of [(name, array)] per shard, named model-0000k-of-00003.safetensors."""
    weight_map = {}
    files = []
    total = 0
    for k, tensors in enumerate(shards):
        files.append(safetensors([st_tensor(name, a) for name, a in tensors]))
        for name, a in tensors:
            weight_map[name] = SHARD_NAMES[k]
            total += a.nbytes
    index = {'metadata': {'total_size': total}, 'weight_map': weight_map} if metadata else {'weight_map': weight_map}
    return json.dumps(index, indent=2).encode() + b''.join(SHARD_SEPARATOR + f for f in files)


def sharded_seeds():
    return {
        'one_shard.bin': shard_seed([[('w', weights(10, 3, 4)), ('b', weights(11, 3))]]),
        'two_shards.bin': shard_seed([[('model.embed.weight', weights(12, 5, 4))],
                                      [('model.head.weight', weights(13, 2, 4)), ('model.head.bias', weights(14, 2))]]),
        'three_shards.bin': shard_seed([[('a', weights(15, 2, 2, dtype=np.float16))],
                                        [('b', np.arange(4, dtype=np.int64))],
                                        [('c', weights(16, 4, dtype=np.float64)), ('d', np.array(True))]], metadata=False),
    }


# --- torch ---------------------------------------------------------------------------------------

def torch_state_dicts():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 2), torch.nn.BatchNorm2d(3), torch.nn.ReLU(),
                              torch.nn.Flatten(), torch.nn.Linear(3, 2))
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6) / 8
    views = collections.OrderedDict()
    views['row'] = base[1]                    # offset into a shared storage
    views['rows'] = base[2:]
    views['t'] = base.t()                     # strides
    views['step'] = base[:, ::2]              # non-contiguous
    views['whole'] = base
    dtypes = collections.OrderedDict()
    for dt in (torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32,
               torch.int16, torch.int8, torch.uint8, torch.bool):
        dtypes[str(dt).replace('torch.', '')] = (torch.arange(6).reshape(2, 3) - 2).to(dt)
    dtypes['scalar'] = torch.tensor(3.5)
    dtypes['empty'] = torch.zeros(0, 4)
    nested = {'model': collections.OrderedDict(w=base[:2].clone(), b=torch.ones(2)),
              'epoch': 3, 'name': 'tiny', 'layers': {0: torch.zeros(2), 1: torch.ones(2, 2)}}
    params = collections.OrderedDict(w=torch.nn.Parameter(torch.full((2, 2), 0.5)),
                                     frozen=torch.nn.Parameter(torch.ones(3), requires_grad=False))
    return {'net': net.state_dict(), 'views': views, 'dtypes': dtypes, 'nested': nested, 'params': params}


def torch_bytes(obj, legacy, name='model'):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, name + '.pt')
        torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
        with open(path, 'rb') as fp:
            data = fp.read()
    return canonical_legacy(data) if legacy else data


LEGACY_ELEMENT_BYTES = {'DoubleStorage': 8, 'FloatStorage': 4, 'HalfStorage': 2, 'BFloat16Storage': 2,
                        'LongStorage': 8, 'IntStorage': 4, 'ShortStorage': 2, 'CharStorage': 1, 'ByteStorage': 1,
                        'BoolStorage': 1}


def canonical_legacy(data):
    """Legacy files key storages by memory address and store them in the order of those keys:
    renumber them 0, 1, ... in order of first use and store them in that order."""
    f = io.BytesIO(data)
    for _ in range(3):  # magic, protocol version, sys_info
        pickle.load(f)
    object_start = f.tell()
    element_bytes = collections.OrderedDict()  # key -> element size, in order of first use

    class Objects(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) == ('collections', 'OrderedDict'):
                return collections.OrderedDict
            if module == 'torch' and name in LEGACY_ELEMENT_BYTES:
                return name
            return lambda *args: None

        def persistent_load(self, pid):
            element_bytes.setdefault(pid[2], LEGACY_ELEMENT_BYTES[pid[1]])

    Objects(f).load()
    objects = data[object_start:f.tell()]
    keys = pickle.load(f)
    pos = f.tell()
    records = {}
    for key in keys:
        numel = struct.unpack('<q', data[pos:pos + 8])[0]
        records[key] = data[pos:pos + 8 + numel * element_bytes[key]]
        pos += len(records[key])
    assert pos == len(data) and set(records) == set(element_bytes)
    order = list(element_bytes)
    for i, key in enumerate(order):
        objects = objects.replace(b'X' + struct.pack('<I', len(key)) + key.encode(),
                                  b'X' + struct.pack('<I', len(str(i))) + str(i).encode())
    return (data[:object_start] + objects + pickle.dumps([str(i) for i in range(len(order))], protocol=2) +
            b''.join(records[k] for k in order))


def rezip(data, top=None, compression=zipfile.ZIP_STORED):
    """The same archive with another top folder and/or deflated members."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, 'w') as dst:
        for info in src.infolist():
            name = info.filename
            if top is not None:
                name = top + '/' + name.split('/', 1)[1]
            zi = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            zi.compress_type = compression
            dst.writestr(zi, src.read(info.filename))
    return out.getvalue()


def torch_zip_seeds():
    sds = torch_state_dicts()
    seeds = {k + '.pt': torch_bytes(v, legacy=False) for k, v in sds.items()}
    seeds['fixture_tiny_zip.pt'] = open(os.path.join(FIXTURES, 'tiny_zip.pt'), 'rb').read()
    small = torch_bytes(collections.OrderedDict(w=torch.arange(6.).reshape(2, 3), b=torch.ones(3)), legacy=False)
    seeds['deflated.pt'] = rezip(small, compression=zipfile.ZIP_DEFLATED)
    seeds['top_folder_archive.pt'] = rezip(small, top='archive')
    return seeds


def torch_legacy_seeds():
    sds = torch_state_dicts()
    seeds = {k + '_legacy.pt': torch_bytes(v, legacy=True) for k, v in sds.items()}
    seeds['fixture_tiny_legacy.pt'] = open(os.path.join(FIXTURES, 'tiny_legacy.pt'), 'rb').read()
    return seeds


# --- Paddle -------------------------------------------------------------------------------------

def pdparams_seeds():
    w = weights(20, 3, 4)
    seeds = {}
    d = {'linear_0.w_0': w, 'linear_0.b_0': weights(21, 4),
         'StructuredToParameterName@@': {'fc.weight': 'linear_0.w_0', 'fc.bias': 'linear_0.b_0'}}
    for proto in (2, 3, 4, 5):
        seeds['linear_p%d.pdparams' % proto] = pickle.dumps(d, protocol=proto)
    seeds['dtypes_p4.pdparams'] = pickle.dumps({
        'f64': weights(22, 2, 2, dtype=np.float64), 'f16': weights(23, 3, dtype=np.float16),
        'bf16_as_u16': np.frombuffer(bf16_bytes(weights(24, 2, 3)), dtype='<u2').reshape(2, 3),
        'i64': np.arange(3, dtype=np.int64), 'i32': np.array([1, -2], np.int32), 'i16': np.array([3], np.int16),
        'i8': np.array([-4, 5], np.int8), 'u8': np.array([6, 7], np.uint8), 'flag': np.array([True, False]),
        'scalar': np.array(2.5, np.float32), 'empty': np.zeros((0, 3), np.float32)}, protocol=4)
    seeds['layouts_p2.pdparams'] = pickle.dumps({
        'fortran': np.asfortranarray(weights(25, 3, 4)), 'big_endian': weights(26, 2, 3).astype('>f4'),
        'big_i64': np.arange(4, dtype='>i8'), 'strided': weights(27, 4, 6)[:, ::2].copy()}, protocol=2)
    big = weights(28, 4, 3)
    seeds['big_param_slices_p2.pdparams'] = pickle.dumps({
        'UnpackBigParamInfor@@': {'big.w_0': {'OriginShape': (4, 3), 'slices': ['big.w_0@@.0', 'big.w_0@@.1']}},
        'big.w_0@@.0': big[:2].copy(), 'big.w_0@@.1': big[2:].copy(), 'small': weights(29, 2)}, protocol=2)
    seeds['nested_p3.pdparams'] = pickle.dumps({
        'model': {'encoder': {'w': weights(30, 2, 2)}, 'step': 10},
        'named': ('linear_1.w_0', weights(31, 2, 3)), 'lr': 0.001, 'np_scalar': np.float32(1.0)}, protocol=3)
    seeds['fixture_tiny_p2.pdparams'] = open(os.path.join(FIXTURES, 'tiny_p2.pdparams'), 'rb').read()
    seeds['fixture_tiny_p4.pdparams'] = open(os.path.join(FIXTURES, 'tiny_p4.pdparams'), 'rb').read()
    return seeds


# --- numpy --------------------------------------------------------------------------------------

def npy_bytes(a, version=None):
    out = io.BytesIO()
    np.lib.format.write_array(out, a, version=version, allow_pickle=False)
    return out.getvalue()


def npy_seeds():
    w = weights(40, 3, 4)
    return {
        'f32_v1.npy': npy_bytes(w, (1, 0)),
        'f64_fortran.npy': npy_bytes(np.asfortranarray(weights(41, 3, 2, dtype=np.float64))),
        'f16_v2.npy': npy_bytes(weights(42, 2, 5, dtype=np.float16), (2, 0)),
        'i32_big_endian_v3.npy': npy_bytes(np.arange(6, dtype='>i4').reshape(2, 3), (3, 0)),
        'i64_3d.npy': npy_bytes(np.arange(12, dtype=np.int64).reshape(2, 3, 2)),
        'i16.npy': npy_bytes(np.array([-3, 4], np.int16)), 'i8.npy': npy_bytes(np.array([-1, 2, 3], np.int8)),
        'u8.npy': npy_bytes(np.array([0, 255], np.uint8)), 'bool.npy': npy_bytes(np.array([[True], [False]])),
        'scalar.npy': npy_bytes(np.array(1.25, np.float32)), 'empty.npy': npy_bytes(np.zeros((0, 3), np.float32)),
        'fixture_tiny.npy': open(os.path.join(FIXTURES, 'tiny.npy'), 'rb').read(),
    }


def npz_bytes(arrays, compression=zipfile.ZIP_STORED, force_zip64=False):
    """np.savez's layout (NAME.npy members), with fixed timestamps."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, 'w', compression=compression, allowZip64=True) as z:
        for name, a in arrays.items():
            zi = zipfile.ZipInfo(name + '.npy', date_time=ZIP_DATE)
            zi.compress_type = compression
            with z.open(zi, 'w', force_zip64=force_zip64) as member:
                member.write(npy_bytes(a))
    return out.getvalue()


def npz_seeds():
    arrays = collections.OrderedDict(w=weights(50, 3, 4), b=np.arange(3, dtype=np.int64))
    mixed = collections.OrderedDict(f16=weights(51, 2, 2, dtype=np.float16), f64=np.asfortranarray(weights(52, 2, 3, dtype=np.float64)),
                                    be=np.arange(4, dtype='>i2'), flag=np.array([True, False]),
                                    scalar=np.array(3.0, np.float32), empty=np.zeros((0,), np.uint8))
    return {
        'stored.npz': npz_bytes(arrays),
        'deflated.npz': npz_bytes(arrays, zipfile.ZIP_DEFLATED),
        'zip64.npz': npz_bytes(arrays, force_zip64=True),
        'mixed.npz': npz_bytes(mixed),
        'one_member.npz': npz_bytes({'arr_0': weights(53, 5)}),
        'fixture_tiny.npz': open(os.path.join(FIXTURES, 'tiny.npz'), 'rb').read(),
        'fixture_tiny_deflated.npz': open(os.path.join(FIXTURES, 'tiny_deflated.npz'), 'rb').read(),
    }


# --- WQ containers --------------------------------------------------------------------------------

CONTAINER_RUNS = [
    ('minmax8_channel', []),
    ('minmax4_group4', ['--bits', '4', '--granularity', 'group', '--group-size', '4']),
    ('minmax3_tensor', ['--bits', '3', '--granularity', 'tensor']),
    ('minmax1_all', ['--bits', '1', '--all']),
    ('minmax7_group3_f16scale', ['--bits', '7', '--granularity', 'group', '--group-size', '3', '--scale-dtype', 'f16']),
    ('minmax2_all_f16scale', ['--bits', '2', '--all', '--scale-dtype', 'f16', '--granularity', 'group', '--group-size', '5']),
    ('symmetric4_group4_v2', ['--method', 'symmetric', '--bits', '4', '--granularity', 'group', '--group-size', '4']),
    ('symmetric1_all_f16scale_v2', ['--method', 'symmetric', '--bits', '1', '--all', '--scale-dtype', 'f16']),
    ('mse3_group5', ['--method', 'mse', '--bits', '3', '--granularity', 'group', '--group-size', '5']),
    ('fp16', ['--method', 'fp16']),
    ('bf16_all', ['--method', 'bf16', '--all']),
]


def container_seeds(wq_gpu):
    source = safetensors([
        st_tensor('conv.weight', weights(60, 4, 2, 3)), st_tensor('conv.bias', weights(61, 4)),
        st_tensor('fc.weight', weights(62, 3, 7, dtype=np.float16)),
        ('emb.weight', 'BF16', [5, 4], bf16_bytes(weights(63, 5, 4))),
        st_tensor('proj.weight', weights(64, 2, 6, dtype=np.float64)),
        st_tensor('constant', np.full((2, 3), 0.25, np.float32)),
        st_tensor('steps', np.array(12, dtype=np.int64)), st_tensor('mask', np.array([1, 0, 1], dtype=np.uint8))])
    seeds = {}
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, 'model.safetensors')
        with open(src, 'wb') as fp:
            fp.write(source)
        inputs = [(src, CONTAINER_RUNS), (os.path.join(FIXTURES, 'tiny_p2.pdparams'), [('from_pdparams_minmax6', ['--bits', '6'])]),
                  (os.path.join(FIXTURES, 'tiny_zip.pt'), [('from_torch_minmax5_all', ['--bits', '5', '--all'])])]
        for path, runs in inputs:
            for name, flags in runs:
                out = os.path.join(tmp, name + '.wq.safetensors')
                subprocess.run([wq_gpu, 'quantize', path, '-o', out, '-q', '--backend', 'cpu', '--threads', '1'] + flags,
                               check=True)
                with open(out, 'rb') as fp:
                    seeds[name + '.wq.safetensors'] = fp.read()
    return seeds


# --- GGUF ---------------------------------------------------------------------------------------------

GGUF_RUNS = [('q8_0', 'Q8_0'), ('q4_0', 'Q4_0'), ('q5_1', 'Q5_1'), ('q2_k', 'Q2_K'), ('q3_k', 'Q3_K'),
             ('q6_k', 'Q6_K'), ('f16', 'F16'), ('bf16', 'BF16')]


def gguf_seeds(wq_gpu):
    """GGUF files written by wq-gpu (every block family, plain types, an int64 scalar, a 4-d
    tensor, a fallback to F16), and one written from a GGUF (metadata copied)."""
    source = safetensors([
        st_tensor('blk.0.attn_q.weight', weights(70, 2, 256)), st_tensor('blk.0.ffn_up.weight', weights(71, 3, 32)),
        st_tensor('blk.0.conv.weight', weights(72, 1, 2, 1, 32)), st_tensor('blk.0.odd.weight', weights(73, 2, 5)),
        st_tensor('blk.0.attn_norm.weight', weights(74, 8)), st_tensor('steps', np.array(3, dtype=np.int64))])
    seeds = {}
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, 'model.safetensors')
        with open(src, 'wb') as fp:
            fp.write(source)
        for name, gtype in GGUF_RUNS:
            out = os.path.join(tmp, name + '.gguf')
            subprocess.run([wq_gpu, 'quantize', src, '-o', out, '--type', gtype, '-q', '--backend', 'cpu', '--threads', '1'],
                           check=True)
            with open(out, 'rb') as fp:
                seeds[name + '.gguf'] = fp.read()
        requant = os.path.join(tmp, 'requant.gguf')
        subprocess.run([wq_gpu, 'quantize', os.path.join(tmp, 'q8_0.gguf'), '-o', requant, '--type', 'Q5_0',
                        '--allow-requantize', '-q', '--backend', 'cpu', '--threads', '1'], check=True)
        with open(requant, 'rb') as fp:
            seeds['requant_q5_0.gguf'] = fp.read()
    return seeds


# --- rules ------------------------------------------------------------------------------------------

def rules_seeds():
    readme_json = b'{"rules": [\n  {"match": "*.mlp.*", "bits": 4, "group": 64},\n  {"match": "*embed_tokens*", "keep": true}\n]}\n'
    readme_toml = (b'[[rules]]\nmatch = "*.mlp.*"\nbits = 4\ngroup = 64\n\n'
                   b'[[rules]]\nmatch = "*embed_tokens*"\nkeep = true\n')
    every_key_json = json.dumps({'rules': [
        {'match': 'layers.[0-3].*', 'bits': 2, 'granularity': 'channel', 'method': 'minmax', 'scale': 'f16'},
        {'match': 'head?', 'keep': False, 'method': 'bf16'},
        {'match': '*.norm.*', 'keep': True},
        {'match': '*', 'group': 32, 'granularity': 'group', 'bits': '5'}]}, indent=1).encode()
    every_key_toml = (b'# per-layer settings\n[[rules]]\nmatch = "layers.[0-3].*"\nbits = 2\ngranularity = "tensor"\n'
                      b'method = "minmax"\nscale = "f16"\n\n[[rules]]\nmatch = \'head?\'\nmethod = "fp16"\n\n'
                      b'[[rules]]\nmatch = "*.norm.*"\nkeep = true\n')
    return {
        'readme.json': readme_json, 'readme.toml': readme_toml,
        'every_key.json': every_key_json, 'every_key.toml': every_key_toml,
        'rule_mlp.txt': b'*.mlp.*=bits:4,group:64', 'rule_attn.txt': b'*.self_attn.*=bits:6',
        'rule_keep.txt': b'*embed_tokens*=keep',
        'rule_every_key.txt': b' layer.[0-3].* = granularity:tensor, method:minmax, scale:f16, bits:3 ',
        'rule_cast.txt': b'*=method:fp16', 'rule_group_then_channel.txt': b'w?=group:8,granularity:channel',
    }


# ------------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--wq-gpu', help='the wq-gpu binary that writes the container seeds')
    ap.add_argument('--only', help='comma-separated targets to rewrite (default: all)')
    args = ap.parse_args()
    wq_gpu = args.wq_gpu
    if wq_gpu is None:
        for candidate in ('build/host/wq-gpu', 'build-clang/host/wq-gpu'):
            if os.access(os.path.join(ROOT, candidate), os.X_OK):
                wq_gpu = os.path.join(ROOT, candidate)
                break
    makers = collections.OrderedDict([
        ('fuzz_safetensors', safetensors_seeds), ('fuzz_sharded_index', sharded_seeds),
        ('fuzz_torch_zip', torch_zip_seeds), ('fuzz_torch_legacy', torch_legacy_seeds),
        ('fuzz_pdparams', pdparams_seeds), ('fuzz_npy', npy_seeds), ('fuzz_npz', npz_seeds),
        ('fuzz_container', lambda: container_seeds(wq_gpu)), ('fuzz_rules', rules_seeds),
        ('fuzz_gguf', lambda: gguf_seeds(wq_gpu))])
    only = set(args.only.split(',')) if args.only else set(makers)
    unknown = only - set(makers)
    if unknown:
        sys.exit('unknown targets: ' + ', '.join(sorted(unknown)))
    if ('fuzz_container' in only or 'fuzz_gguf' in only) and wq_gpu is None:
        sys.exit('no wq-gpu binary: build one (scripts/build.sh) or pass --wq-gpu')
    for target, make in makers.items():
        if target not in only:
            continue
        seeds = make()
        folder = os.path.join(CORPUS, target)
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        for name, data in sorted(seeds.items()):
            if len(data) > MAX_SEED_BYTES:
                sys.exit('%s/%s is %d bytes: seeds must stay small (at most %d)' % (target, name, len(data), MAX_SEED_BYTES))
            with open(os.path.join(folder, name), 'wb') as fp:
                fp.write(data)
        print('%-20s %2d seeds, %6d bytes' % (target, len(seeds), sum(len(d) for d in seeds.values())))


if __name__ == '__main__':
    main()
