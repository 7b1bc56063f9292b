"""How many pairs of distinct images come within r bits, measured on a large set rather than
extrapolated: the centred autoencoder (as in the stage: 3000 steps of 128, de-noising 0.2, dropout
0.2, each crop minus its own mean) trained on N images, every pair of their codes counted by radius.

    .venv/bin/python benches/dedupe_radius_scale.py IMAGES.npy   # N x 32 x 32 x 3 uint8

Used with CIFAR-10's 50,000 training images (1.25e9 pairs; near copies inside CIFAR-10 are rare, so
the counts bound the false-pair rate from above) to check the default radius (docs/dedupe.md).
"""

import sys

import numpy as np
import torch

sys.path.insert(0, "benches")
import dedupe_ae_variants as variants  # noqa: E402


def main():
    x = np.load(sys.argv[1])
    torch.set_num_threads(2)
    v = variants.VARIANTS["mean"]
    model, mean = variants.train(x, v, 0)
    bits = torch.from_numpy(variants.codes(model, mean, x, v["per_image"])).float()
    n = len(bits)
    counts = torch.zeros(129, dtype=torch.float64)
    for start in range(0, n, 2000):
        b = bits[start:start + 2000]
        d = b @ (1 - bits).T + (1 - b) @ bits.T  # Hamming distances of this block to all
        rows = torch.arange(start, start + len(b)).view(-1, 1)
        upper = torch.arange(n).view(1, -1) > rows  # each pair once
        counts += torch.bincount(d[upper].long(), minlength=129).double()
    pairs = n * (n - 1) / 2
    cum = counts.cumsum(0)
    print(f"{n} images, {pairs:.3g} pairs; mean distance {(counts * torch.arange(129)).sum() / pairs:.1f}")
    print("radius | pairs within | per pair | expected in 3M images")
    for r in [0, 4, 8, 12, 14, 16, 18, 20, 23, 25, 28, 30]:
        rate = cum[r].item() / pairs
        print(f"{r} | {int(cum[r].item())} | {rate:.2e} | {rate * 4.5e12:.3g}")


if __name__ == "__main__":
    main()
