#!/usr/bin/env python3
"""Build examples/student_net.safetensors: a small trained CNN classifier.

The network resembles the "student net" of the weight-quantization assignment wq grew out
of: a depthwise-separable CNN of base width 16 with BatchNorm and an 11-class linear head
(about 250k parameters, about 1 MB as float32). It is trained for a few hundred steps on a
fixed synthetic 11-class image set so that its weights, BatchNorm statistics and
num_batches_tracked counters are those of a trained model, not of an initialisation.

Needs torch (Debian's python3-torch 1.13 is enough); writes safetensors with its
own small writer, since torch 1.13 has no safetensors support.

    /usr/bin/python3 tools/make_example_checkpoint.py [-o examples/student_net.safetensors]
                                                      [--steps 300]
"""

import argparse
import json
import os
import struct
import sys
import time

import torch
from torch import nn

NUM_CLASSES = 11
IMAGE = 32


def dw_block(cin, cout, pool):
    """Depthwise 3x3 (+BN, ReLU6) then pointwise 1x1 (+BN, ReLU6), optional 2x2 max-pool."""
    layers = [
        nn.Conv2d(cin, cin, 3, 1, 1, groups=cin),
        nn.BatchNorm2d(cin),
        nn.ReLU6(),
        nn.Conv2d(cin, cout, 1),
        nn.BatchNorm2d(cout),
        nn.ReLU6(),
    ]
    if pool:
        layers.append(nn.MaxPool2d(2, 2, 0))
    return nn.Sequential(*layers)


class StudentNet(nn.Module):
    def __init__(self, base_width=16, num_classes=NUM_CLASSES):
        super().__init__()
        bw = base_width
        self.stem = nn.Sequential(
            nn.Conv2d(3, bw, 3, 1, 1),
            nn.BatchNorm2d(bw),
            nn.ReLU6(),
            nn.MaxPool2d(2, 2, 0),
        )
        self.blocks = nn.Sequential(
            dw_block(bw, bw * 2, pool=True),       # 16 -> 32
            dw_block(bw * 2, bw * 4, pool=True),   # 32 -> 64
            dw_block(bw * 4, bw * 8, pool=False),  # 64 -> 128
            dw_block(bw * 8, bw * 8, pool=True),   # 128 -> 128
            dw_block(bw * 8, bw * 8, pool=False),
            dw_block(bw * 8, bw * 8, pool=False),
            dw_block(bw * 8, bw * 16, pool=False),  # 128 -> 256
            dw_block(bw * 16, bw * 16, pool=False),
            dw_block(bw * 16, bw * 16, pool=False),
        )
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(bw * 16, num_classes)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.fc(self.pool(x).flatten(1))


def synthetic_dataset(n, seed=1234, template_seed=2024):
    """Fixed 11-class images: each class is a smooth random template (the same for every
    split); samples are a randomly scaled, shifted, noisy copy of their class's template."""
    coarse = torch.randn(NUM_CLASSES, 3, 8, 8,
                         generator=torch.Generator().manual_seed(template_seed))
    g = torch.Generator().manual_seed(seed)
    templates = nn.functional.interpolate(coarse, size=(IMAGE, IMAGE), mode="bilinear",
                                          align_corners=False)
    labels = torch.randint(0, NUM_CLASSES, (n,), generator=g)
    amp = 0.5 + torch.rand(n, 1, 1, 1, generator=g)
    x = templates[labels] * amp + 2.5 * torch.randn(n, 3, IMAGE, IMAGE, generator=g)
    shifts = torch.randint(-3, 4, (n, 2), generator=g)
    for i in range(n):
        x[i] = torch.roll(x[i], shifts=(int(shifts[i, 0]), int(shifts[i, 1])), dims=(1, 2))
    return x, labels


# --------------------------------------------------------------------------------------
# safetensors writer (own implementation)

ST_DTYPES = {
    torch.float32: ("F32", "<f4"),
    torch.float16: ("F16", "<f2"),
    torch.float64: ("F64", "<f8"),
    torch.int64: ("I64", "<i8"),
    torch.int32: ("I32", "<i4"),
    torch.int16: ("I16", "<i2"),
    torch.int8: ("I8", "i1"),
    torch.uint8: ("U8", "u1"),
    torch.bool: ("BOOL", "?"),
}


def tensor_bytes(t):
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        return "BF16", t.view(torch.int16).numpy().astype("<i2").tobytes()
    name, npdt = ST_DTYPES[t.dtype]
    return name, t.numpy().astype(npdt, copy=False).tobytes()


def write_safetensors(path, tensors, metadata=None):
    """tensors: ordered mapping name -> torch tensor. Data is laid out in that order."""
    header = {"__metadata__": dict(metadata or {"format": "pt"})}
    blobs = []
    offset = 0
    for name, t in tensors.items():
        dtype, raw = tensor_bytes(t)
        header[name] = {"dtype": dtype, "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # data buffer starts 8-aligned
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-o", "--output",
                    default=os.path.join(here, "..", "examples", "student_net.safetensors"))
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(2)
    t0 = time.time()
    x, y = synthetic_dataset(4096)
    xv, yv = synthetic_dataset(1024, seed=4321)
    model = StudentNet()
    nparams = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=args.steps)
    lossf = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(99)
    model.train()
    for step in range(args.steps):
        idx = torch.randint(0, x.shape[0], (args.batch,), generator=g)
        loss = lossf(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0 or step == args.steps - 1:
            print(f"step {step:4d} loss {loss.item():.4f}", file=sys.stderr)
    model.eval()
    with torch.no_grad():
        acc = (model(xv).argmax(1) == yv).float().mean().item()
    sd = model.state_dict()
    write_safetensors(args.output, sd, {"format": "pt"})
    print(f"wrote {os.path.normpath(args.output)}: {len(sd)} tensors, {nparams} parameters, "
          f"{os.path.getsize(args.output)} bytes; held-out accuracy {acc:.4f}; "
          f"{time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
