"""Tries autoencoder-hash variants on dedupe's labelled evaluation set, quickly, in PyTorch.

`dedupe --eval` writes the set it scores (eval-inputs.npy: N x 32 x 32 x 3 uint8, the network's
inputs after the stage's decode and crop; eval-items.jsonl: group, split, edits). This script
trains the paper's 3072-128-3072 de-noising dropout ReLU autoencoder on the tune split under
several input and corruption settings and prints, for each, the radius chosen on the tune split
(highest recall at precision >= 0.99) with its test-split precision and recall, and the test
recall at precision >= 0.99 and >= 0.995 for any radius (the curve's reach). It was used to choose
the stage's settings; the Rust stage is what users run and what the table in docs/dedupe.md measures.

    .venv/bin/python benches/dedupe_ae_variants.py out/dedupe-eval [variant ...]

SEEDS=0,1,2 repeats each variant; TRANSDUCTIVE=1 trains a second model on the test split for the
test codes (the stage hashes the images its model trained on).
"""

import json
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F


def load(folder):
    x = np.load(f"{folder}/eval-inputs.npy")
    items = [json.loads(line) for line in open(f"{folder}/eval-items.jsonl")]
    groups = np.array([it["group"] for it in items])
    splits = np.array([it["split"] for it in items])
    edits = [it["edits"] for it in items]
    return x, groups, splits, edits


def to_input(x_uint8, per_image):
    """uint8 N x 32 x 32 x 3 -> float N x 3072 in [-1, 1], optionally normalised per image."""
    x = torch.from_numpy(x_uint8).float().view(len(x_uint8), -1) / 127.5 - 1.0
    return normalise(x, per_image)


def normalise(x, per_image):
    if per_image == "none":
        return x
    v = x.view(len(x), -1, 3)  # pixels x channels (HWC order)
    if per_image in ("mean", "mean_std"):
        v = v - v.mean(dim=(1, 2), keepdim=True)
    if per_image in ("channel_mean", "channel_mean_std"):
        v = v - v.mean(dim=1, keepdim=True)
    if per_image.endswith("std"):
        v = v / (v.flatten(1).std(dim=1).view(-1, 1, 1) + 0.05)
    return v.reshape(len(x), -1)


def corrupt_geometry(x_uint8_batch, strength):
    """Random small zoom and shift of N x 32 x 32 x 3 float images (a crop edit's effect)."""
    n = x_uint8_batch.shape[0]
    img = x_uint8_batch.view(n, 32, 32, 3).permute(0, 3, 1, 2)
    zoom = 1.0 - torch.rand(n) * 0.1 * strength
    shift = (torch.rand(n, 2) * 2 - 1) * 0.05 * strength
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = zoom
    theta[:, 1, 1] = zoom
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, img.shape, align_corners=False)
    out = F.grid_sample(img, grid, padding_mode="border", align_corners=False)
    return out.permute(0, 2, 3, 1).reshape(n, -1)


class AE(torch.nn.Module):
    def __init__(self, bias=True):
        super().__init__()
        self.enc = torch.nn.Linear(3072, 128, bias=bias)
        self.dec = torch.nn.Linear(128, 3072)


def train(x_train_uint8, v, seed):
    torch.manual_seed(seed)
    raw = torch.from_numpy(x_train_uint8).float().view(len(x_train_uint8), -1) / 127.5 - 1.0
    clean_all = normalise(raw, v["per_image"])
    mean = clean_all.mean(0) if v.get("centre", True) else torch.zeros(3072)
    model = AE(bias=v.get("bias", True))
    opt = torch.optim.Adam(model.parameters(), lr=v.get("lr", 1e-3), weight_decay=v.get("wd", 0.0))
    n = len(raw)
    for step in range(v.get("steps", 3000)):
        pick = torch.randint(n, (v.get("batch", 128),))
        clean = clean_all[pick] - mean
        noisy_raw = raw[pick]
        if v.get("geometry", 0) > 0:
            noisy_raw = corrupt_geometry(noisy_raw, v["geometry"])
        if v.get("photometric", 0) > 0:
            s = v["photometric"]
            c = 1 + (torch.rand(len(pick), 1) * 2 - 1) * 0.1 * s
            b = (torch.rand(len(pick), 1) * 2 - 1) * 0.2 * s
            noisy_raw = ((noisy_raw * c + b).clamp(-1, 1))
        noisy = normalise(noisy_raw, v["per_image"]) - mean
        noisy = noisy + torch.randn_like(noisy) * v.get("noise", 0.2)
        code = F.dropout(torch.relu(model.enc(noisy)), v.get("dropout", 0.2), True)
        loss = F.mse_loss(model.dec(code), clean)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model, mean


