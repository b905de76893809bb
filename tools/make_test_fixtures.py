#!/usr/bin/env python3
"""Writes the tiny committed fixtures of tests/data/fixtures with the real frameworks
(torch, numpy, pickle) and their expected values (expected.json). Run from that folder."""
import collections
import json
import pickle

import numpy as np
import torch

sd = collections.OrderedDict()
sd['w'] = torch.arange(12, dtype=torch.float32).reshape(3, 4) / 8
sd['h'] = torch.tensor([[1.5, -2.0], [0.25, 3.0]], dtype=torch.float16)
sd['n'] = torch.tensor(7)
sd['t'] = torch.arange(6, dtype=torch.float32).reshape(2, 3).t()  # a view: offset/strides
torch.save(sd, 'tiny_zip.pt')
torch.save(sd, 'tiny_legacy.pt', _use_new_zipfile_serialization=False)
arr = collections.OrderedDict(w=(np.arange(12, dtype=np.float32).reshape(3, 4) / 8),
                              b=np.array([1, 2, 3], dtype=np.int64))
d = dict(arr)
d['StructuredToParameterName@@'] = {'w': 'linear_0.w_0'}
pickle.dump(d, open('tiny_p2.pdparams', 'wb'), protocol=2)
pickle.dump(d, open('tiny_p4.pdparams', 'wb'), protocol=4)
np.savez('tiny.npz', **arr)
np.savez_compressed('tiny_deflated.npz', **arr)
np.save('tiny.npy', np.asfortranarray(arr['w']))
exp = {}
for k, v in sd.items():
    exp['pt:' + k] = [str(v.dtype).replace('torch.', ''), list(v.shape), v.contiguous().float().flatten().tolist()]
for k, v in arr.items():
    exp['np:' + k] = [v.dtype.name, list(v.shape), v.astype(np.float64).flatten().tolist()]
json.dump(exp, open('expected.json', 'w'), indent=1)
