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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--z-dim", type=int, default=256)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    dev = torch.device(args.device)
    g, d = Generator(args.width, args.z_dim).to(dev), Discriminator(args.width).to(dev)
    g.apply(init)
    d.apply(init)
    opt_g = torch.optim.Adam(g.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), 2e-4, betas=(0.5, 0.999))
    bce = nn.BCEWithLogitsLoss()
    images = torch.randint(0, 256, (args.batch, 32, 32, 3), dtype=torch.uint8, device=dev)
    ones = torch.ones(args.batch, device=dev)
    zeros = torch.zeros(args.batch, device=dev)

    def step():
        real = images.permute(0, 3, 1, 2).float() / 127.5 - 1
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