def codes(model, mean, x_uint8, per_image):
    with torch.no_grad():
        pre = model.enc(to_input(x_uint8, per_image) - mean)
    return (pre > 0).numpy()


def hamming(bits):
    b = bits.astype(np.float32)
    return (b @ (1 - b).T + (1 - b) @ b.T).astype(np.int32)


def curve(bits, groups, max_r=40):
    d = hamming(bits)
    iu = np.triu_indices(len(bits), 1)
    dist = d[iu]
    same = groups[iu[0]] == groups[iu[1]]
    positives = same.sum()
    out = []
    for r in range(max_r + 1):
        called = dist <= r
        tp = (called & same).sum()
        pc = called.sum()
        out.append((r, pc, tp / pc if pc else 1.0, tp / positives))
    return out, d


def choose(points, target=0.99):
    ok = [p for p in points if p[2] >= target and p[1] > 0]
    return max(ok, key=lambda p: (p[3], -p[0]))[0] if ok else None


def reach(points, target):
    ok = [p[3] for p in points if p[2] >= target]
    return max(ok) if ok else 0.0


VARIANTS = {
    "paper": dict(per_image="none"),
    "mean": dict(per_image="mean"),
    "channel_mean": dict(per_image="channel_mean"),
    "mean_std": dict(per_image="mean_std"),
    "mean_std_nobias": dict(per_image="mean_std", bias=False),
    "photo_mean": dict(per_image="mean", photometric=1.0),
    "photo_channel_mean": dict(per_image="channel_mean", photometric=1.0),
    "geom": dict(per_image="none", geometry=1.0),
    "photo": dict(per_image="none", photometric=1.0),
    "mean_std_geom": dict(per_image="mean_std", geometry=1.0),
    "mean_std_geom_photo": dict(per_image="mean_std", geometry=1.0, photometric=1.0),
    "mean_std_nobias_geom": dict(per_image="mean_std", geometry=1.0, bias=False),
}


def main():
    folder = sys.argv[1]
    names = sys.argv[2:] or list(VARIANTS)
    seeds = [int(s) for s in (__import__("os").environ.get("SEEDS", "0").split(","))]
    transductive = __import__("os").environ.get("TRANSDUCTIVE") == "1"
    show_curve = __import__("os").environ.get("CURVE") == "1"
    torch.set_num_threads(2)
    x, groups, splits, edits = load(folder)
    tune, test = splits == 0, splits == 1
    print(f"{len(x)} items, tune {tune.sum()}, test {test.sum()}")
    print("variant | seed | r(tune) | test P | test R | R@P.99 | R@P.995 | s")
    for name in names:
        v = VARIANTS[name] if name in VARIANTS else eval(f"dict({name})")
        for seed in seeds:
            t = time.time()
            model, mean = train(x[tune], v, seed)
            c_tune = codes(model, mean, x[tune], v["per_image"])
            if transductive:
                # As the stage does: a model trained on the very images it hashes.
                model, mean = train(x[test], v, seed)
            c_test = codes(model, mean, x[test], v["per_image"])
            p_tune, _ = curve(c_tune, groups[tune])
            p_test, _ = curve(c_test, groups[test])
            r = choose(p_tune)
            tp = p_test[r] if r is not None else (None, 0, 0, 0)
            if show_curve:
                print("  test curve (r: P/R): " + ", ".join(f"{q[0]}: {q[2]:.3f}/{q[3]:.3f}" for q in p_test if q[0] % 2 == 0 and q[0] >= 8))
            print(f"{name} | {seed} | {r} | {tp[2]:.4f} | {tp[3]:.4f} | {reach(p_test, 0.99):.4f} | {reach(p_test, 0.995):.4f} | {time.time() - t:.0f}", flush=True)


if __name__ == "__main__":
    main()
