#!/usr/bin/env python3
"""One imagenet32 DCGAN training step in plain PyTorch: the peer of `train --benchmark-steps`.

The same architecture, init, loss and optimiser as src/gan (3x3 convs 128-128-256-256-512-512 in D,
the mirrored G from z = 256, Adam 2e-4 / (0.5, 0.999), BCE with logits, D step then G step), random
uint8 images converted as the Rust loop converts them. Prints images/s.

    python benches/train_step_torch.py --steps 10 --batch 128 [--width 128] [--device cpu]
"""
import argparse
import time

import torch
from torch import nn


def conv(c_in, c_out, stride, bn):
    layers = [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=not bn)]
    if bn:
        layers.append(nn.BatchNorm2d(c_out))
    return layers + [nn.LeakyReLU(0.2)]


def up(c_in, c_out, stride):
    return [nn.ConvTranspose2d(c_in, c_out, 3, stride, 1, output_padding=stride - 1, bias=False),
            nn.BatchNorm2d(c_out), nn.ReLU()]


class Discriminator(nn.Module):
    def __init__(self, w):
        super().__init__()
        self.body = nn.Sequential(*conv(3, w, 1, False), *conv(w, w, 2, True), *conv(w, 2 * w, 1, True),
                                  *conv(2 * w, 2 * w, 2, True), *conv(2 * w, 4 * w, 1, True), *conv(4 * w, 4 * w, 2, True))
        self.logit = nn.Linear(4 * w * 16, 1)

    def forward(self, x):
        return self.logit(self.body(x).flatten(1)).view(-1)


class Generator(nn.Module):
    def __init__(self, w, z_dim):
        super().__init__()
        self.w = w
        self.project = nn.Sequential(nn.Linear(z_dim, 4 * w * 16, bias=False), nn.BatchNorm1d(4 * w * 16), nn.ReLU())
        self.body = nn.Sequential(*up(4 * w, 2 * w, 2), *up(2 * w, 2 * w, 1), *up(2 * w, w, 2), *up(w, w, 1),
                                  nn.ConvTranspose2d(w, 3, 3, 2, 1, output_padding=1), nn.Tanh())

    def forward(self, z):
        return self.body(self.project(z).view(-1, 4 * self.w, 4, 4))


def init(m):
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def load_npy(path):
    """A uint8 .npy as a torch tensor, without numpy (the GPU machine may not have it)."""
    with open(path, "rb") as f:
        assert f.read(6) == b"\x93NUMPY", path
        major = f.read(2)[0]
        n = int.from_bytes(f.read(2 if major == 1 else 4), "little")
        header = f.read(n).decode("latin1")
        shape = tuple(int(v) for v in header.split("'shape': (")[1].split(")")[0].split(",") if v.strip())
        assert "'|u1'" in header, header
        return torch.frombuffer(bytearray(f.read()), dtype=torch.uint8).view(shape)


class Images(torch.utils.data.Dataset):
    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i]


def train_reference(args, dev, step_fn, batch_to_device):
    """The usual PyTorch way: a DataLoader over the images, batch 128, shuffled, worker processes."""
    images = load_npy(args.data)
    if args.limit:
        images = images[: args.limit]
    loader = torch.utils.data.DataLoader(Images(images), batch_size=args.batch, shuffle=True, drop_last=True,
                                         num_workers=args.workers, pin_memory=dev.type == "cuda",
                                         persistent_workers=args.workers > 0)
    steps, start, timed_from = 0, None, 3
    deadline = time.perf_counter() + args.max_seconds
    for epoch in range(args.epochs):
        for batch in loader:
            if steps == timed_from:
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
            loss = step_fn(batch_to_device(batch))
            steps += 1
            if time.perf_counter() > deadline:
                break
        if time.perf_counter() > deadline:
            break
    loss.item()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    timed = steps - timed_from
    return timed * args.batch / (time.perf_counter() - start), steps


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="train on this uint8 .npy (train --export-images) with a DataLoader, instead of timing random batches")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--max-seconds", type=float, default=1e9)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--z-dim", type=int, default=256)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    dev = torch.device(args.device)
    # As the usual DCGAN scripts do (and as `train` does on CUDA): let cuDNN pick its fastest kernels.
    torch.backends.cudnn.benchmark = dev.type == "cuda"
    g, d = Generator(args.width, args.z_dim).to(dev), Discriminator(args.width).to(dev)
    g.apply(init)
    d.apply(init)
    opt_g = torch.optim.Adam(g.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), 2e-4, betas=(0.5, 0.999))
    bce = nn.BCEWithLogitsLoss()
    images = torch.randint(0, 256, (args.batch, 32, 32, 3), dtype=torch.uint8, device=dev)
    ones = torch.ones(args.batch, device=dev)
    zeros = torch.zeros(args.batch, device=dev)

    def step(batch=None):
        real = (images if batch is None else batch).permute(0, 3, 1, 2).float() / 127.5 - 1
        z = torch.rand(args.batch, args.z_dim, device=dev) * 2 - 1
        fake = g(z)
        loss_d = bce(d(real), ones) + bce(d(fake.detach()), zeros)
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        loss_g = bce(d(fake), ones)
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        return loss_d

    if args.data:
        rate, steps = train_reference(args, dev, step, lambda b: b.to(dev, non_blocking=True))
        print(f"pytorch {torch.__version__} DataLoader reference: imagenet32 width {args.width} batch {args.batch} on {dev}: "
              f"{rate:.1f} images/s ({steps} steps, {args.workers} workers)")
        return
    for _ in range(3):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    loss.item()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    rate = args.steps * args.batch / (time.perf_counter() - start)
    print(f"pytorch {torch.__version__}: imagenet32 width {args.width} batch {args.batch} on {dev}: {rate:.1f} images/s "
          f"({1000 * args.batch / rate:.1f} ms/step, {args.steps} steps, {torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
