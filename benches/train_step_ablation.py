#!/usr/bin/env python3
"""Where a CPU training step's time goes, measured in PyTorch itself (the same libtorch as `train`):
the peer's step (benches/train_step_torch.py) and variants of it, interleaved in one process so that
a shared machine's load falls on all alike. Variants (joined with _): prelu (D's LeakyReLU(0.2) as a
PReLU with a fixed slope, what `train` did before), freeze (D's weights frozen during G's backward,
what `train` does), cl (channels-last weights and images).

    python benches/train_step_ablation.py base,prelu,freeze,cl,freeze_cl [ROUNDS] [STEPS]
"""
import os, sys, time, torch, importlib.util
from torch import nn
spec = importlib.util.spec_from_file_location("ref", os.path.join(os.path.dirname(os.path.abspath(__file__)), "train_step_torch.py"))
ref = importlib.util.module_from_spec(spec); spec.loader.exec_module(ref)

class PReLUConst(nn.Module):
    def __init__(self):
        super().__init__(); self.register_buffer("w", torch.full([1], 0.2))
    def forward(self, x): return torch.prelu(x, self.w)

def build(variant, batch=128, width=128, zdim=256):
    torch.manual_seed(0)
    g, d = ref.Generator(width, zdim), ref.Discriminator(width)
    if "prelu" in variant:
        for i, m in enumerate(d.body):
            if isinstance(m, nn.LeakyReLU): d.body[i] = PReLUConst()
    g.apply(ref.init); d.apply(ref.init)
    cl = "cl" in variant
    if cl:
        g = g.to(memory_format=torch.channels_last); d = d.to(memory_format=torch.channels_last)
    opt_g = torch.optim.Adam(g.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), 2e-4, betas=(0.5, 0.999))
    bce = nn.BCEWithLogitsLoss()
    images = torch.randint(0, 256, (batch, 32, 32, 3), dtype=torch.uint8)
    ones, zeros = torch.ones(batch), torch.zeros(batch)
    freeze = "freeze" in variant
    def step():
        real = images.permute(0, 3, 1, 2).float() / 127.5 - 1
        if cl: real = real.contiguous(memory_format=torch.channels_last)
        z = torch.rand(batch, zdim) * 2 - 1
        fake = g(z)
        loss_d = bce(d(real), ones) + bce(d(fake.detach()), zeros)
        opt_d.zero_grad(); loss_d.backward(); opt_d.step()
        if freeze: d.requires_grad_(False)
        loss_g = bce(d(fake), ones)
        opt_g.zero_grad(); loss_g.backward(); opt_g.step()
        if freeze: d.requires_grad_(True)
        return loss_d
    return step

variants = sys.argv[1].split(",")
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 3
steps = int(sys.argv[3]) if len(sys.argv) > 3 else 3
fns = {v: build(v) for v in variants}
for v in variants:
    for _ in range(2): fns[v]()
res = {v: [] for v in variants}
for r in range(reps):
    for v in variants:
        t = time.perf_counter()
        for _ in range(steps): fns[v]().item()
        res[v].append((time.perf_counter() - t) / steps * 1000)
base = min(res[variants[0]])
for v in variants:
    print(f"{v:20s} ms/step min {min(res[v]):7.1f} median {sorted(res[v])[len(res[v])//2]:7.1f}  base/min {base/min(res[v]):.3f}", flush=True)
